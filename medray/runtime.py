"""Connecting to Ray: the same call on a laptop, under ``ray job submit`` and on KubeRay.

With no address (argument or ``RAY_ADDRESS``) ``init_ray`` starts a local
cluster, so the quickstart needs nothing running; with one it joins that
cluster. Ray itself treats the two cases differently for token
authentication, which is why this module exists:

* a local cluster started by ``ray.init()`` turns token auth on by itself
  (Ray >= 2.59) and generates ``~/.ray/auth_token`` when it is missing;
* a driver joining a cluster by address only sends a token when
  ``RAY_AUTH_MODE=token`` is set in its environment. Having the token is not
  enough: without the mode the GCS answers ``InvalidAuthToken`` and
  ``ray.init`` fails, after ~20 s of retries, with a bare
  "Failed to connect to Ray cluster".

The token is read by Ray's C++ loader, in this order: ``RAY_AUTH_TOKEN`` (the
token itself), ``RAY_AUTH_TOKEN_PATH`` (a file holding it), then
``~/.ray/auth_token`` (what ``ray get-auth-token --generate`` writes). So
``init_ray`` turns token mode on whenever one of those holds a token and
``RAY_AUTH_MODE`` is unset (a token-mode client also joins a cluster without
auth, so this is safe), and turns Ray's failures into an error that says which
token was missing or refused and where to put it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray

from medray.errors import MedrayError

logger = logging.getLogger(__name__)

AUTH_MODE_VAR = "RAY_AUTH_MODE"
AUTH_TOKEN_VAR = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")

# What `ray job submit --working-dir .` must not upload: environments, VCS
# state, outputs and caches (gitignore syntax, relative to the working dir).
RUNTIME_ENV_EXCLUDES = [
    ".venv/",
    ".git/",
    "demo-out/",
    "mlruns/",
    "**/__pycache__/",
    "*.pyc",
    "*.parquet",
    "*.db",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.egg-info/",
    "build/",
    "dist/",
]
# Settings (never secrets) a job's workers need to reach the same stores as
# the submitting shell; credentials belong to the cluster, not the job spec.
_FORWARDED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MEDRAY_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)
_TOKEN_HELP = (
    "Set RAY_AUTH_TOKEN to the cluster's token, or RAY_AUTH_TOKEN_PATH to a file "
    "holding it, or copy it to ~/.ray/auth_token (print it on the head node with "
    "`ray get-auth-token`)."
)


class RayAuthError(MedrayError):
    """The cluster wants a token this driver does not have, or refused the one it sent."""


# --- token authentication --------------------------------------------------


def _token_source() -> str | None:
    """Where Ray will find a token, in its own order of precedence; None if nowhere."""
    if os.environ.get(AUTH_TOKEN_VAR, "").strip():
        return AUTH_TOKEN_VAR
    token_path = os.environ.get(AUTH_TOKEN_PATH_VAR)
    if token_path:
        path = Path(token_path).expanduser()
        # Ray aborts the whole process on an unreadable RAY_AUTH_TOKEN_PATH;
        # fail here instead, with the path named.
        try:
            if not path.read_text().strip():
                raise RayAuthError(f"{AUTH_TOKEN_PATH_VAR}={token_path}: the token file is empty")
        except OSError as err:
            raise RayAuthError(
                f"{AUTH_TOKEN_PATH_VAR}={token_path}: cannot read the token file ({err.strerror})"
            ) from err
        return f"{AUTH_TOKEN_PATH_VAR} ({token_path})"
    default = DEFAULT_TOKEN_FILE.expanduser()
    try:
        if default.read_text().strip():
            return str(default)
    except OSError:
        pass
    return None


def _enable_token_mode() -> None:
    """Turn token mode on for this process and the workers it starts."""
    os.environ[AUTH_MODE_VAR] = "token"
    try:
        # Ray caches its config at import; re-read it so the mode takes effect now.
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):  # older Ray: no token auth to configure
        pass


def _prepare_token_auth(address: str) -> str | None:
    """Configure the client side of token auth before joining ``address``; returns the token source."""
    mode = os.environ.get(AUTH_MODE_VAR, "").strip().lower()
    if mode == "disabled":
        return None
    source = _token_source()
    if mode == "token" and source is None:
        raise RayAuthError(
            f"{AUTH_MODE_VAR}=token but no Ray authentication token was found "
            f"for the cluster at {address}. {_TOKEN_HELP}"
        )
    if source is not None and mode != "token":
        _enable_token_mode()
    return source


def _is_auth_failure(err: BaseException) -> bool:
    seen = 0
    while err is not None and seen < 10:
        name = type(err).__name__
        if name == "AuthenticationError" or "InvalidAuthToken" in str(err):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


# --- connecting ------------------------------------------------------------


class _QuietTokenNotice(logging.Filter):
    """Drops Ray's notice that a local cluster enabled token auth: expected, and noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is" not in record.getMessage()


def describe_cluster() -> dict:
    """Address, namespace and total CPUs/GPUs of the cluster this process is connected to."""
    ctx = ray.get_runtime_context()
    resources = ray.cluster_resources()
    return {
        "address": ctx.gcs_address,
        "namespace": ctx.namespace,
        "num_cpus": int(resources.get("CPU", 0)),
        "num_gpus": int(resources.get("GPU", 0)),
    }


LOCAL_WORKER_SETUP = "medray.runtime.local_worker_setup"


def local_worker_setup() -> None:
    """Run in every worker of a local cluster medray started (no dashboard, so no state API).

    Ray Train's placement-group cleaner asks the state API, every few seconds, whether the
    training controller is alive: without a dashboard it logs a warning each time (dozens per
    run), and with another Ray instance on the machine it cannot even tell which cluster to ask
    and dies with a traceback. Pinning ``RAY_ADDRESS`` to this worker's own cluster settles the
    second; the first is an expected condition here, so that logger keeps errors only.
    """
    try:
        os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001  (a worker without a runtime context keeps Ray's own lookup)
        pass
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    runtime_env: dict | None = None,
    namespace: str = "medray",
) -> dict:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one.

    A no-op when Ray is already initialised in this process (jobs call this
    at the top; under ``ray job submit`` or in tests Ray may already be up).
    ``num_cpus`` and ``object_store_memory`` size a local cluster only: an
    existing cluster decides its own resources, so they are ignored there.
    Returns ``describe_cluster()``.
    """
    if ray.is_initialized():
        return describe_cluster()
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {
        "namespace": namespace,
        "log_to_driver": True,
        "logging_level": logging.WARNING,
    }
    if runtime_env:
        kwargs["runtime_env"] = runtime_env

    if address is None:
        kwargs.update(
            num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False
        )
        kwargs["runtime_env"] = {"worker_process_setup_hook": LOCAL_WORKER_SETUP, **(runtime_env or {})}
        quiet = _QuietTokenNotice()
        auth_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
        auth_logger.addFilter(quiet)
        try:
            ray.init(**kwargs)
        finally:
            auth_logger.removeFilter(quiet)
        return describe_cluster()

    if num_cpus is not None or object_store_memory is not None:
        logger.info(
            "joining %s: num_cpus/object_store_memory apply to local clusters only", address
        )
    token_source = None if address.startswith("ray://") else _prepare_token_auth(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError) as err:
        if not _is_auth_failure(err):
            raise
        if token_source:
            problem = f"refused the token from {token_source}"
        else:
            problem = "requires token authentication and no token was found"
        raise RayAuthError(f"Ray cluster at {address} {problem}. {_TOKEN_HELP}") from err
    return describe_cluster()


def shutdown_ray() -> None:
    """Disconnect (and stop a local cluster this process started); safe to call twice."""
    if ray.is_initialized():
        ray.shutdown()


def default_runtime_env(working_dir: str | os.PathLike = ".") -> dict:
    """A runtime_env that ships the project to a cluster without its venv, outputs or caches.

    Non-secret settings (MLflow URI, S3 endpoint and region) set in the
    submitting shell are forwarded so that workers talk to the same stores.
    """
    env: dict = {"working_dir": str(working_dir), "excludes": list(RUNTIME_ENV_EXCLUDES)}
    forwarded = {k: os.environ[k] for k in _FORWARDED_ENV if os.environ.get(k)}
    if forwarded:
        env["env_vars"] = forwarded
    return env
