"""Reference outputs pass the validators for every task of real phantom pairs, and a short warm-up on them
lowers the reply loss of a tiny model that then still generates through the engine."""

from __future__ import annotations

import pyarrow as pa
import pytest

from medray.met.build import build_tree
from medray.met.matcher import Matcher
from medray.mm.mm_settings import RetrieveConfig
from medray.mm.pairs import read_pairs
from medray.mm.phantom import write_phantoms
from medray.mm.retrieve import anchor_pairs, attach_node_ids
from medray.synth.engine import generate_table
from medray.synth.engine_settings import EngineConfig, SamplingConfig
from medray.synth.items import KINDS, build_items
from medray.synth.reference_output import reference_output
from medray.synth.tiny_model import write_tiny_causal_lm
from medray.synth.validate import validate_items
from medray.synth.warm_up import warm_up


@pytest.fixture(scope="module")
def tree():
    built, _ = build_tree([("hpo", {}), ("radiology_lexicon", {}), ("dicom", {})])
    return built


@pytest.fixture(scope="module")
def tasks(tree, tmp_path_factory) -> pa.Table:
    root = tmp_path_factory.mktemp("phantoms")
    write_phantoms(40, str(root), seed=2, size=64)
    pairs, _ = read_pairs(str(root), check_images="none")
    cfg = RetrieveConfig()
    cfg.embedding.sources = ["radiology_lexicon"]  # every HPO term would take a minute to embed
    anchors = anchor_pairs(pairs, tree, cfg).anchors
    built, _ = build_items(attach_node_ids(pairs, anchors), tree)
    return built


def test_reference_outputs_of_every_kind_pass_validation(tree, tasks):
    texts = [reference_output(k, r) for k, r in zip(tasks.column("kind").to_pylist(), tasks.column("reference").to_pylist())]
    table = tasks.append_column("generated_text", pa.array(texts, pa.string()))
    kept, rejects = validate_items(table, tree, Matcher(tree))
    assert rejects.num_rows == 0, rejects.slice(0, 3).to_pylist()
    assert kept.num_rows == tasks.num_rows > 40
    assert set(kept.column("kind").to_pylist()) == set(KINDS)
    with pytest.raises(ValueError, match="unknown kind"):
        reference_output("essay", "{}")


def test_warm_up_lowers_the_reply_loss_and_the_model_still_generates(tasks, tmp_path):
    base = write_tiny_causal_lm(str(tmp_path / "base"), seed=0, train_steps=0)
    prompts = tasks.column("prompt").to_pylist()
    replies = [reference_output(k, r) for k, r in zip(tasks.column("kind").to_pylist(), tasks.column("reference").to_pylist())]
    report = warm_up(base, str(tmp_path / "taught"), prompts, replies, steps=40, batch_size=4, lr=3e-3)
    assert report["steps"] == 40 and report["pairs"] + report["left_out"] == len(prompts)
    first, *_, last = report["loss_by_quarter"]
    assert last < 0.7 * first
    out = generate_table(pa.table({"prompt": prompts[:4]}),
                         EngineConfig(model=report["model"], apply_chat_template=True,
                                      sampling=SamplingConfig(max_new_tokens=12)))
    assert all(n > 0 for n in out.column("num_generated_tokens").to_pylist())
