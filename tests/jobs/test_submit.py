"""`ray job submit --working-dir .` to a real token-authenticated head: the tree build, then a data pipeline on it.

The head is `ray start --head` on 127.0.0.1 with ``RAY_AUTH_MODE=token`` (the
``ray_token_cluster`` fixture). Like a cluster node it holds the S3 credentials
in its environment; the job spec carries only non-secret settings (the MLflow
URI). Outputs land in a real S3 endpoint on loopback and runs in a real
MLflow server, and both are read back here. The same run is then scanned for
the session's test credentials and the Ray token.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from medray.runtime import RUNTIME_ENV_EXCLUDES

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _ray_cli(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    ray = Path(env["PATH"].split(":")[0]) / "ray"
    return subprocess.run([str(ray if ray.exists() else "ray"), *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _client_env(cluster, venv_bin: Path, token: str | None) -> dict[str, str]:
    """A submitting shell: `ray job submit` sends a token only with RAY_AUTH_MODE=token set."""
    env = cluster.client_env(token=token or "")
    if token is None:
        env.pop("RAY_AUTH_TOKEN")
    env["RAY_AUTH_MODE"] = "token"
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
    return env


def _submit(cluster, env: dict[str, str], runtime_env: dict, entrypoint: list[str]) -> tuple[str, str]:
    """Submit and wait (the CLI tails the logs); returns (submission id, CLI output)."""
    job_id = f"medray-{uuid.uuid4().hex[:8]}"
    proc = _ray_cli(["job", "submit", "--address", cluster.dashboard_url, "--submission-id", job_id,
                     "--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env),
                     "--", *entrypoint], env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"job {entrypoint} failed (rc={proc.returncode}):\n{output[-6000:]}"
    assert f"Job '{job_id}' succeeded" in output, output[-3000:]
    return job_id, output


@pytest.fixture(scope="module")
def submitted(ray_token_cluster, s3_server, mlflow_server):
    """Both jobs submitted through the CLI with the right token; what a later check needs."""
    import sys

    from medray.data.synthetic import generate_corpus
    from medray.met.tree import Tree

    venv_bin = Path(sys.executable).parent
    env = _client_env(ray_token_cluster, venv_bin, ray_token_cluster.token)
    prefix = s3_server.uri(f"jobs-{uuid.uuid4().hex[:8]}")
    experiment = f"medray-jobs-{uuid.uuid4().hex[:6]}"
    runtime_env = {"excludes": RUNTIME_ENV_EXCLUDES, "env_vars": {"MLFLOW_TRACKING_URI": mlflow_server}}

    tree_uri = f"{prefix}/met/tree.parquet"
    build_id, build_log = _submit(ray_token_cluster, env, runtime_env, [
        "python", "jobs/met_build.py", "conf/met/quickstart.yaml", f"out={tree_uri}",
        "sources.icd10cm.enabled=false", "sources.hpo.enabled=false", f"tracking.experiment={experiment}"])

    corpus = f"{prefix}/corpus"
    truth = generate_corpus(Tree.load(tree_uri), corpus, n_docs=300, files=2, seed=0)
    data = f"{prefix}/data"
    stages = "[exact_dedup,rules,near_dup,tag,sample]"  # quality and pack need trained models: other jobs
    pipe_id, pipe_log = _submit(ray_token_cluster, env, runtime_env, [
        "python", "jobs/data_pipeline.py", "conf/data/pipeline.yaml", f"input=[{corpus}]", f"out={data}",
        f"stages={stages}", f"tag.tree={tree_uri}", "chunk_lines=200", "resume=false",
        f"tracking.experiment={experiment}"])
    return {"env": env, "tree": tree_uri, "data": data, "truth": truth, "experiment": experiment,
            "jobs": {build_id: build_log, pipe_id: pipe_log}, "mlflow": mlflow_server}


def test_submitted_jobs_write_their_outputs_to_s3(submitted):
    from medray import storage
    from medray.met.tree import Tree

    tree = Tree.load(submitted["tree"])
    assert len(tree) > 100
    assert tree.node("MEDRAY:finding/pleural_effusion").name.lower() == "pleural effusion"  # radiology lexicon
    summary = json.loads(storage.read_text(submitted["tree"].replace(".parquet", ".summary.json")))
    assert summary["nodes"] == len(tree)

    report = json.loads(storage.read_text(f"{submitted['data']}/report.json"))
    stages = report["stages"]
    planted = submitted["truth"]
    assert stages["read"]["in"] == sum(f["records"] for f in planted["files"])
    for stage in ("read", "exact_dedup", "rules", "near_dup", "tag"):
        counts = stages[stage]
        assert counts["in"] == counts["kept"] + sum(counts["dropped"].values()), (stage, counts)
    assert sum(stages["read"]["dropped"].values()) > 0  # malformed records planted in the corpus
    assert stages["rules"]["dropped"]  # so are short and noisy documents
    assert report["outputs"]["docs"] >= stages["sample"]["kept"] > 0  # sampling repeats rare-node documents
    assert storage.exists(report["manifest"])


def test_ray_job_list_knows_both_jobs_as_succeeded(submitted, ray_token_cluster):
    proc = _ray_cli(["job", "list", "--address", ray_token_cluster.dashboard_url], submitted["env"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job_id in submitted["jobs"]:
        assert job_id in proc.stdout
    status = _ray_cli(["job", "status", "--address", ray_token_cluster.dashboard_url,
                       next(iter(submitted["jobs"]))], submitted["env"])
    assert "succeeded" in (status.stdout + status.stderr).lower()


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["no-token", "wrong-token"])
def test_submission_without_the_right_token_is_refused(ray_token_cluster, token):
    import sys

    env = _client_env(ray_token_cluster, Path(sys.executable).parent, token)
    job_id = f"refused-{uuid.uuid4().hex[:8]}"
    proc = _ray_cli(["job", "submit", "--address", ray_token_cluster.dashboard_url, "--submission-id", job_id,
                     "--no-wait", "--", "python", "-c", "print('should never run')"], env, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert "auth" in output.lower() or "401" in output or "403" in output or "token" in output.lower(), output[-2000:]
    listed = _ray_cli(["job", "list", "--address", ray_token_cluster.dashboard_url],
                      _client_env(ray_token_cluster, Path(sys.executable).parent, ray_token_cluster.token))
    assert listed.returncode == 0 and job_id not in listed.stdout


def test_the_jobs_runs_are_in_the_mlflow_server_with_params_and_metrics(submitted):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=submitted["mlflow"])
    experiment = client.get_experiment_by_name(submitted["experiment"])
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert {"met-build", "data-pipeline"} <= set(by_name), sorted(by_name)
    build = by_name["met-build"]
    assert build.info.status == "FINISHED"
    assert build.data.params["out"] == submitted["tree"]
    assert build.data.params["sources.icd10cm.enabled"] == "False"
    assert build.data.metrics["nodes"] > 100
    pipeline = by_name["data-pipeline"]
    assert pipeline.info.status == "FINISHED"
    assert pipeline.data.params["out"] == submitted["data"]
    assert [pipeline.data.params.get(f"stages.{i}") for i in range(6)] == [
        "exact_dedup", "rules", "near_dup", "tag", "sample", None]
    assert pipeline.data.params["tag.tree"] == submitted["tree"]
    assert pipeline.data.metrics["read.in"] > 0
    assert pipeline.data.metrics["rules.kept"] < pipeline.data.metrics["rules.in"]


def test_no_secret_reaches_a_log_an_output_or_mlflow(submitted, ray_token_cluster, s3_server):
    """The S3 keys and the Ray token were in the cluster's environment throughout; none may be written down."""
    import tempfile

    from mlflow.tracking import MlflowClient

    secrets = {"S3 access key": s3_server.access_key, "S3 secret key": s3_server.secret_key,
               "Ray token": ray_token_cluster.token}
    found: list[str] = []

    def scan(where: str, data: bytes | str) -> None:
        blob = data.encode() if isinstance(data, str) else data
        found.extend(f"{name} in {where}" for name, value in secrets.items() if value.encode() in blob)

    for job_id, submit_output in submitted["jobs"].items():
        scan(f"`ray job submit` output of {job_id}", submit_output)
        logs = _ray_cli(["job", "logs", "--address", ray_token_cluster.dashboard_url, job_id], submitted["env"])
        assert logs.returncode == 0 and logs.stdout.strip(), logs.stderr[-2000:]
        scan(f"`ray job logs {job_id}`", logs.stdout + logs.stderr)
    log_files = [p for p in ray_token_cluster.temp_dir.glob("session_*/logs/**/*") if p.is_file()]
    assert len(log_files) > 10  # the scan really saw Ray's logs (drivers, workers, raylet, GCS)
    for path in log_files:
        scan(str(path), path.read_bytes())

    client = s3_server.client()
    prefix = submitted["tree"].split("/", 3)[3].split("/")[0]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix=prefix)
    objects = [obj for page in pages for obj in page.get("Contents", [])]
    assert len(objects) > 10
    for obj in objects:
        scan(f"s3://{s3_server.bucket}/{obj['Key']}",
             client.get_object(Bucket=s3_server.bucket, Key=obj["Key"])["Body"].read())

    mlflow = MlflowClient(tracking_uri=submitted["mlflow"])
    experiment = mlflow.get_experiment_by_name(submitted["experiment"])
    runs = mlflow.search_runs([experiment.experiment_id])
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            scan(f"MLflow params of {run.info.run_name}", json.dumps(run.data.params))
            scan(f"MLflow tags of {run.info.run_name}", json.dumps(run.data.tags))
            local = Path(mlflow.download_artifacts(run.info.run_id, "", tmp))
            artifacts = [p for p in local.rglob("*") if p.is_file()]
            assert artifacts, run.info.run_name
            for path in artifacts:
                scan(f"MLflow artifact {path.name} of {run.info.run_name}", path.read_bytes())
    assert not found, found
