"""The `medray` command end to end, in subprocesses, on a small real tree (lexicon + DICOM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL = ["sources.icd10cm.enabled=false", "sources.hpo.enabled=false"]


def medray(*args: str, cwd: Path = REPO, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "medray", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"medray {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "met" / "tree.parquet"
    proc = medray("met", "build", "conf/met/quickstart.yaml", f"out={out}", *SMALL, "--json",
                  env={"MLFLOW_TRACKING_URI": f"sqlite:///{out.parent}/mlflow.db"})
    result = json.loads(proc.stdout)
    assert result["out"] == str(out)
    return out


def test_build_writes_tree_summary_views_and_mlflow_run(small_tree: Path):
    summary = json.loads(small_tree.with_name("tree.summary.json").read_text())
    assert summary["per_axis"]["anatomy"] > 300 and summary["per_axis"]["modality"] > 50
    assert summary["per_source"]["radiology_lexicon"] == 14  # the group and its 13 observations
    assert small_tree.with_name("tree.html").stat().st_size > 10_000
    assert small_tree.with_name("tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{small_tree.parent}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("medray-met").experiment_id])
    assert runs and runs[0].data.metrics["nodes"] == summary["nodes"]
    assert runs[0].data.params["sources.icd10cm.enabled"] == "False"


def test_stats_show_and_match(small_tree: Path):
    stats = json.loads(medray("met", "stats", "--tree", str(small_tree), "--json").stdout)
    assert stats["nodes"] == json.loads(small_tree.with_name("tree.summary.json").read_text())["nodes"]

    shown = json.loads(medray("met", "show", "pleural effusion", "--tree", str(small_tree), "--json").stdout)
    assert shown["node_id"] == "MEDRAY:finding/pleural_effusion"
    assert "HP:0002202" in shown["codes"]
    assert shown["path"][-1] == "Chest radiograph finding"

    matched = json.loads(medray("met", "match", "No pneumothorax. Small left pleural effusion.", "--labels",
                                "--tree", str(small_tree), "--json").stdout)
    by_surface = {h["surface"]: h["assertion"] for h in matched["hits"]}
    assert by_surface["pneumothorax"] == "absent"
    assert by_surface["pleural effusion"] == "present"
    assert matched["labels"]["Pneumothorax"] == 0 and matched["labels"]["Pleural Effusion"] == 1

    table = medray("met", "match", "Mild cardiomegaly.", "--tree", str(small_tree)).stdout
    assert "Cardiomegaly" in table and "present" in table


def test_bad_config_key_names_it_and_does_no_work(tmp_path: Path):
    out = tmp_path / "tree.parquet"
    proc = medray("met", "build", "conf/met/quickstart.yaml", f"out={out}", "sources.hpo.pth=x", check=False)
    assert proc.returncode == 2
    assert "sources.hpo.pth" in proc.stderr and "unknown key" in proc.stderr
    assert not out.exists()
    proc = medray("met", "build", "conf/met/quickstart.yaml", "merge_by_name=maybe", check=False)
    assert proc.returncode == 2 and "merge_by_name" in proc.stderr


def test_missing_and_malformed_source_files_are_named(tmp_path: Path):
    missing = tmp_path / "nope.obo"
    proc = medray("met", "build", "conf/met/quickstart.yaml", f"out={tmp_path / 't.parquet'}", *SMALL,
                  "sources.symptom_ontology.enabled=true", f"sources.symptom_ontology.path={missing}", check=False)
    assert proc.returncode == 2 and str(missing) in proc.stderr and "not found" in proc.stderr

    bad = tmp_path / "bad.obo"
    bad.write_text("format-version: 1.2\n\n[Term]\nid: SYMP:1\nname: x\nthis line has no colon\n")
    proc = medray("met", "build", "conf/met/quickstart.yaml", f"out={tmp_path / 't.parquet'}", *SMALL,
                  "sources.symptom_ontology.enabled=true", f"sources.symptom_ontology.path={bad}", check=False)
    assert proc.returncode == 2 and f"{bad}:6" in proc.stderr


def test_every_command_has_help():
    for args in (["--help"], ["met", "--help"], ["bench", "--help"], ["met", "build", "--help"],
                 ["met", "grow", "--help"], ["met", "coverage", "--help"], ["bench", "met-match", "--help"],
                 ["data", "--help"], ["data", "run", "--help"], ["data", "generate", "--help"],
                 ["data", "quality-train", "--help"], ["tokenizer", "train", "--help"], ["bench", "data", "--help"],
                 ["bench", "neardup", "--help"]):
        proc = medray(*args)
        assert "Usage" in proc.stdout


def test_bench_met_match_prints_figures_beside_baseline(small_tree: Path):
    proc = medray("bench", "met-match", "--tree", str(small_tree), "--size-mb", "0.3", "--synthetic", "3000",
                  "--baseline", "regex", "--baseline-mb", "0.05")
    result = json.loads(proc.stdout)
    assert result["corpus"]["bytes"] >= 300_000
    assert result["matcher"]["tokens"] > 30_000 and result["matcher"]["hits"] > 0
    assert result["matcher"]["tokens_per_s_per_core"] > 0
    assert set(result["matcher"]["assertions"]) <= {"present", "absent", "uncertain"}
    assert result["baseline"]["name"].startswith("compiled regex")
    assert result["baseline"]["tokens_per_s_per_core"] > 0
    assert result["speedup_vs_baseline"] > 0
    assert result["build"]["synthetic_3000"]["surfaces"] == 3000
    assert result["build"]["full_tree"]["build_s"] >= 0


def test_unknown_axis_in_grow_config_is_named(tmp_path: Path):
    proc = medray("met", "grow", "conf/met/grow.yaml", "axes=[disease,organ]", check=False)
    assert proc.returncode == 2
    assert "'axes'" in proc.stderr and "organ" in proc.stderr


def test_coverage_entities_with_an_unknown_axis_name_the_line(small_tree: Path, tmp_path: Path):
    entities = tmp_path / "entities.tsv"
    entities.write_text("pleural effusion\tsymptom\nlung\torgan\n")
    proc = medray("met", "coverage", "--entities", str(entities), "--tree", str(small_tree), check=False)
    assert proc.returncode == 2 and f"{entities}:2" in proc.stderr and "organ" in proc.stderr


def test_coverage_amcs_and_corpus_frequencies(small_tree: Path, tmp_path: Path):
    entities = tmp_path / "entities.txt"
    entities.write_text("pleural effusion\ncomputed tomography\nleft lung\n")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in [
        "No pneumothorax. Small left pleural effusion.", "Pleural effusion is present.", "Mild cardiomegaly."] * 20) + "\n")
    proc = medray("met", "coverage", "--entities", str(entities), "--corpus", str(corpus),
                  "--tree", str(small_tree), "--json")
    result = json.loads(proc.stdout)
    amcs = result["amcs"]
    assert amcs["forward"] == pytest.approx(1.0, abs=1e-5)  # all three entities name tree nodes
    assert 0.0 < amcs["backward"] < amcs["forward"]
    freq = result["frequencies"]
    assert freq["mentions_by_assertion"] == {"present": 60, "absent": 20, "uncertain": 0}
    top = {n["name"]: n["count"] for n in freq["top_nodes"]}
    assert top["Pleural effusion"] == 40 and top["Cardiomegaly"] == 20


def test_data_run_names_a_missing_model_before_any_work(tmp_path: Path):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    proc = medray("data", "run", "conf/data/pipeline.yaml", f"input=[{tmp_path}]", f"quality.model_path={tmp_path / 'none.bin'}",
                  check=False)
    assert proc.returncode == 2 and "quality.model_path" in proc.stderr and "quality-train" in proc.stderr
