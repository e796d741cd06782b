"""The tree build job writing to S3 (a real endpoint on loopback) and tracked in MLflow."""

from __future__ import annotations

import json

from medray.config import load_config
from medray.met.jobs import run_build
from medray.met.settings import MetBuildConfig
from medray.met.tree import Tree


def test_build_job_writes_tree_summary_and_views_to_s3(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    out = s3_server.uri("met", "tree.parquet")
    cfg = load_config(MetBuildConfig, "conf/met/quickstart.yaml",
                      [f"out={out}", "sources.icd10cm.enabled=false", "sources.hpo.enabled=false"])
    result = run_build(cfg, progress=lambda _: None)

    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="met/")["Contents"]}
    assert keys == {"met/tree.parquet", "met/tree.summary.json", "met/tree.build.json", "met/tree.html", "met/tree.png"}
    tree = Tree.load(out)
    assert len(tree) == result["summary"]["nodes"]
    assert tree.by_code("HP:0002202") == "MEDRAY:finding/pleural_effusion"
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key="met/tree.summary.json")["Body"].read()
    assert json.loads(body)["per_axis"]["modality"] == result["summary"]["per_axis"]["modality"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.params["out"] == out
    assert run.data.metrics["nodes"] == len(tree)
