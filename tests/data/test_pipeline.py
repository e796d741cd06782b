"""The whole text pipeline on Ray, on a generated corpus with planted defects and a ground truth."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medray import storage
from medray.config import load_config
from medray.data.layout import Layout
from medray.data.pipeline import run_pipeline
from medray.data.settings import DataPipelineConfig
from medray.errors import ConfigError, MedrayError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tree):
    """Corpus with planted defects, the tree, a quality model and a tokenizer: what a user prepares first."""
    from medray.data.quality_bootstrap import quality_train
    from medray.data.synthetic import generate_corpus
    from medray.data.tokenizer import tokenizer_train

    root = tmp_path_factory.mktemp("pipeline")
    tree_path = str(root / "tree.parquet")
    tiny_tree.save(tree_path)
    truth = generate_corpus(tiny_tree, str(root / "corpus"), n_docs=300, files=3, seed=7)
    quality = quality_train({"model_path": str(root / "quality.bin"), "rounds": 0, "seed_docs": 300})
    tokenizer_train(str(root / "corpus"), str(root / "tok"), vocab_size=600)
    thresholds = truth["thresholds"]
    overrides = [
        f"input=[{root / 'corpus'}]", f"tag.tree={tree_path}", f"quality.model_path={quality['model_path']}",
        f"pack.tokenizer={root / 'tok'}", "pack.seq_len=128", "chunk_lines=40", "tracking.enabled=false",
        f"rules.min_words={thresholds['min_words']}", f"rules.max_words={thresholds['max_words']}",
        f"rules.max_digit_ratio={thresholds['max_digit_ratio']}",
        f"rules.max_repeated_line_share={thresholds['max_duplicate_line_fraction']}",
        f"rules.max_boilerplate_share={thresholds['max_boilerplate_line_fraction']}",
        "sample.temperature=3.0", "sample.min_docs_k=3", "sample.backfill_min_docs=3",
    ]
    return {"root": root, "truth": truth, "overrides": overrides}


def config(setup, *extra: str) -> DataPipelineConfig:
    return load_config(DataPipelineConfig, "data/pipeline", [*setup["overrides"], *extra])


def dropped_reasons(out: str) -> dict[str, str]:
    """record id -> reason, from the rejects and every phase's filtered output; no record dropped twice."""
    got = Layout(out).dropped_reasons()
    filtered = [i for uri in storage.list_files(storage.join(out, "filtered"), suffixes=(".parquet",))
                for i in storage.read_parquet(uri).column("id").to_pylist()]
    assert len(filtered) == len(set(filtered)), "a record dropped twice"
    return got


def outputs(out: str) -> dict[str, object]:
    """Every final output table by relative path (stats excluded: they hold CPU times)."""
    tables = {}
    for sub in ("docs", "packed", "filtered", "rejects"):
        for path in sorted(glob.glob(f"{out}/{sub}/**/*.parquet", recursive=True)):
            tables[os.path.relpath(path, out)] = pq.read_table(path)
    return tables


@pytest.fixture(scope="module")
def first_run(setup, ray_local):
    out = str(setup["root"] / "out-a")
    return out, run_pipeline(config(setup, f"out={out}"), progress=lambda m: None)


def test_planted_defects_found_with_the_right_reason(setup, first_run):
    out, report = first_run
    truth = setup["truth"]
    got = dropped_reasons(out)
    expected = truth["expected"]
    wrong = {i: (reason, got.get(i)) for i, reason in expected.items() if got.get(i) != reason}
    assert not wrong, wrong
    unexpected = {i: r for i, r in got.items() if i not in expected and r != "sampled_out"}
    assert not unexpected, unexpected
    assert {d["id"] for d in truth["exact_duplicates"]} <= {i for i, r in got.items() if r == "exact_duplicate"}
    assert {d["id"] for d in truth["near_duplicates"]} <= {i for i, r in got.items() if r == "near_duplicate"}


def test_every_stage_balances_and_pii_is_counted(setup, first_run):
    out, report = first_run
    truth = setup["truth"]
    stages = report["stages"]
    assert list(stages) == ["read", "exact_hash", "exact_dedup", "rules", "quality", "minhash", "near_dup", "tag", "sample", "pack"]
    for name, t in stages.items():
        assert t["in"] == t["kept"] + sum(t["dropped"].values()), name
    read = stages["read"]
    assert read["in"] + read["counts"]["blank_lines"] == truth["counts"]["lines"]
    assert sum(read["dropped"].values()) == truth["counts"]["rejected"]
    for kind, n in truth["pii"]["totals"].items():
        assert stages["rules"]["counts"][f"pii_{kind}"] == n, kind
    # consecutive stages hand over every kept record
    names = list(stages)
    for a, b in zip(names, names[1:]):
        if b != "pack":
            assert stages[a]["kept"] == stages[b]["in"], (a, b)
    docs = pq.read_table(f"{out}/docs").num_rows
    assert docs == stages["sample"]["kept"] + stages["sample"]["counts"]["copies_added"] == report["outputs"]["docs"]
    manifest = json.loads(Path(out, "manifest.json").read_text())
    assert manifest["packed"]["tokens"] == stages["pack"]["counts"]["tokens"] > 0
    packed = pq.read_table(f"{out}/packed")
    assert packed.num_rows == manifest["packed"]["rows"]
    assert {len(row) for row in packed.column("input_ids").to_pylist()} == {128}


def test_scrubbed_text_and_tags_reach_the_output(first_run):
    out, _ = first_run
    docs = pq.read_table(f"{out}/docs")
    texts = docs.column("text").to_pylist()
    assert not any("@" in t and "[EMAIL]" not in t for t in texts)
    assert sum("[EMAIL]" in t for t in texts) >= 1
    assert sum(bool(n) for n in docs.column("nodes").to_pylist()) > 0.9 * docs.num_rows
    assert set(docs.column_names) >= {"id", "text", "source", "meta", "nodes", "nodes_absent", "axis_counts", "copy"}


def test_sampling_lifts_the_tail(first_run):
    _, report = first_run
    before, after = report["sampling"]["before"], report["sampling"]["after"]
    assert after["tail_token_share"] > before["tail_token_share"]
    assert after["entropy_bits"] > before["entropy_bits"]
    # no head-share check here: on the tiny tree the head node is named in nearly every document, so no
    # reweighting of documents can lower its share (test_sample checks it on a Zipf corpus)


def test_same_input_same_output(setup, first_run):
    out_a, _ = first_run
    out_b = str(setup["root"] / "out-b")
    run_pipeline(config(setup, f"out={out_b}", "workers=2"), progress=lambda m: None)
    a, b = outputs(out_a), outputs(out_b)
    assert sorted(a) == sorted(b) and len(a) > 10
    for name in a:
        assert a[name].equals(b[name]), name


def test_a_killed_run_resumes_to_the_same_output(setup, first_run, tmp_path):
    """Kill a real run (its own local Ray) in the tag phase, then resume: the output equals an uninterrupted run's."""
    out_a, _ = first_run
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "medray", "data", "run", "data/pipeline", *setup["overrides"], f"out={out}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "RAY_ADDRESS": ""})
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not glob.glob(f"{out}/stats/tag/*.json"):
            assert proc.poll() is None, "the run ended before it could be stopped"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert glob.glob(f"{out}/stats/tag/*.json"), "the run never reached the tag phase"
    assert not os.path.exists(f"{out}/report.json")
    report = run_pipeline(config(setup, f"out={out}"), progress=lambda m: None)
    a, b = outputs(out_a), outputs(out)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].equals(b[name]), name
    assert report["stages"]["read"]["in"] == json.loads(Path(out_a, "report.json").read_text())["stages"]["read"]["in"]


def test_s3_in_and_out(setup, first_run, s3_prefix):
    corpus = setup["root"] / "corpus"
    for path in sorted(corpus.iterdir()):
        storage.atomic_write_bytes(f"{s3_prefix}/corpus/{path.name}", path.read_bytes())
    out = f"{s3_prefix}/out"
    report = run_pipeline(config(setup, f"input=[{s3_prefix}/corpus]", f"out={out}"), progress=lambda m: None)
    _, local = first_run
    assert report["stages"] == {k: {**v, "cpu_s": report["stages"][k]["cpu_s"],
                                    "tokens_per_s_per_core": report["stages"][k]["tokens_per_s_per_core"]}
                                for k, v in local["stages"].items()}
    manifest = json.loads(storage.read_text(f"{out}/manifest.json"))
    assert manifest["docs"]["rows"] == local["outputs"]["docs"]
    assert storage.read_parquet(f"{out}/docs").num_rows == local["outputs"]["docs"]
    assert dropped_reasons(out) == dropped_reasons(first_run[0])


def test_config_errors_name_the_key(setup, tmp_path):
    with pytest.raises(ConfigError, match="stages"):
        config(setup, "stages=[rules,dedupe]").check()
    with pytest.raises(ConfigError, match="pack.tokenizer"):
        config(setup, f"pack.tokenizer={tmp_path / 'none'}").check()
    with pytest.raises(ConfigError, match="sample"):
        config(setup, "stages=[rules,sample]").check()


def test_a_changed_config_never_mixes_into_an_old_run(setup, first_run):
    out, _ = first_run
    with pytest.raises(MedrayError, match="another input or config"):
        run_pipeline(config(setup, f"out={out}", "sample.temperature=1.5"), progress=lambda m: None)
