import math

import pyarrow as pa
import pytest

from medray.errors import MedrayError
from medray.met.coverage import amcs, coverage_report, node_frequency_stats, tree_terms
from medray.met.embed import get_embedder
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id


def small_tree(extra: dict[str, list[str]] | None = None) -> Tree:
    names = {
        "disease": ["pneumonia", "asthma", "fracture of femur"],
        "anatomy": ["lung", "femur"],
        "symptom": ["cough"],
    }
    for axis, more in (extra or {}).items():
        names[axis] = names.get(axis, []) + more
    nodes = [Node(ROOT_ID, None, None, 0, "root")]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a) for a in AXES]
    for axis, items in names.items():
        for i, name in enumerate(items):
            nodes.append(Node(f"T:{axis}:{i}", axis_node_id(axis), axis, 2, name))
    return Tree.from_nodes(nodes)


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def test_amcs_of_a_list_against_itself_is_one(embedder):
    terms = ["pneumonia", "pleural effusion", "fracture of femur", "headache"]
    assert amcs(terms, terms, embedder) == pytest.approx(1.0, abs=1e-5)


def test_amcs_is_asymmetric(embedder):
    small, big = ["pneumonia"], ["pneumonia", "glaucoma", "fracture of femur"]
    assert amcs(small, big, embedder) == pytest.approx(1.0, abs=1e-5)
    backward = amcs(big, small, embedder)
    assert backward < 0.8
    with pytest.raises(MedrayError):
        amcs([], big, embedder)


def test_tree_terms_skip_root_and_axis_nodes():
    terms = tree_terms(small_tree({"disease": ["Pneumonia"]}))  # duplicate by normal form
    assert terms == {
        "disease": ["pneumonia", "asthma", "fracture of femur"],
        "anatomy": ["lung", "femur"],
        "modality": [],
        "symptom": ["cough"],
    }


def test_coverage_report_with_axis_entities(embedder):
    tree = small_tree()
    rep = coverage_report(tree, {"disease": ["pneumonia", "bronchitis"], "anatomy": ["lung"]}, embedder)
    assert set(rep["per_axis"]) == set(AXES)
    assert rep["mode"] == "per_axis_entities"
    assert rep["counts"] == {"entities": 3, "tree_terms": 6, "tree_terms_total": 6, "sampled": False}
    assert rep["per_axis"]["anatomy"]["forward"] == pytest.approx(1.0, abs=1e-5)
    disease = rep["per_axis"]["disease"]
    assert 0.5 < disease["forward"] < 1.0 and disease["entities"] == 2 and disease["tree_terms"] == 3
    assert rep["per_axis"]["modality"] == {"forward": None, "backward": None, "entities": 0, "tree_terms": 0}
    assert rep["per_axis"]["symptom"]["forward"] is None and rep["per_axis"]["symptom"]["backward"] is None
    # the benchmark is smaller than the tree: forward coverage beats backward
    assert rep["forward"] > rep["backward"]
    assert rep["weakest_entities"][0]["entity"] == "bronchitis"


def test_coverage_report_with_flat_entities(embedder):
    tree = small_tree()
    ents = ["pneumonia", "lung", "femur", "cough", "wheezing"]
    rep = coverage_report(tree, ents, embedder)
    per = rep["per_axis"]
    assert rep["mode"] == "flat_entities"
    assert sum(p["entities"] for p in per.values()) == 5
    assert per["anatomy"]["entities"] == 2 and per["anatomy"]["forward"] == pytest.approx(1.0, abs=1e-5)
    weighted = sum(p["forward"] * p["entities"] for p in per.values() if p["entities"]) / 5
    assert rep["forward"] == pytest.approx(weighted, abs=1e-5)
    # backward per axis: every tree name of the axis against all entities
    assert per["anatomy"]["backward"] == pytest.approx(1.0, abs=1e-5)
    assert per["modality"]["backward"] is None


def test_coverage_report_sampling_is_seeded(embedder):
    tree = small_tree()
    a = coverage_report(tree, ["pneumonia"], embedder, max_tree_terms_per_axis=1, seed=3)
    b = coverage_report(tree, ["pneumonia"], embedder, max_tree_terms_per_axis=1, seed=3)
    assert a == b
    assert a["counts"]["tree_terms"] == 3 and a["counts"]["tree_terms_total"] == 6 and a["counts"]["sampled"]
    only = coverage_report(tree, ["pneumonia"], embedder, axes=["anatomy"])
    assert set(only["per_axis"]) == {"anatomy"} and only["counts"]["tree_terms"] == 2


def freq_tree() -> Tree:
    nodes = [Node(ROOT_ID, None, None, 0, "root")]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a) for a in AXES]
    nodes += [Node(f"d{i}", "MET:disease", "disease", 2, f"disease {i}") for i in range(1, 5)]
    nodes += [Node(f"a{i}", "MET:anatomy", "anatomy", 2, f"part {i}") for i in range(1, 3)]
    return Tree.from_nodes(nodes)


def test_node_frequency_stats_hand_computed():
    counts = {"d1": 6, "d2": 2, "d3": 2, "a1": 0, "X:unknown": 5, "MET:disease": 4}
    st = node_frequency_stats(freq_tree(), counts)
    h = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))
    assert st["nodes"] == 6 and st["mentions"] == 10
    assert st["nodes_with_data"] == 3 and st["nodes_without_data"] == 3
    assert st["share_without_data"] == pytest.approx(0.5)
    assert st["entropy_nats"] == pytest.approx(h)
    assert st["entropy_normalised"] == pytest.approx(h / math.log(6))
    # head: d1 (6) < 8, then d2 (tie with d3 broken by id) reaches 8 = 0.8 * 10
    assert st["head_size"] == 2 and st["head_mentions"] == 8
    assert st["tail_share"] == pytest.approx(0.2) and st["head_share_of_nodes"] == pytest.approx(2 / 6)
    assert st["unknown"] == {"node_ids": 2, "mentions": 9}
    assert [t["node_id"] for t in st["top_nodes"]] == ["d1", "d2", "d3"]
    dis, ana = st["per_axis"]["disease"], st["per_axis"]["anatomy"]
    assert (dis["nodes"], dis["nodes_without_data"], dis["mentions"]) == (4, 1, 10)
    assert dis["entropy_normalised"] == pytest.approx(h / math.log(4))
    assert (ana["nodes"], ana["nodes_without_data"], ana["share_without_data"], ana["tail_share"]) == (2, 2, 1.0, 0.0)
    assert set(st["per_axis"]) == {"disease", "anatomy"}


def test_node_frequency_stats_k_quantile_and_table_input():
    table = pa.table({"node_id": ["d1", "d2", "d3", "d1"], "count": [4, 2, 2, 2]})
    st = node_frequency_stats(freq_tree(), table, tail_quantile=0.5, k=3)
    assert st["mentions"] == 10 and st["nodes_with_data"] == 1 and st["nodes_without_data"] == 5
    assert st["head_size"] == 1 and st["tail_share"] == pytest.approx(0.4)
    with pytest.raises(MedrayError):
        node_frequency_stats(freq_tree(), {"d1": -1})
    empty = node_frequency_stats(freq_tree(), {})
    assert empty["mentions"] == 0 and empty["share_without_data"] == 1.0 and empty["tail_share"] == 0.0
