"""Fetch a Ray node's secrets with its instance role, right before ``ray start``.

The cluster launcher config must hold no secret, so each node pulls what it needs
at start time: the Ray auth token from AWS Secrets Manager into the file that
``RAY_AUTH_TOKEN_PATH`` names, and settings such as ``MLFLOW_TRACKING_URI`` from
SSM Parameter Store into an env file that the start command sources with
``set -a``; each parameter's last path component is the variable's name
(``/medray/MLFLOW_TRACKING_URI`` -> ``MLFLOW_TRACKING_URI``). Both files are written owner-only and replaced atomically, so a
``ray start`` never reads a half-written token. Nothing fetched is printed.

    python cluster/fetch_node_secrets.py --region us-west-2 \
        --token-secret medray/ray-auth-token --token-file ~/.ray/auth_token \
        --env-file ~/.medray.env --ssm /medray/MLFLOW_TRACKING_URI
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def env_names(params: list[str]) -> dict[str, str]:
    """``["/medray/MLFLOW_TRACKING_URI"]`` -> ``{"MLFLOW_TRACKING_URI": "/medray/MLFLOW_TRACKING_URI"}``."""
    out: dict[str, str] = {}
    for param in params:
        name = param.rstrip("/").rsplit("/", 1)[-1]
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"--ssm {param!r}: the last path component must be an env var name")
        out[name] = param
    return out


def fetch(region: str, token_secret: str, ssm_params: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The token (SecretString of ``token_secret``) and each SSM parameter's decrypted value."""
    import boto3

    session = boto3.session.Session(region_name=region)
    token = session.client("secretsmanager").get_secret_value(SecretId=token_secret)["SecretString"]
    if not token.strip():
        raise ValueError(f"secret {token_secret} is empty")
    ssm = session.client("ssm")
    values = {
        name: ssm.get_parameter(Name=param, WithDecryption=True)["Parameter"]["Value"]
        for name, param in ssm_params.items()
    }
    return token.strip(), values


def env_file_text(region: str, values: dict[str, str]) -> str:
    """Shell-quoted ``NAME=value`` lines, safe to source whatever the values hold."""
    lines = [f"AWS_REGION={shlex.quote(region)}"]
    lines += [f"{name}={shlex.quote(value)}" for name, value in sorted(values.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--token-secret", required=True, help="Secrets Manager id of the Ray token")
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--env-file", required=True, type=Path)
    parser.add_argument("--ssm", action="append", default=[], metavar="/path/ENV_VAR_NAME")
    args = parser.parse_args(argv)
    try:
        ssm_params = env_names(args.ssm)
        token, values = fetch(args.region, args.token_secret, ssm_params)
    except Exception as err:  # noqa: BLE001  (one line naming what failed, never a value)
        print(f"fetch_node_secrets: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    write_private(args.token_file.expanduser(), token + "\n")
    write_private(args.env_file.expanduser(), env_file_text(args.region, values))
    print(f"fetch_node_secrets: wrote {args.token_file} and {args.env_file} ({', '.join(values) or 'no settings'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
