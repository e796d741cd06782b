"""Node-guided retrieval on phantom pairs and hand-written texts: anchors, unanchored reasons, pools, Ray."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from medray.errors import ConfigError, MedrayError
from medray.met.build import build_tree
from medray.met.matcher import Matcher
from medray.met.tree import Node, Tree
from medray.mm.mm_settings import RetrieveConfig
from medray.mm.pairs import read_pairs
from medray.mm.phantom import write_phantoms
from medray.mm.retrieve import (
    anchor_pairs,
    anchor_pairs_ray,
    attach_node_ids,
    node_counts,
    node_pool,
    pools_under,
)

PE, PTX, ATEL = "MEDRAY:finding/pleural_effusion", "MEDRAY:finding/pneumothorax", "MEDRAY:finding/atelectasis"
LOCULATED = "TEST:loculated_effusion"
HANDWRITTEN = [
    {"id": "h1", "findings": "No pneumothorax. Small left pleural effusion."},
    {"id": "h2", "findings": "Possible pneumothorax at the right apex."},
    {"id": "h3", "findings": "Loculated pleural effusion on the right."},
    {"id": "h4", "findings": "Collapsed lung on the left."},
    {"id": "h5", "findings": "Images reviewed with the referring team."},
    {"id": "h6", "findings": "   "},
    {"id": "h7", "findings": "No pleural effusion. No pneumothorax."},
]


@pytest.fixture(scope="module")
def tree() -> Tree:
    """The chest lexicon and DICOM tree, plus one child under Pleural effusion (counts "under" a node)."""
    base, _ = build_tree([("radiology_lexicon", {}), ("dicom", {})])
    parent = base.node(PE)
    child = Node(LOCULATED, PE, "symptom", parent.level + 1, "Loculated pleural effusion", ["loculated effusion"],
                 [LOCULATED], ["test"])
    return Tree.from_nodes([*base.nodes(), child])


@pytest.fixture(scope="module")
def matcher(tree) -> Matcher:
    return Matcher(tree)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> pa.Table:
    root = tmp_path_factory.mktemp("phantoms") / "set"
    write_phantoms(24, str(root), seed=5)
    table, rejects = read_pairs(str(root))
    assert table.num_rows == 24 and rejects.num_rows == 0
    schema = table.select(["id", "image_path", "findings", "labels"]).schema
    extra = pa.Table.from_pylist([{**r, "image_path": None, "labels": None} for r in HANDWRITTEN], schema)
    return pa.concat_tables([table.select(schema.names), extra])


@pytest.fixture(scope="module")
def anchored(pairs, tree, matcher):
    return anchor_pairs(pairs, tree, RetrieveConfig(), matcher=matcher)


def anchors_of(result, pair_id: str) -> dict[str, dict]:
    return {r["node_id"]: r for r in result.anchors.to_pylist() if r["id"] == pair_id}


def test_phantom_findings_anchor_and_negated_classes_do_not(anchored, pairs):
    checked = 0
    for row in pairs.to_pylist():
        if row["labels"] is None:
            continue
        labels = json.loads(row["labels"])
        nodes = anchors_of(anchored, row["id"])
        for finding in labels["findings"]:
            node = nodes[f"MEDRAY:finding/{finding['name']}"]
            assert node["via"] == "lexical" and node["score"] == 1.0
            assert node["assertion"] == finding["certainty"]
            checked += 1
        for name in labels["negated"]:
            assert f"MEDRAY:finding/{name}" not in nodes
    assert checked >= 24  # every labelled finding of every phantom was found


def test_negation_and_uncertainty_policy(pairs, tree, matcher, anchored):
    assert set(anchors_of(anchored, "h1")) == {PE}  # "No pneumothorax" never anchors
    assert anchors_of(anchored, "h2")[PTX]["assertion"] == "uncertain"
    assert set(anchors_of(anchored, "h3")) == {LOCULATED}  # the longest surface wins
    drop = RetrieveConfig(uncertain="drop")
    drop.embedding.enabled = False
    strict = anchor_pairs(pairs, tree, drop, matcher=matcher)
    assert PTX not in anchors_of(strict, "h2")
    reasons = {r["id"]: r for r in strict.unanchored.to_pylist()}
    assert reasons["h7"]["reason"] == "no_present_mention"
    assert f"absent:{PE}" in reasons["h7"]["detail"] and f"absent:{PTX}" in reasons["h7"]["detail"]


def test_embedding_fallback_and_unanchored_reasons(anchored):
    h4 = anchors_of(anchored, "h4")
    assert h4[ATEL]["via"] == "embedding" and h4[ATEL]["score"] >= RetrieveConfig().embedding.threshold
    assert h4[ATEL]["surface"] in ("lung collapse", "collapse of the lung")
    assert all(a["via"] == "lexical" for a in anchors_of(anchored, "h1").values())  # lexical hit: no fallback
    reasons = {r["id"]: r["reason"] for r in anchored.unanchored.to_pylist()}
    assert reasons["h5"] == "no_match" and reasons["h6"] == "no_text" and reasons["h7"] == "no_present_mention"
    counts = anchored.counts()
    assert counts["in"] == 31 == counts["anchored"] + counts["unanchored"]  # nothing silently lost
    assert counts["pairs_via"]["embedding"] >= 1


def test_counts_include_descendants(anchored, tree):
    counts = {r["node_id"]: r for r in node_counts(anchored.anchors, tree).to_pylist()}
    direct_pe = {r["id"] for r in anchored.anchors.to_pylist() if r["node_id"] == PE}
    assert counts[PE]["direct"] == len(direct_pe)
    assert counts[PE]["total"] == len(direct_pe | {"h3"})  # the loculated child counts under its parent
    assert counts[LOCULATED] == {**counts[LOCULATED], "direct": 1, "total": 1}
    group = tree.parent(PE)
    assert counts[group]["direct"] == 0 and counts[group]["total"] >= counts[PE]["total"]


def test_node_pool_and_pools_under(anchored, tree, pairs):
    everything = node_pool(anchored.anchors, tree, "Pleural effusion")
    assert "h3" in everything.column("id").to_pylist()
    assert "h3" not in node_pool(anchored.anchors, tree, PE, include_descendants=False).column("id").to_pylist()
    small = node_pool(anchored.anchors, tree, "Pleural effusion", n=3, seed=1)
    assert small.num_rows == 3 and small.equals(node_pool(anchored.anchors, tree, "Pleural effusion", n=3, seed=1))
    assert set(small.column("id").to_pylist()) <= set(node_pool(anchored.anchors, tree, PE, n=5, seed=1).column("id").to_pylist())
    other = {tuple(node_pool(anchored.anchors, tree, PE, n=3, seed=s).column("id").to_pylist()) for s in range(6)}
    assert len(other) > 1  # the seed changes the sample
    pools = pools_under(anchored.anchors, tree, "Chest radiograph finding", n_per_node=2, pairs=pairs)
    per_node = {}
    for row in pools.to_pylist():
        per_node.setdefault(row["pool_node_id"], []).append(row)
    assert all(len(rows) <= 2 for rows in per_node.values())
    assert {PE, LOCULATED, ATEL} <= set(per_node)
    assert per_node[LOCULATED][0]["id"] == "h3" and per_node[LOCULATED][0]["findings"].startswith("Loculated")
    with_ids = attach_node_ids(pairs, anchored.anchors)
    assert dict(zip(with_ids["id"].to_pylist(), with_ids["node_ids"].to_pylist()))["h1"] == [PE]
    with pytest.raises(MedrayError, match="no node matches"):
        node_pool(anchored.anchors, tree, "Not a finding at all")


def test_config_errors_name_the_key(pairs, tree, matcher):
    with pytest.raises(ConfigError, match="retrieve.text_columns"):
        anchor_pairs(pairs, tree, RetrieveConfig(text_columns=["caption"]), matcher=matcher)
    with pytest.raises(ConfigError, match="retrieve.uncertain"):
        anchor_pairs(pairs, tree, RetrieveConfig(uncertain="maybe"), matcher=matcher)


def test_ray_actor_pool_gives_identical_anchors(ray_local, pairs, tree, matcher, anchored):
    cfg = RetrieveConfig(actors=1, batch_size=6)
    subset = pairs.slice(pairs.num_rows - 13)  # phantoms and every hand-written case, in three batches
    in_process = anchor_pairs(subset, tree, cfg, matcher=matcher)
    on_ray = anchor_pairs_ray(subset, tree, cfg, matcher=matcher)
    assert on_ray.anchors.num_rows > 10 and "embedding" in on_ray.anchors.column("via").to_pylist()
    assert on_ray.anchors.equals(in_process.anchors)
    assert on_ray.unanchored.equals(in_process.unanchored)
    assert on_ray.counts() == in_process.counts()
