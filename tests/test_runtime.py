"""medray.runtime: a real local cluster, and a real token-authenticated `ray start` head."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import ray

from medray import runtime


@ray.remote
def _square(x: int) -> int:
    return x * x


def test_init_ray_starts_a_local_cluster_that_runs_tasks(ray_local):
    assert ray.is_initialized()
    assert ray_local["num_cpus"] == 2
    assert ray_local["num_gpus"] == 0
    assert ray_local["namespace"] == "medray"
    assert ray.get([_square.remote(i) for i in range(4)]) == [0, 1, 4, 9]


def test_init_ray_is_idempotent(ray_local):
    again = runtime.init_ray(num_cpus=7)
    assert again == ray_local  # the running cluster, not a new one
    assert ray.get(_square.remote(5)) == 25


def test_workers_inherit_the_s3_settings(ray_local, s3_server):
    import os

    @ray.remote
    def endpoint() -> str | None:
        return os.environ.get("MEDRAY_S3_ENDPOINT")

    assert ray.get(endpoint.remote()) == s3_server.endpoint


def test_local_workers_know_their_cluster_and_quiet_the_cleaner(ray_local):
    """Without a dashboard Ray Train's placement-group cleaner would warn every few seconds, and with a
    second Ray instance on the machine it could not tell which cluster to ask (a traceback per run)."""
    import logging
    import os

    @ray.remote
    def seen() -> tuple[str | None, int]:
        name = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
        return os.environ.get("RAY_ADDRESS"), logging.getLogger(name).level

    address, level = ray.get(seen.remote())
    assert address == ray.get_runtime_context().gcs_address
    assert level == logging.ERROR


def test_default_runtime_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-shipped")
    monkeypatch.delenv("MEDRAY_S3_ENDPOINT", raising=False)
    env = runtime.default_runtime_env(tmp_path)
    assert env["working_dir"] == str(tmp_path)
    for pattern in (".venv/", ".git/", "demo-out/", "mlruns/", "**/__pycache__/", "*.parquet"):
        assert pattern in env["excludes"]
    assert env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "AWS_SECRET_ACCESS_KEY" not in env["env_vars"]
    assert "MEDRAY_S3_ENDPOINT" not in env["env_vars"]


# --- token authentication: each client is its own process, as a driver would be ---

_CLIENT = textwrap.dedent(
    """
    import json, sys
    import ray
    from medray.runtime import RayAuthError, init_ray

    try:
        info = init_ray(sys.argv[1])
        info["answer"] = ray.get(ray.remote(lambda: 6 * 7).remote())
    except RayAuthError as err:
        info = {"error": str(err)}
    print("RESULT " + json.dumps(info))
    """
)


def _client(address: str, env: dict[str, str], timeout: int = 120) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CLIENT, address],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"client failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
def test_token_cluster_accepts_the_token_without_setting_auth_mode(ray_token_cluster):
    """RAY_AUTH_TOKEN alone is enough: init_ray turns on RAY_AUTH_MODE=token itself."""
    env = ray_token_cluster.client_env()
    assert "RAY_AUTH_MODE" not in env
    info = _client(ray_token_cluster.address, env)
    assert info.get("error") is None, info
    assert info["answer"] == 42
    assert info["num_cpus"] == 2
    assert info["address"].endswith(ray_token_cluster.address.rsplit(":", 1)[1])


@pytest.mark.slow
def test_token_cluster_refuses_a_wrong_token_with_a_clear_error(ray_token_cluster):
    env = ray_token_cluster.client_env(token="0" * 64)
    env["RAY_gcs_server_port_wait_time_s"] = "1"  # Ray retries ~20 s by default
    info = _client(ray_token_cluster.address, env)
    assert "refused the token from RAY_AUTH_TOKEN" in info["error"]
    assert ray_token_cluster.address in info["error"]
    assert "ray get-auth-token" in info["error"]


def test_missing_token_fails_fast_and_names_the_fix(tmp_path):
    """Token mode with no token anywhere: an error before any connection attempt."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),  # no ~/.ray/auth_token here
        "RAY_AUTH_MODE": "token",
    }
    info = _client("127.0.0.1:1", env, timeout=60)
    assert "no Ray authentication token was found" in info["error"]
    assert "RAY_AUTH_TOKEN" in info["error"] and "127.0.0.1:1" in info["error"]

    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "missing-token")
    info = _client("127.0.0.1:1", env, timeout=60)
    assert info["error"].startswith(f"RAY_AUTH_TOKEN_PATH={tmp_path / 'missing-token'}")
    assert "cannot read the token file" in info["error"]
