"""Synthesis task rows on a real tree (HPO + radiology lexicon + DICOM) and phantom pairs.

The phantom labels are true by construction, so every reference can be
checked against them: distractors are siblings of the answer, never the
answer, its ancestors or anything the image has.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pyarrow as pa
import pytest

from medray.errors import ConfigError
from medray.met.build import build_tree
from medray.met.matcher import Matcher
from medray.mm.pairs import read_pairs
from medray.mm.phantom import write_phantoms
from medray.synth.grounding import PairGrounding, ground_pair, label_node
from medray.synth.items import (
    KINDS,
    SKIP_SCHEMA,
    TASK_SCHEMA,
    ItemConfig,
    build_items,
    pick_distractors,
)
from medray.synth.prompts import format_options
from medray.synth.validate import ValidateBatches, reject_counts, split_validated, validate_items

N_PAIRS = 200


@pytest.fixture(scope="module")
def tree():
    built, _ = build_tree([("hpo", {}), ("radiology_lexicon", {}), ("dicom", {})])
    return built


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> pa.Table:
    root = tmp_path_factory.mktemp("phantoms")
    write_phantoms(N_PAIRS, str(root), seed=11, size=64)
    table, rejects = read_pairs(str(root), check_images="none")
    assert rejects.num_rows == 0
    return table


@pytest.fixture(scope="module")
def built(pairs, tree):
    return build_items(pairs, tree, ItemConfig(per_kind=2, seed=3))


def node(tree, slug: str) -> str:
    return label_node(tree, slug)


def labels_of(pairs: pa.Table) -> dict[str, dict]:
    return {i: json.loads(lab) for i, lab in zip(pairs["id"].to_pylist(), pairs["labels"].to_pylist())}


def test_schemas_and_every_pair_kind_accounted_for(built, pairs):
    tasks, skipped = built
    assert tasks.schema == TASK_SCHEMA and skipped.schema == SKIP_SCHEMA
    seen = set(zip(tasks["pair_id"].to_pylist(), tasks["kind"].to_pylist()))
    gaps = set(zip(skipped["pair_id"].to_pylist(), skipped["kind"].to_pylist()))
    assert seen.isdisjoint(gaps)
    assert seen | gaps == {(p, k) for p in pairs["id"].to_pylist() for k in KINDS}
    assert len(set(tasks["id"].to_pylist())) == tasks.num_rows
    normal = [i for i, lab in labels_of(pairs).items() if not lab["findings"]]
    assert normal, "the phantom set has normal studies"
    reasons = {(p, k): r for p, k, r in zip(skipped["pair_id"].to_pylist(), skipped["kind"].to_pylist(), skipped["reason"].to_pylist())}
    for pair_id in normal:
        for kind in ("vqa_mcq", "vqa_open", "reasoning_vqa"):
            assert reasons[(pair_id, kind)] == "no_present_finding"
    counts = Counter(tasks["kind"].to_pylist())
    assert counts["caption"] == N_PAIRS
    assert counts["vqa_mcq"] > 100 and counts["reasoning_vqa"] > 100 and counts["vqa_yesno"] > 300


def test_distractors_are_siblings_never_answer_ancestor_or_in_image(built, pairs, tree):
    tasks, _ = built
    labels = labels_of(pairs)
    checked = 0
    for pair_id, kind, raw in zip(tasks["pair_id"].to_pylist(), tasks["kind"].to_pylist(), tasks["reference"].to_pylist()):
        if kind not in ("vqa_mcq", "reasoning_vqa"):
            continue
        ref = json.loads(raw)
        answer = ref["answer_node_id"]
        image = {node(tree, f["name"]) for f in labels[pair_id]["findings"]}
        in_image = set(image)
        for nid in image:
            in_image.update(tree.ancestors(nid))
            in_image.update(tree.subtree(nid))
        options = ref["option_node_ids"]
        assert 3 <= len(options) <= 4 and len(set(options)) == len(options)
        assert options["ABCD".index(ref["answer_letter"])] == answer
        assert ref["options"] == [tree.node(o).name for o in options]
        for other in options:
            if other == answer:
                continue
            checked += 1
            assert tree.parent(other) == tree.parent(answer)
            assert other not in tree.ancestors(answer)
            assert other not in in_image, f"{pair_id}: distractor {tree.node(other).name} is in the image"
    assert checked > 400


def test_co_occurring_siblings_are_never_options(tree):
    effusion, ptx = node(tree, "pleural_effusion"), node(tree, "pneumothorax")
    consolidation, atelectasis, opacity = node(tree, "consolidation"), node(tree, "atelectasis"), node(tree, "lung_opacity")
    assert ptx in tree.siblings(effusion)
    assert opacity in tree.siblings(atelectasis) and opacity in tree.ancestors(consolidation)
    both = PairGrounding("p", "", "", present=[effusion, ptx])
    alone = PairGrounding("p", "", "", present=[effusion])
    picked_alone = set()
    for seed in range(30):
        assert ptx not in pick_distractors(tree, effusion, both, 3, random.Random(seed))
        picked_alone.update(pick_distractors(tree, effusion, alone, 3, random.Random(seed)))
        with_consolidation = PairGrounding("p", "", "", present=[atelectasis, consolidation])
        assert opacity not in pick_distractors(tree, atelectasis, with_consolidation, 3, random.Random(seed))
    assert ptx in picked_alone  # allowed when the image does not have it


def test_references_follow_the_labels(built, pairs, tree):
    tasks, _ = built
    labels = labels_of(pairs)
    yes = no = 0
    for row in tasks.to_pylist():
        ref, lab = json.loads(row["reference"]), labels[row["pair_id"]]
        present = {node(tree, f["name"]) for f in lab["findings"] if f["certainty"] == "present"}
        uncertain = {node(tree, f["name"]) for f in lab["findings"] if f["certainty"] == "uncertain"}
        negated = {node(tree, n) for n in lab["negated"]}
        assert set(ref["image_node_ids"]) == present and set(ref["uncertain_node_ids"]) == uncertain
        for nid in present | uncertain:
            assert nid in ref["allowed_node_ids"] and set(tree.ancestors(nid)) <= set(ref["allowed_node_ids"])
        assert row["image_path"].endswith(".png") and row["prompt"]
        assert "Digital Radiography" in row["prompt"] and "Chest" in row["prompt"]
        if row["kind"] == "vqa_yesno":
            if ref["answer"] == "yes":
                yes += 1
                assert ref["subject_node_id"] in present
            else:
                no += 1
                assert ref["answer"] == "no" and ref["subject_node_id"] in negated
            assert row["node_id"] == ref["subject_node_id"]
        elif row["kind"] == "caption":
            assert set(ref["required_node_ids"]) == present
            for finding in ref["path"]["findings"]:
                assert finding["path"][-1] in row["prompt"]
        else:
            assert ref["answer_node_id"] in present and row["node_id"] == ref["answer_node_id"]
        if row["kind"] in ("vqa_mcq", "reasoning_vqa"):
            assert f"Options: {format_options(ref['options'])}" in row["prompt"]
    assert yes > 100 and no > 100


def test_deterministic_per_seed(pairs, tree, built):
    tasks, skipped = built
    again, skipped_again = build_items(pairs, tree, ItemConfig(per_kind=2, seed=3))
    assert again.equals(tasks) and skipped_again.equals(skipped)
    other, _ = build_items(pairs, tree, ItemConfig(per_kind=2, seed=4))
    assert other["seed"].to_pylist() != tasks["seed"].to_pylist()
    assert other["reference"].to_pylist() != tasks["reference"].to_pylist()


def test_unlabelled_pair_grounded_from_anchors_and_report(tree):
    effusion, ptx = node(tree, "pleural_effusion"), node(tree, "pneumothorax")
    lung, cr = tree.resolve("lung"), tree.resolve("Computed Radiography")
    row = {"id": "u1", "image_path": "/img/u1.png", "findings": "Small left pleural effusion. No pneumothorax.",
           "node_ids": [effusion, lung, cr], "labels": None}
    matcher = Matcher(tree)
    grounding = ground_pair(row, tree, modality=tree.resolve("Digital Radiography"), anatomy=tree.resolve("Chest"),
                            matcher=matcher)
    assert grounding.present == [effusion] and ptx in grounding.absent
    assert grounding.anatomy == lung and grounding.modality == cr
    tasks, skipped = build_items(pa.Table.from_pylist([row]), tree, ItemConfig(kinds=["vqa_yesno", "caption"]),
                                 matcher=matcher)
    refs = [json.loads(r) for r in tasks["reference"].to_pylist()]
    assert {(r["kind"], r["answer"]) for r in refs} == {("vqa_yesno", "yes"), ("vqa_yesno", "no"), ("caption", "")}
    assert refs[0]["path"]["anatomy"][-1] == "Lung" and "Computed Radiography" in tasks["prompt"][0].as_py()
    assert skipped.num_rows == 0


def test_config_errors_name_the_key(tree, pairs):
    with pytest.raises(ConfigError, match="items.kinds"):
        build_items(pairs, tree, ItemConfig(kinds=["vqa_essay"]))
    with pytest.raises(ConfigError, match="items.modality"):
        build_items(pairs, tree, ItemConfig(modality="Not a modality at all"))
    with pytest.raises(ConfigError, match="items.anatomy"):
        build_items(pairs, tree, ItemConfig(anatomy="Digital Radiography"))
    with pytest.raises(ConfigError, match="items.n_options"):
        ItemConfig(n_options=2, min_options=3).check()


def template_output(kind: str, ref: dict) -> str:
    """What a model that follows the prompt writes (the format each prompt asks for)."""
    options = format_options(ref["options"])
    answer = f"{ref['answer_letter']}) {ref['answer']}"
    if kind == "caption":
        names = " and ".join(f["path"][-1].lower() for f in ref["path"]["findings"]) or "clear lungs"
        return f"Caption: Digital radiograph of the chest showing {names}."
    if kind == "vqa_yesno":
        return f"Question: Does the radiograph show {ref['subject'].lower()}?\nAnswer: {ref['answer']}"
    if kind == "vqa_open":
        return f"Question: What is the main finding?\nAnswer: {ref['answer']}."
    if kind == "vqa_mcq":
        return f"Question: Which finding is seen?\nOptions: {options}\nAnswer: {answer}"
    return (f"Question: Which finding is seen?\nOptions: {options}\n## Understanding\nWhich option is seen.\n"
            f"## Visual observation\nThe image shows {ref['answer'].lower()}.\n## Reasoning\nOnly one option fits.\n"
            f"## Conclusion\nIt is {ref['answer'].lower()}.\nAnswer: {answer}\n")


def test_pipeline_on_a_ray_actor_pool(ray_local, pairs, tmp_path):
    """Tasks -> outputs -> validation in a Ray Data actor pool: the same verdicts as the plain function.

    On the lexicon + DICOM tree (every chest finding a sibling of the others), so actors start fast.
    """
    import ray
    from ray.data import ActorPoolStrategy

    small, _ = build_tree([("radiology_lexicon", {}), ("dicom", {})])
    tasks, _ = build_items(pairs.slice(0, 80), small, ItemConfig(per_kind=2, seed=7))
    texts = [template_output(k, json.loads(r)) for k, r in zip(tasks["kind"].to_pylist(), tasks["reference"].to_pylist())]
    texts = ["" if i % 7 == 0 else "Sure!\n" + t if i % 7 == 1 else t for i, t in enumerate(texts)]
    table = tasks.append_column("generated_text", pa.array(texts))
    tree_path = str(tmp_path / "tree.parquet")
    small.save(tree_path)
    tagged = ray.data.from_arrow(table).map_batches(
        ValidateBatches, fn_constructor_args=(tree_path,), batch_format="pyarrow", batch_size=100,
        compute=ActorPoolStrategy(size=1), num_cpus=1).to_arrow_refs()
    kept, rejects = split_validated(pa.concat_tables(ray.get(tagged)))
    plain_kept, plain_rejects = validate_items(table, small, Matcher(small))
    assert kept.num_rows + rejects.num_rows == table.num_rows > 200
    assert sorted(kept["id"].to_pylist()) == sorted(plain_kept["id"].to_pylist())
    verdicts = sorted(zip(rejects["id"].to_pylist(), rejects["reason"].to_pylist()))
    assert verdicts == sorted(zip(plain_rejects["id"].to_pylist(), plain_rejects["reason"].to_pylist()))
    counts = reject_counts(rejects)
    assert counts["empty_output"] == len(range(0, table.num_rows, 7))
    assert counts["bad_format"] == len(range(1, table.num_rows, 7))
    assert sum(counts.values()) == rejects.num_rows and set(kept["kind"].to_pylist()) == set(KINDS)
