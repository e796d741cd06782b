"""`medray synth run`: the whole job on a real tree, phantom pairs with planted bad ones and the real
`transformers` engine with a tiny model on CPU; counts reconcile per stage, and a relaunch reuses work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medray.config import load_config
from medray.errors import ConfigError
from medray.met.build import build_tree
from medray.mm.phantom import write_phantoms
from medray.synth.run import run_synth
from medray.synth.settings import SynthConfig
from medray.synth.tiny_model import write_tiny_causal_lm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("synth")
    tree, _ = build_tree([("hpo", {}), ("radiology_lexicon", {}), ("dicom", {})])
    tree.save(str(root / "tree.parquet"))
    write_phantoms(30, str(root / "phantom"), seed=5, size=64)
    reports = sorted(p for p in (root / "phantom").rglob("s*.txt"))
    reports[0].write_text("")  # planted: a report with no text
    images = sorted((root / "phantom").rglob("*.png"))
    images[1].write_bytes(b"not a png")  # planted: an image that does not decode
    model = write_tiny_causal_lm(str(root / "model"), seed=0)
    return {"root": root, "tree": str(root / "tree.parquet"), "pairs": str(root / "phantom"), "model": model,
            "bad": {reports[0].stem, images[1].parent.name}}


def config(inputs: dict, out: str, *extra: str) -> SynthConfig:
    return load_config(SynthConfig, "synth/tiny", [
        f"tree={inputs['tree']}", f"pairs={inputs['pairs']}", f"out={out}", f"engine.model={inputs['model']}",
        "split=null", "use_ray=false", "tracking.enabled=false", "kgqa.max_starts=4", "engine.sampling.max_new_tokens=24",
        *extra])


@pytest.fixture(scope="module")
def first_run(inputs) -> dict:
    out = str(inputs["root"] / "out")
    return {"out": out, "report": run_synth(config(inputs, out), progress=lambda msg: None)}


def test_counts_reconcile_stage_by_stage(first_run, inputs):
    report = first_run["report"]
    stages = report["stages"]
    assert report["pairs"]["read"] == 30
    assert sum(report["pairs"]["read_rejects"].values()) == 2  # the planted pairs, never lost
    assert report["pairs"]["in_split"] == 28
    retrieve, align, items, kgqa = (stages[s] for s in ("retrieve", "align", "items", "kgqa"))
    assert retrieve["in"] == 28 == retrieve["anchored"] + retrieve["unanchored"]
    assert align["in"] == 28 == align["kept"] + align["filtered"] + align["rejected"]
    assert items["in"] == items["kept"] + items["rejected"] > 0
    assert sum(items["tasks_by_kind"].values()) == items["in"]
    assert sum(items["reject_reasons"].values()) == items["rejected"]
    assert kgqa["proposals"] == kgqa["kept"] + kgqa["filtered"] + kgqa["rejected"] == 3 * kgqa["items"]
    assert 0 < kgqa["items"] <= 4 and kgqa["starts"] <= 4
    with open(os.path.join(first_run["out"], "sft", "synth.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == report["sft"]["rows"] == items["kept"] + kgqa["items_kept"]
    read_rejects = __import__("pyarrow.parquet", fromlist=["x"]).read_table(
        os.path.join(first_run["out"], "rejects", "read.parquet")).to_pylist()
    assert {r["reason"] for r in read_rejects} >= {"empty_report"} and len(read_rejects) == 2


def test_a_relaunch_reuses_finished_stages_and_reruns_what_changed(first_run, inputs):
    again = run_synth(config(inputs, first_run["out"]), progress=lambda msg: None)
    assert all(again["stages"][s].get("reused") for s in ("retrieve", "align", "items", "kgqa"))
    assert again["stages"]["items"]["kept"] == first_run["report"]["stages"]["items"]["kept"]
    changed = run_synth(config(inputs, first_run["out"], "kgqa.max_starts=2"), progress=lambda msg: None)
    assert all(changed["stages"][s].get("reused") for s in ("retrieve", "align", "items"))
    assert not changed["stages"]["kgqa"].get("reused") and changed["stages"]["kgqa"]["starts"] <= 2


def test_several_engines_answer_as_experts_each_with_every_seed(inputs, tmp_path):
    other = write_tiny_causal_lm(str(tmp_path / "other-model"), seed=1)  # different weights, different answers
    report = run_synth(config(inputs, str(tmp_path / "out"), "stages=[retrieve,kgqa]", "kgqa.max_starts=2",
                              "kgqa.expert_seeds=[0,1]", f"kgqa.engines=[{{model: {other}}}]",
                              "engine.sampling.max_new_tokens=12"), progress=lambda msg: None)
    kgqa = report["stages"]["kgqa"]
    assert kgqa["proposals"] == 4 * kgqa["items"] == kgqa["kept"] + kgqa["filtered"] + kgqa["rejected"]
    assert set(kgqa["per_expert"]) == {"model/seed=0", "model/seed=1", "other-model/seed=0", "other-model/seed=1"}
    assert all(e["proposals"] == kgqa["items"] for e in kgqa["per_expert"].values())
    proposals = __import__("pyarrow.parquet", fromlist=["x"]).read_table(
        str(tmp_path / "out" / "kgqa" / "proposals.parquet")).to_pylist()
    by_expert = {(r["expert"], r["item_id"]): r["generated_text"] for r in proposals}
    item = proposals[0]["item_id"]
    assert by_expert[("model/seed=0", item)] != by_expert[("other-model/seed=0", item)]  # two models answered
    with pytest.raises(ConfigError, match=r"kgqa\.engines\.0\.model"):
        run_synth(config(inputs, str(tmp_path / "bad"), f"kgqa.engines=[{{model: {tmp_path / 'none'}}}]"))


def test_experts_are_named_by_model_folder_when_there_are_several():
    cfg = SynthConfig()
    assert [name for name, _ in cfg.experts()] == [None]
    cfg.engine.model = "/models/qwen"
    cfg.engine.sampling.temperature = 0.9
    cfg.kgqa.engines = [{"model": "s3://b/llama/"}, {"model": "/other/qwen", "backend": "vllm"}]
    experts = cfg.experts()
    assert [name for name, _ in experts] == ["qwen", "llama", "qwen#2"]
    assert experts[2][1].backend == "vllm" and experts[1][1].backend == "transformers"
    assert all(engine.sampling.temperature == 0.9 for _, engine in experts)  # the job's sampling, unless changed
    cfg.kgqa.engines = [{"model": "/m", "sampling": {"temprature": 1.0}}]
    with pytest.raises(ConfigError) as err:
        cfg.experts()
    assert err.value.key == "kgqa.engines.0.sampling.temprature" and "unknown key" in str(err.value)


def test_bad_config_fails_before_work_naming_the_key(inputs, tmp_path):
    with pytest.raises(ConfigError, match="engine.model"):
        run_synth(config(inputs, str(tmp_path), f"engine.model={tmp_path / 'none'}"))
    with pytest.raises(ConfigError, match="stages"):
        run_synth(config(inputs, str(tmp_path), "stages=[items]"))
    assert not (tmp_path / "report.json").exists()


def test_cli_prints_the_report_as_json(inputs, tmp_path):
    out = tmp_path / "cli"
    args = [f"tree={inputs['tree']}", f"pairs={inputs['pairs']}", f"out={out}", f"engine.model={inputs['model']}",
            "split=null", "use_ray=false", "tracking.enabled=false", "stages=[retrieve,align]"]
    proc = subprocess.run([sys.executable, "-m", "medray", "synth", "run", "conf/synth/tiny.yaml", *args, "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert set(report["stages"]) == {"retrieve", "align"} and report["stages"]["align"]["in"] == 28
    assert report["sft"]["rows"] == 0 and (out / "aligned.parquet").exists()
