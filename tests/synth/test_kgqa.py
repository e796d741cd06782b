"""Multi-hop questions on a real tree's graph: path length, masking, leakage, starts, determinism."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pyarrow as pa
import pytest

from medray.errors import ConfigError, MedrayError
from medray.met.build import build_tree
from medray.met.tree import Node, Tree
from medray.synth.graph import KnowledgeGraph, build_graph
from medray.synth.kgqa import (
    ITEM_SCHEMA,
    KGQAConfig,
    backfill_starts,
    find_path,
    generate_kgqa,
    kgqa_prompt,
    kgqa_prompts,
    make_item,
    mask_label,
    mentions,
    node_terms,
    recover_masked,
    reference_cot,
    steps_along,
)
from medray.synth.relations import Edge
from medray.train.cot import StructuredCoT

MASK = re.compile(r"\[[A-Z]+\]")


@pytest.fixture(scope="module")
def tree() -> Tree:
    return build_tree([("radiology_lexicon", {}), ("dicom", {})])[0]


@pytest.fixture(scope="module")
def graph(tree) -> KnowledgeGraph:
    return build_graph(tree)[0]


@pytest.fixture(scope="module")
def findings(tree) -> list[str]:
    """The chest-radiograph findings: the weakly covered nodes of a typical back-fill list."""
    return tree.children("MEDRAY:finding/chest_radiograph")


@pytest.mark.parametrize("hops", [6, 8])
def test_paths_have_exactly_the_requested_length_and_are_simple(graph, findings, hops):
    items, report = generate_kgqa(graph, findings, KGQAConfig(hops=hops, paths_per_start=2))
    assert report["items"] == items.num_rows == 2 * len(findings) and report["failed_starts"] == 0
    assert items.schema.equals(ITEM_SCHEMA)
    for item in items.to_pylist():
        ids = item["path_ids"]
        assert item["hops"] == hops and len(ids) == hops + 1 and len(item["relations"]) == hops
        assert len(set(ids)) == len(ids), "a node repeats"
        assert not any(n.startswith("MET:") for n in ids)
        for head, relation, tail in zip(ids, item["relations"], ids[1:]):
            assert relation in graph.relations_between(head, tail)
    assert len({tuple(i["path_ids"]) for i in items.to_pylist()}) == items.num_rows


def test_masked_entities_are_recoverable_and_the_answer_is_not_in_the_question(graph, findings):
    items, _ = generate_kgqa(graph, findings, KGQAConfig(paths_per_start=3, answer="random", seed=7))
    positions = set()
    for item in items.to_pylist():
        question = item["question"]
        assert question.startswith(item["start_name"]) and question.endswith(f"What is {item['answer_mask']}?")
        recovered = recover_masked(item)
        counts = Counter(MASK.findall(question))  # each mask once in the chain, the answer's once more at the end
        assert counts == {m: 1 + (m == item["answer_mask"]) for m in counts}
        assert set(MASK.findall(question)) == set(recovered) == {mask_label(i) for i in range(item["hops"])}
        for mask, where in recovered.items():
            assert item["masks"][where["position"]] == mask
            assert where["name"] == item["path_names"][where["position"]] == graph.name(where["node_id"])
        answer = recovered[item["answer_mask"]]
        assert (answer["position"], answer["node_id"], answer["name"]) == (item["answer_position"], item["answer_id"], item["answer"])
        assert not mentions(question, node_terms(graph, item["answer_id"]))
        positions.add(item["answer_position"])
    assert len(positions) > 2  # "random" spreads the answer over the path


def test_seeded_and_deterministic(graph, findings):
    a, _ = generate_kgqa(graph, findings, KGQAConfig(seed=3))
    b, _ = generate_kgqa(graph, list(findings), KGQAConfig(seed=3))
    c, _ = generate_kgqa(graph, findings, KGQAConfig(seed=4))
    assert a.equals(b)
    assert a.column("path_ids").to_pylist() != c.column("path_ids").to_pylist()


def test_prefer_relations_crosses_axes(graph, findings):
    items, report = generate_kgqa(graph, findings, KGQAConfig(paths_per_start=2))
    assert {"located_in", "examined_by"} <= set(report["relations"])
    assert all(len(set(axes)) >= 2 for axes in items.column("path_axes").to_pylist())


def test_starts_that_cannot_reach_k_hops_are_reported_not_padded(tree):
    small = KnowledgeGraph(tree, [Edge("MEDRAY:finding/cardiomegaly", "located_in", "SCT:80891009", "t"),
                                  Edge("MEDRAY:finding/enlarged_cardiomediastinum", "located_in", "SCT:80891009", "t")],
                           hierarchy=False)
    starts = ["MEDRAY:finding/cardiomegaly", "MEDRAY:finding/pneumothorax", "no:such"]
    items, report = generate_kgqa(small, starts, KGQAConfig(hops=3))
    assert items.num_rows == 0
    assert report["failures"] == {"isolated": 1, "no_path_of_k_hops": 1, "unknown_node": 1}
    assert report["failed"] == [{"node_id": s, "reason": r} for s, r in
                                zip(starts, ["no_path_of_k_hops", "isolated", "unknown_node"])]
    ok, _ = generate_kgqa(small, starts[:1], KGQAConfig(hops=2))  # the two-hop path exists
    assert ok.column("path_ids").to_pylist() == [["MEDRAY:finding/cardiomegaly", "SCT:80891009",
                                                  "MEDRAY:finding/enlarged_cardiomediastinum"]]


def test_search_budget_is_a_reason(graph):
    steps, reason = find_path(graph, "MEDRAY:finding/cardiomegaly", 6, random.Random(0), max_expansions=3)
    assert steps is None and reason == "search_budget"


def test_a_question_that_would_leak_the_answer_is_not_made():
    nodes = [Node("MET:root", None, None, 0, "root"), Node("MET:disease", "MET:root", "disease", 1, "Disease"),
             Node("MET:symptom", "MET:root", "symptom", 1, "Symptom"),
             Node("D:j90", "MET:disease", "disease", 2, "Pleural effusion, not elsewhere classified"),
             Node("S:pe", "MET:symptom", "symptom", 2, "Pleural effusion", ["hydrothorax"])]
    graph = KnowledgeGraph(Tree.from_nodes(nodes), [Edge("D:j90", "presents_with", "S:pe", "t")], hierarchy=False)
    items, report = generate_kgqa(graph, ["D:j90", "S:pe"], KGQAConfig(hops=1))
    assert items.column("start_id").to_pylist() == ["S:pe"]  # "Pleural effusion is a finding of [A]" is fine
    assert report["failures"] == {"answer_leak": 1} and report["failed"][0]["node_id"] == "D:j90"


def test_starts_from_the_data_pipeline_report(tmp_path, findings):
    report = {"sampling": {"backfill": [{"node_id": n, "need": 3} for n in [*findings[:3], findings[0]]]}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert backfill_starts(str(path)) == findings[:3]
    assert backfill_starts(report, limit=2) == findings[:2]
    assert backfill_starts(pa.table({"node_id": findings[:2]})) == findings[:2]
    (tmp_path / "bad.json").write_text(json.dumps({"sampling": None}))
    with pytest.raises(MedrayError, match="bad.json.*backfill"):
        backfill_starts(str(tmp_path / "bad.json"))


def test_prompt_and_reference_cot(graph):
    ids = ["MEDRAY:finding/pleural_effusion", "MEDRAY:anatomy/pleura", "MEDRAY:finding/pneumothorax",
           "MEDRAY:finding/chest_radiograph", "MEDRAY:finding/cardiomegaly", "SCT:80891009", "DCM:CR"]
    item = make_item(graph, ids[0], steps_along(graph, ids), 5, seed=0)
    assert item["question"] == (
        "Pleural effusion is located in [A] (a body part), which is the site of [B] (a finding), which is a kind of "
        "[C] (a finding), which has the subtype [D] (a finding), which is located in [E] (a body part), which is "
        "imaged by [F] (an imaging modality). What is [E]?")
    assert (item["answer"], item["answer_mask"]) == ("Heart", "[E]")
    prompt = kgqa_prompt(item)
    assert item["question"] in prompt and "Answer: <the name of [E]>" in prompt
    assert all(f"## {s}" in prompt for s in ("Understanding", "Knowledge recall", "Reasoning", "Conclusion"))
    cot = StructuredCoT.parse(reference_cot(item).render(), visual=False)
    assert cot.answer == "Heart" and "[E] is Heart" in cot.reasoning
    table = kgqa_prompts(pa.Table.from_pylist([item], schema=ITEM_SCHEMA))
    assert table.column("prompt").to_pylist() == [prompt]
    with pytest.raises(MedrayError, match="no edge"):
        steps_along(graph, ["MEDRAY:finding/pleural_effusion", "DCM:CR"])


def test_config_errors_name_the_key(graph):
    with pytest.raises(ConfigError, match="kgqa.hops"):
        generate_kgqa(graph, [], KGQAConfig(hops=0))
    with pytest.raises(ConfigError, match="kgqa.answer"):
        KGQAConfig(answer="first").check()
