"""Which names hold a credential: one definition for every deploy check.

Named variables that must come from a Secret (or an IAM role) even where their
name does not say "secret", such as the MLflow URIs that may carry a password,
plus any name medray's tracking would mask (``medray.tracking.looks_secret``).
"""

from __future__ import annotations

from medray.tracking import looks_secret

CREDENTIAL_ENV_NAMES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RAY_AUTH_TOKEN",
    "MLFLOW_TRACKING_URI", "MLFLOW_BACKEND_STORE_URI", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
)


def is_secret_name(name: str) -> bool:
    """Whether a variable or key of this name holds a credential (``*_PATH`` / ``*_FILE`` name a file)."""
    upper = name.upper()
    if upper in CREDENTIAL_ENV_NAMES:
        return True
    return looks_secret(name) and not upper.endswith(("_PATH", "_FILE"))
