"""cluster/: the launcher config, the image definition and the runtime_env pass medray's checks,
and each check catches the mistake it exists for, planted in a copy."""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from medray.deploy.image import base_images, check_image
from medray.deploy.launcher import check_launcher_config, check_launcher_dict
from medray.runtime import RUNTIME_ENV_EXCLUDES

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
AWS_YAML = CLUSTER / "aws.yaml"


@pytest.fixture
def aws_config() -> dict:
    return yaml.safe_load(AWS_YAML.read_text())


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- the launcher config -----------------------------------------------------


def test_real_launcher_config_has_no_problems():
    assert check_launcher_config(AWS_YAML) == []


def test_real_launcher_config_is_what_the_brief_of_the_cluster_says(aws_config):
    types = aws_config["available_node_types"]
    assert types[aws_config["head_node_type"]]["resources"] == {"CPU": 0}
    assert types["gpu-train-h100x8"]["resources"]["GPU"] == 8
    for name, spec in types.items():
        options = spec.get("docker", {}).get("worker_run_options", [])
        if spec["resources"].get("GPU"):
            assert "--gpus all" in options, name
        if name != aws_config["head_node_type"]:
            assert any(o.startswith("--shm-size=") for o in options), name
    assert sum(t.get("max_workers", 0) for t in types.values()) == aws_config["max_workers"]


def _drop_token_mode(config: dict) -> None:
    config["worker_start_ray_commands"] = [
        c.replace("RAY_AUTH_MODE=token ", "") for c in config["worker_start_ray_commands"]
    ]


PLANTED = {
    "unknown top-level key": (
        lambda c: c.update(gpu_count=8),
        "<top level>: Ray schema: Additional properties are not allowed ('gpu_count' was unexpected)",
    ),
    "wrong type": (
        lambda c: c.update(max_workers="many"),
        "max_workers: Ray schema: 'many' is not of type 'integer'",
    ),
    "min above max": (
        lambda c: c["available_node_types"]["gpu-train-h100x8"].update(min_workers=5),
        "available_node_types.gpu-train-h100x8: min_workers (5) > max_workers (4)",
    ),
    "sum of min above global max": (
        lambda c: (c.update(max_workers=3), c["available_node_types"]["cpu-data"].update(min_workers=4)),
        "max_workers: 3 is below the sum of min_workers (4)",
    ),
    "missing head type": (
        lambda c: c.update(head_node_type="ray.head.default"),
        "head_node_type: 'ray.head.default' is not one of available_node_types",
    ),
    "head runs tasks": (
        lambda c: c["available_node_types"]["head"]["resources"].update(CPU=16),
        "available_node_types.head.resources.CPU: the head must run no tasks (CPU: 0), found 16",
    ),
    "missing GPU resources": (
        lambda c: c["available_node_types"]["gpu-train-h100x8"]["resources"].pop("GPU"),
        "available_node_types.gpu-train-h100x8.resources.GPU: p5.48xlarge has 8 GPU(s), the node type declares 0",
    ),
    "wrong GPU count": (
        lambda c: c["available_node_types"]["gpu-synth-l40sx4"]["resources"].update(GPU=1),
        "available_node_types.gpu-synth-l40sx4.resources.GPU: g6e.12xlarge has 4 GPU(s), the node type declares 1",
    ),
    "GPU instance not in the table": (
        lambda c: c["available_node_types"]["gpu-train-h100x8"]["node_config"].update(InstanceType="p6-b200.48xlarge"),
        "available_node_types.gpu-train-h100x8.node_config.InstanceType: p6-b200.48xlarge has GPUs but is not in",
    ),
    "GPU node without --gpus": (
        lambda c: c["available_node_types"]["gpu-synth-l40sx4"]["docker"].update(worker_run_options=["--shm-size=128g"]),
        "available_node_types.gpu-synth-l40sx4.docker.worker_run_options: GPU node without --gpus all",
    ),
    "token auth off": (
        _drop_token_mode,
        "worker_start_ray_commands[2]: `ray start` without RAY_AUTH_MODE=token",
    ),
    "token auth disabled": (
        lambda c: c["setup_commands"].append("echo 'export RAY_AUTH_MODE=disabled' >> ~/.bashrc"),
        "setup_commands[1]: RAY_AUTH_MODE=disabled turns token authentication off",
    ),
    "inline access key id": (
        lambda c: c["setup_commands"].append("aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE"),
        "setup_commands[1]: an AWS access key id is written inline",
    ),
    "inline secret key in provider": (
        lambda c: c["provider"].update(aws_credentials={"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}),
        "provider.aws_credentials.aws_secret_access_key: aws_secret_access_key has a literal value",
    ),
    "inline Ray token": (
        lambda c: c["head_start_ray_commands"].__setitem__(
            2, c["head_start_ray_commands"][2].replace("RAY_AUTH_MODE=token", "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=s3cr3t-t0ken")),
        "head_start_ray_commands[2]: RAY_AUTH_TOKEN has a literal value",
    ),
    "inline MLflow URI": (
        lambda c: c["worker_start_ray_commands"].__setitem__(
            2, "export MLFLOW_TRACKING_URI=http://user:pw@mlflow:5000 && " + c["worker_start_ray_commands"][2]),
        "worker_start_ray_commands[2]: MLFLOW_TRACKING_URI has a literal value",
    ),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_planted_launcher_mistake_is_named(case, aws_config, tmp_path):
    plant, expected = PLANTED[case]
    bad = copy.deepcopy(aws_config)
    plant(bad)
    problems = check_launcher_config(_write(tmp_path, bad))
    assert any(p.startswith(expected) for p in problems), problems


def test_secret_findings_never_repeat_the_secret(aws_config):
    bad = copy.deepcopy(aws_config)
    bad["setup_commands"].append("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI AKIAIOSFODNN7EXAMPLE")
    bad["provider"]["aws_credentials"] = {"aws_secret_access_key": "wJalrXUtnFEMI"}
    problems = check_launcher_dict(bad)
    assert len(problems) == 3, problems
    assert not any("wJalrXUtnFEMI" in p or "AKIAIOSFODNN7EXAMPLE" in p for p in problems)


def test_token_read_from_a_reference_is_not_a_literal(aws_config):
    ok = copy.deepcopy(aws_config)
    ok["head_start_ray_commands"][2] = ok["head_start_ray_commands"][2].replace(
        "RAY_AUTH_MODE=token", 'RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat /home/ray/.ray/auth_token)"')
    assert check_launcher_dict(ok) == []


def test_unreadable_yaml_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "aws.yaml"
    path.write_text("cluster_name: [unclosed\n")
    (problem,) = check_launcher_config(path)
    assert problem.startswith(f"<file>: cannot read {path}")


# --- the image ---------------------------------------------------------------

IMAGE_FILES = ("Dockerfile", "requirements-gpu.txt", "constraints-gpu.txt")


def _image_copy(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in IMAGE_FILES}
    for name, path in paths.items():
        shutil.copy(CLUSTER / name, path)
    return paths


def _check_copy(paths: dict[str, Path]) -> list[str]:
    return check_image(paths["Dockerfile"], paths["requirements-gpu.txt"], REPO / "pyproject.toml",
                       paths["constraints-gpu.txt"])


def test_real_image_definition_has_no_problems():
    assert check_image(CLUSTER / "Dockerfile", CLUSTER / "requirements-gpu.txt", REPO / "pyproject.toml",
                       CLUSTER / "constraints-gpu.txt") == []


def test_launcher_runs_the_image_the_dockerfile_builds(aws_config):
    (base,) = base_images((CLUSTER / "Dockerfile").read_text())
    assert base.reference == "rayproject/ray:2.60.0-py311-cu130"
    assert f"-t {aws_config['docker']['image']} ." in (CLUSTER / "Dockerfile").read_text()


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


IMAGE_PLANTED = {
    "FROM latest": (("Dockerfile", "\nFROM rayproject/ray:2.60.0-py311-cu130\n", "\nFROM rayproject/ray:latest\n"),
                    "tag 'latest' moves; pin a version tag or a digest"),
    "FROM without tag": (("Dockerfile", "\nFROM rayproject/ray:2.60.0-py311-cu130\n", "\nFROM rayproject/ray\n"),
                         "no tag means `latest`"),
    "unpinned requirement": (("requirements-gpu.txt", "deepspeed==0.19.8", "deepspeed>=0.15"),
                             "deepspeed is not pinned to one version with == (deepspeed>=0.15)"),
    "pin outside pyproject": (("requirements-gpu.txt", "transformers==5.19.0", "transformers==4.57.1"),
                              "transformers==4.57.1 is outside"),
    "ray pin differs from base": (("requirements-gpu.txt", "ray[data,train,tune,default]==2.60.0",
                                   "ray[data,train,tune,default]==2.59.0"),
                                  "ray==2.59.0 but the base image"),
    "lock contradicts pin": (("constraints-gpu.txt", "torch==2.13.0", "torch==2.14.0"),
                             "torch==2.14.0 contradicts"),
    "dependency without a pin": (("requirements-gpu.txt", "pydicom==3.0.2\n", ""),
                                 "pydicom is a dependency in"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_PLANTED))
def test_planted_image_mistake_is_named(case, tmp_path):
    (name, old, new), expected = IMAGE_PLANTED[case]
    paths = _image_copy(tmp_path)
    _replace(paths[name], old, new)
    problems = _check_copy(paths)
    assert any(expected in p and str(paths[name]) in p for p in problems), problems


def test_digest_pin_passes_without_a_version_tag(tmp_path):
    paths = _image_copy(tmp_path)
    _replace(paths["Dockerfile"], "\nFROM rayproject/ray:2.60.0-py311-cu130\n",
             "\nFROM rayproject/ray@sha256:" + "0" * 64 + "\n")
    assert _check_copy(paths) == []


# --- runtime_env -------------------------------------------------------------


def test_runtime_env_file_matches_the_package_and_ray_accepts_it():
    from ray.runtime_env import RuntimeEnv

    data = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert data["excludes"] == RUNTIME_ENV_EXCLUDES
    assert "working_dir" not in data  # --working-dir supplies it
    env = RuntimeEnv(**data)
    assert env["excludes"] == RUNTIME_ENV_EXCLUDES
    assert env["env_vars"] == {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    secret_like = {"RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_URI"}
    assert not secret_like & set(data["env_vars"])


# --- fetch_node_secrets.py (run on every node before `ray start`) -------------


def _fetch_module():
    spec = importlib.util.spec_from_file_location("fetch_node_secrets", CLUSTER / "fetch_node_secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_aws(s3_server, monkeypatch):
    """Secrets Manager and SSM on the session's moto server (a real AWS HTTP endpoint on loopback).

    Not ``moto.mock_aws()``: leaving it resets moto's in-process backends, and with
    them the session server's buckets that later tests write to.
    """
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    yield boto3.session.Session(region_name="us-west-2")


def test_node_secrets_land_owner_only_and_source_cleanly(fake_aws, tmp_path):
    uri = "http://mlflow.internal:5000/?note=it's a 'quoted' & $odd value"
    prefix = f"t{uuid.uuid4().hex[:8]}"  # the moto server lives for the whole session
    fake_aws.client("secretsmanager").create_secret(Name=f"{prefix}/ray-auth-token", SecretString="tok-123\n")
    fake_aws.client("ssm").put_parameter(Name=f"/{prefix}/MLFLOW_TRACKING_URI", Value=uri, Type="SecureString")
    token_file, env_file = tmp_path / "ray" / "auth_token", tmp_path / "medray.env"
    rc = _fetch_module().main([
        "--region", "us-west-2", "--token-secret", f"{prefix}/ray-auth-token", "--token-file", str(token_file),
        "--env-file", str(env_file), "--ssm", f"/{prefix}/MLFLOW_TRACKING_URI",
    ])
    assert rc == 0
    assert token_file.read_text() == "tok-123\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    shell = f'set -a; . "{env_file}"; set +a; printf "%s|%s" "$MLFLOW_TRACKING_URI" "$AWS_REGION"'
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"]}).stdout
    assert out == f"{uri}|us-west-2"


def test_missing_secret_fails_without_writing(fake_aws, tmp_path, capsys):
    token_file = tmp_path / "auth_token"
    rc = _fetch_module().main([
        "--region", "us-west-2", "--token-secret", "medray/absent", "--token-file", str(token_file),
        "--env-file", str(tmp_path / "env"),
    ])
    assert rc == 1
    assert not token_file.exists()
    assert "ResourceNotFoundException" in capsys.readouterr().err
