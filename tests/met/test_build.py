"""The built tree (session fixture, tests/met/conftest.py) and Tree traversal on a tiny one."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from medray.errors import MedrayError, SourceError
from medray.met.build import build_tree
from medray.met.sources.base import SourceNode
from medray.met.tree import AXES, ROOT_ID, SCHEMA, Tree, axis_node_id, check_axis

# ---- the full tree ----------------------------------------------------------------------


def test_size_and_axes(met_tree):
    summary = met_tree.summary()
    assert summary["nodes"] == len(met_tree) > 100_000
    assert met_tree.table.schema.equals(SCHEMA)
    for axis in AXES:
        assert summary["per_axis"][axis] > 10, axis
    assert summary["per_axis"]["disease"] > 98_000
    assert summary["per_axis"]["symptom"] > 18_000
    assert summary["per_axis"]["anatomy"] > 100
    assert summary["per_axis"]["modality"] > 20
    assert summary["grown"] == 0


def test_depth_per_axis(met_tree):
    levels = met_tree.summary()["per_axis_level"]
    max_level = {axis: max(int(lvl) for lvl in levels[axis]) for axis in AXES}
    assert max_level["disease"] >= 5  # root 0, axis 1, chapter 2, block 3, category 4, ...
    assert max_level["symptom"] >= 5
    assert max_level["anatomy"] >= 3 and max_level["modality"] >= 3
    for axis in AXES:
        assert levels[axis]["1"] == 1  # the axis node itself


def test_structure_is_a_single_rooted_tree(met_tree):
    cols = met_tree.table.select(["node_id", "parent_id", "axis", "level"]).to_pydict()
    ids = cols["node_id"]
    assert len(set(ids)) == len(ids)
    row = {nid: i for i, nid in enumerate(ids)}
    roots = [nid for nid, parent in zip(ids, cols["parent_id"]) if parent is None]
    assert roots == [ROOT_ID]
    for nid, parent, axis, level in zip(ids, cols["parent_id"], cols["axis"], cols["level"]):
        if parent is None:
            continue
        p = row[parent]  # KeyError = a dangling parent
        assert level == cols["level"][p] + 1, nid
        if parent != ROOT_ID:
            assert axis == cols["axis"][p], nid
    assert [met_tree.node(axis_node_id(a)).parent_id for a in AXES] == [ROOT_ID] * 4


def test_merge_report(met_build, shared_data):
    report = met_build.report
    merged = report["merged"]
    assert merged["radiology_lexicon->hpo (code)"] == 12  # 13 observations, all but support devices
    assert merged["disease_ontology->icd10cm (code)"] > 3_000
    assert merged["symptom_ontology->hpo (code)"] > 10
    assert sum(v for k, v in merged.items() if k.startswith("symptom_ontology->hpo")) > 100
    assert report["merged_total"] == sum(merged.values())
    assert report["added"]["icd10cm"] == len(
        [1 for s in met_build.tree.table.column("sources").to_pylist() if s[0] == "icd10cm"]
    )
    assert report["added"]["radiology_lexicon"] == 2  # the group and "Support devices"
    assert set(report["seconds"]) == {
        "icd10cm",
        "disease_ontology",
        "hpo",
        "symptom_ontology",
        "radiology_lexicon",
        "dicom",
    }


def test_j90_in_its_chapter(met_tree):
    assert met_tree.ancestors("ICD10CM:J90") == [
        "ICD10CM:J90-J94",
        "ICD10CM:CH10",
        "MET:disease",
        ROOT_ID,
    ]
    j90 = met_tree.node("ICD10CM:J90")
    assert j90.axis == "disease" and j90.level == 4
    assert j90.name == "Pleural effusion, not elsewhere classified"
    for term in ("Encysted pleurisy", "Pleural effusion NOS", "Pleural effusion"):
        assert term in j90.synonyms
    assert "ICD10CM:J90" in j90.codes
    assert "ICD10CM:J90" in met_tree.children("ICD10CM:J90-J94")
    assert "ICD10CM:J91" in met_tree.siblings("ICD10CM:J90")
    assert met_tree.by_code("icd10cm:j00-j99") == "ICD10CM:CH10"  # chapter range code, any case


def test_pleural_effusion_merged_across_sources(met_tree):
    assert met_tree.by_name("fluid around lungs") == ["HP:0002202"]
    assert met_tree.by_name("Fluid  around LUNGS!") == ["HP:0002202"]
    assert met_tree.by_code("SCT:60046008") == "HP:0002202"
    assert met_tree.by_code("MEDRAY:finding/pleural_effusion") == "HP:0002202"
    assert "MEDRAY:finding/pleural_effusion" not in met_tree  # folded, no node of its own
    node = met_tree.node("HP:0002202")
    assert node.name == "Pleural effusion"  # HPO label unaltered
    assert node.axis == "symptom"
    assert {
        "HP:0002202",
        "SCT:60046008",
        "UMLS:C0032227",
        "MEDRAY:finding/pleural_effusion",
    } <= set(node.codes)
    assert {"hpo", "radiology_lexicon"} <= set(node.sources)
    assert node.sources[0] == "hpo"
    assert {"effusion", "pleural fluid", "hydrothorax"} <= set(node.synonyms)
    # the lexicon-only observation keeps its own node
    devices = met_tree.node("MEDRAY:finding/support_devices")
    assert "picc" in devices.synonyms
    assert devices.parent_id == "MEDRAY:finding/chest_radiograph"


def test_merges_from_shared_sources(met_tree, shared_data):
    node = met_tree.node("HP:0002202")
    assert "SYMP:0000107" in node.codes and "symptom_ontology" in node.sources
    e889 = met_tree.node("ICD10CM:E88.9")
    assert "DOID:0014667" in e889.codes
    assert e889.sources == ["icd10cm", "disease_ontology"]
    assert "disease of metabolism" in e889.synonyms
    assert met_tree.by_code("DOID:0014667") == "ICD10CM:E88.9"
    assert "DOID:0014667" not in met_tree
    per_source = met_tree.summary()["per_source"]
    assert per_source["disease_ontology"] > 10_000  # added plus merged
    doid_nodes = [
        nid for nid in met_tree.table.column("node_id").to_pylist() if nid.startswith("DOID:")
    ]
    assert len(doid_nodes) > 5_000


def test_anatomy_and_modality(met_tree):
    assert met_tree.by_code("SCT:39607008") is not None  # lung
    lung = met_tree.by_code("SCT:39607008")
    assert met_tree.node(lung).axis == "anatomy"
    ct = met_tree.by_code("DCM:CT")
    assert ct is not None and met_tree.node(ct).axis == "modality"


def test_resolve(met_tree):
    assert met_tree.resolve("HP:0002202") == "HP:0002202"
    assert met_tree.resolve("UMLS:C0032227") == "HP:0002202"
    assert met_tree.resolve("Fluid around lungs") == "HP:0002202"
    with pytest.raises(MedrayError, match="no such thing at all"):
        met_tree.resolve("no such thing at all")


def test_save_load_round_trip(met_tree, tmp_path):
    path = str(tmp_path / "met.parquet")
    met_tree.save(path)
    loaded = Tree.load(path)
    assert loaded.table.equals(met_tree.table)
    summary = json.loads((tmp_path / "met.summary.json").read_text())
    assert summary == met_tree.summary()
    assert loaded.ancestors("ICD10CM:J90") == met_tree.ancestors("ICD10CM:J90")
    assert loaded.by_name("fluid around lungs") == ["HP:0002202"]


def test_save_accepts_a_pathlib_path(tiny_tree, tmp_path):
    tiny_tree.save(tmp_path / "tiny.parquet")
    assert (tmp_path / "tiny.summary.json").is_file()


def test_load_missing_file(tmp_path):
    with pytest.raises(SourceError, match="nope.parquet"):
        Tree.load(str(tmp_path / "nope.parquet"))


# ---- building -----------------------------------------------------------------------------


def test_node_ids_are_stable_across_builds():
    subset = [("radiology_lexicon", {}), ("dicom", {})]
    a, report_a = build_tree(subset)
    b, report_b = build_tree(subset)
    assert a.table.equals(b.table)
    assert report_a["added"] == report_b["added"] and report_a["merged"] == report_b["merged"]
    # with merging: HPO first, the lexicon folds into it by code
    subset = [("hpo", {}), ("radiology_lexicon", {})]
    c, _ = build_tree(subset)
    d, report = build_tree(subset)
    assert c.table.equals(d.table)
    assert report["merged"] == {"radiology_lexicon->hpo (code)": 12}
    assert c.by_code("MEDRAY:finding/pneumothorax") == "HP:0002107"


def test_ids_match_the_full_build(met_tree):
    small, _ = build_tree([("hpo", {}), ("radiology_lexicon", {})])
    ids = small.table.column("node_id").to_pylist()
    assert set(ids) <= set(met_tree.table.column("node_id").to_pylist())


def test_unknown_source_name():
    with pytest.raises(MedrayError, match="'umls'") as info:
        build_tree([("radiology_lexicon", {}), ("umls", {})])
    assert "icd10cm" in str(info.value)  # lists the known ones


def test_unknown_axis():
    with pytest.raises(MedrayError, match="'organ'"):
        check_axis("organ")
    with pytest.raises(MedrayError, match="'organ'"):
        axis_node_id("organ")
    with pytest.raises(MedrayError, match="'organ'"):
        SourceNode(key="X:1", parent=None, axis="organ", name="Liver")
    assert check_axis("anatomy") == "anatomy"


# ---- traversal on a tiny hand-built tree -----------------------------------------------------


def test_tiny_children_siblings_ancestors(tiny_tree):
    assert tiny_tree.children(ROOT_ID) == [axis_node_id(a) for a in AXES]
    assert tiny_tree.children("D:pleura") == ["D:j90", "D:j93"]
    assert tiny_tree.children("D:j90") == []
    assert tiny_tree.children("no such node") == []
    assert tiny_tree.siblings("D:j90") == ["D:j93"]
    assert tiny_tree.siblings("MET:disease") == ["MET:anatomy", "MET:modality", "MET:symptom"]
    assert tiny_tree.siblings(ROOT_ID) == []
    assert tiny_tree.ancestors("D:j93") == ["D:pleura", "D:resp", "MET:disease", ROOT_ID]
    assert tiny_tree.ancestors(ROOT_ID) == []
    assert tiny_tree.parent("D:pleura") == "D:resp"
    with pytest.raises(MedrayError, match="'nope'"):
        tiny_tree.ancestors("nope")


def test_tiny_subtree_is_depth_first_in_child_order(tiny_tree):
    assert tiny_tree.subtree("MET:disease") == [
        "MET:disease",
        "D:resp",
        "D:pleura",
        "D:j90",
        "D:j93",
    ]
    assert tiny_tree.subtree("D:j93") == ["D:j93"]
    full = tiny_tree.subtree(ROOT_ID)
    assert full[:2] == [ROOT_ID, "MET:disease"]
    assert sorted(full) == sorted(tiny_tree.table.column("node_id").to_pylist())
    assert full.index("MET:anatomy") > full.index("D:j93")
    with pytest.raises(MedrayError):
        tiny_tree.subtree("nope")


def test_tiny_lookup_and_resolve(tiny_tree):
    assert tiny_tree.by_code("icd10cm:j90") == "D:j90"
    assert tiny_tree.by_code(" SCT:60046008 ") == "T:pe"
    assert tiny_tree.by_code("SCT:0") is None
    assert tiny_tree.by_name("PLEURAL-EFFUSION") == ["T:pe"]
    assert tiny_tree.by_name("encysted pleurisy") == ["D:j90"]
    assert tiny_tree.by_name("nothing") == []
    assert tiny_tree.resolve("D:j93") == "D:j93"  # by id
    assert tiny_tree.resolve("ICD10CM:J90") == "D:j90"  # by code
    assert tiny_tree.resolve("fluid around lungs") == "T:pe"  # by name
    with pytest.raises(MedrayError, match="'unknown thing'"):
        tiny_tree.resolve("unknown thing")
    assert "D:j90" in tiny_tree and "nope" not in tiny_tree
    with pytest.raises(MedrayError, match="'nope'"):
        tiny_tree.node("nope")


def test_tiny_summary_and_nodes(tiny_tree):
    summary = tiny_tree.summary()
    assert summary["nodes"] == len(tiny_tree) == 14
    assert summary["per_axis"] == {"disease": 5, "anatomy": 2, "modality": 1, "symptom": 5}
    assert summary["per_axis_level"]["disease"] == {"1": 1, "2": 1, "3": 1, "4": 2}
    assert summary["max_level"] == 4
    assert summary["per_source"] == {"medray": 5, "tiny": 9}
    nodes = list(tiny_tree.nodes())
    assert [n.node_id for n in nodes] == tiny_tree.table.column("node_id").to_pylist()
    assert Counter(n.axis for n in nodes)[None] == 1


def test_tree_needs_all_columns(tiny_tree):
    with pytest.raises(MedrayError, match="synonyms"):
        Tree(tiny_tree.table.drop(["synonyms"]))
    # column order does not matter
    reordered = tiny_tree.table.select(list(reversed(SCHEMA.names)))
    assert Tree(reordered).table.equals(tiny_tree.table)


def test_tiny_save_load(tiny_tree, tmp_path):
    tiny_tree.save(str(tmp_path / "tiny.parquet"))
    assert Tree.load(str(tmp_path / "tiny.parquet")).table.equals(tiny_tree.table)
    assert json.loads(Path(tmp_path / "tiny.summary.json").read_text())["nodes"] == 14
    assert isinstance(tiny_tree.table, pa.Table)
