"""medray.tracking: params flattening, rank-zero logging, runs on a real MLflow server and on SQLite."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from medray import tracking


@dataclasses.dataclass
class _Optim:
    lr: float = 3e-4
    betas: tuple = (0.9, 0.95)


def test_flatten_params_values():
    flat = tracking.flatten_params(
        {
            "model": {"name": "tiny", "layers": 2, "dropout": None},
            "optim": _Optim(),
            "data": {"paths": ["s3://b/a", "s3://b/b"], "extra": {}, "none": []},
            "seed": 7,
            "long": "x" * 7000,
        }
    )
    assert flat == {
        "model.name": "tiny",
        "model.layers": "2",
        "model.dropout": "None",
        "optim.lr": "0.0003",
        "optim.betas.0": "0.9",
        "optim.betas.1": "0.95",
        "data.paths.0": "s3://b/a",
        "data.paths.1": "s3://b/b",
        "data.extra": "{}",
        "data.none": "[]",
        "seed": "7",
        "long": "x" * 6000,
    }
    assert tracking.flatten_params({"a": {"b": 1}}, prefix="cfg") == {"cfg.a.b": "1"}


def test_flatten_params_redacts_secrets_but_not_lookalikes():
    flat = tracking.flatten_params(
        {
            "s3": {"aws_secret_access_key": "AKIA-SECRET", "access_key": "id", "region": "eu"},
            "db": {"password": "hunter2", "user": "me"},
            "hf_token": "hf_abc",
            "apiKey": "k",
            "credentials": {"user": "u", "pass": "p"},
            "generation": {"max_new_tokens": 64},
            "tokenizer": {"path": "/models/tok"},
            "keywords": ["secretion"],
        }
    )
    for key in (
        "s3.aws_secret_access_key",
        "s3.access_key",
        "db.password",
        "hf_token",
        "apiKey",
        "credentials.user",
        "credentials.pass",
    ):
        assert flat[key] == "***", key
    assert flat["s3.region"] == "eu" and flat["db.user"] == "me"
    assert flat["generation.max_new_tokens"] == "64"
    assert flat["tokenizer.path"] == "/models/tok"
    assert flat["keywords.0"] == "secretion"
    assert "hunter2" not in json.dumps(flat) and "AKIA-SECRET" not in json.dumps(flat)


def test_flatten_params_accepts_omegaconf():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"run": {"dir": "/out", "log": "${run.dir}/log"}, "token": "t"})
    assert tracking.flatten_params(cfg) == {
        "run.dir": "/out",
        "run.log": "/out/log",
        "token": "***",
    }


def test_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path / "out") == f"sqlite:///{tmp_path}/out/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.tracking_uri(tmp_path) == "http://mlflow.internal:5000"


def test_is_rank_zero(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert tracking.is_rank_zero()
    monkeypatch.setenv("RANK", "0")
    assert tracking.is_rank_zero()
    monkeypatch.setenv("RANK", "3")
    assert not tracking.is_rank_zero()


def _log_a_run(uri: str, artifact_dir: Path) -> str:
    report = artifact_dir / "report.txt"
    report.write_text("AMCS forward 0.71\n")
    with tracking.run(
        "medray-test",
        run_name="cpt-tiny",
        params={"model": {"layers": 2}, "s3": {"secret_key": "nope"}},
        tags={"stage": "cpt"},
        uri=uri,
    ) as r:
        for step, loss in enumerate([2.5, 2.0, 1.5]):
            r.log_metrics({"loss": loss, "tokens": 1000 * (step + 1)}, step=step)
        r.log_dict({"coverage": {"forward": 0.71}}, "eval/coverage.json")
        r.log_artifact(report)
        return r.run_id


def _check_run(uri: str, run_id: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "cpt-tiny"
    assert client.get_experiment(got.info.experiment_id).name == "medray-test"
    assert got.data.params == {"model.layers": "2", "s3.secret_key": "***"}
    assert got.data.tags["stage"] == "cpt"
    assert got.data.metrics == {"loss": 1.5, "tokens": 3000.0}
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 2.5),
        (1, 2.0),
        (2, 1.5),
    ]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"eval", "report.txt"}
    local = client.download_artifacts(run_id, "eval/coverage.json")
    assert json.loads(Path(local).read_text()) == {"coverage": {"forward": 0.71}}


def test_run_against_mlflow_server(mlflow_server, tmp_path):
    run_id = _log_a_run(mlflow_server, tmp_path)
    _check_run(mlflow_server, run_id)


def test_run_against_sqlite_keeps_artifacts_beside_the_db(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    out = tmp_path / "out"
    uri = tracking.tracking_uri(out)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = _log_a_run(uri, tmp_path)
    _check_run(uri, run_id)
    assert (out / "mlflow.db").is_file()
    assert list((out / "mlartifacts" / "medray-test").rglob("coverage.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "report.txt"]


def test_failed_block_marks_the_run_failed(mlflow_server):
    with (
        pytest.raises(ValueError, match="diverged"),
        tracking.run("medray-test", uri=mlflow_server) as r,
    ):
        run_id = r.run_id
        raise ValueError("loss diverged")
    assert MlflowClient(tracking_uri=mlflow_server).get_run(run_id).info.status == "FAILED"


def test_non_zero_rank_logs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking.run("medray-test", params={"a": 1}, uri=uri) as r:
        assert r.run_id is None
        r.log_metrics({"loss": 1.0}, step=0)
        r.log_dict({"a": 1}, "a.json")
        r.log_artifact(tmp_path / "does-not-matter")
    assert not (tmp_path / "mlflow.db").exists()
