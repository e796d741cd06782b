"""The knowledge graph and its relation sources, on a real tree (radiology lexicon + DICOM)."""

from __future__ import annotations

import pytest

from medray.errors import ConfigError, SourceError
from medray.met.build import build_tree
from medray.met.tree import Node, Tree
from medray.synth.graph import GraphConfig, KnowledgeGraph, build_graph
from medray.synth.relations import (
    INVERSE,
    Edge,
    disease_symptom_tsv,
    hpo_annotations,
    radiology_relations,
    resolve_entity,
)

PE, PTX, CM = "MEDRAY:finding/pleural_effusion", "MEDRAY:finding/pneumothorax", "MEDRAY:finding/cardiomegaly"
PLEURA, HEART, CHEST = "MEDRAY:anatomy/pleura", "SCT:80891009", "SCT:816094009"


@pytest.fixture(scope="module")
def tree() -> Tree:
    return build_tree([("radiology_lexicon", {}), ("dicom", {})])[0]


@pytest.fixture(scope="module")
def tree_with_diseases(tree: Tree) -> Tree:
    """The same tree plus two diseases and a symptom carrying DO / SYMP codes, as the ontologies give them."""
    extra = [
        Node("D:hf", "MET:disease", "disease", 2, "Heart failure", ["cardiac failure"], ["DOID:6000"], ["test"]),
        Node("D:tb", "MET:disease", "disease", 2, "Tuberculosis", [], ["DOID:399", "OMIM:607948"], ["test"]),
        Node("S:cough", "MET:symptom", "symptom", 2, "Cough", [], ["SYMP:0000614"], ["test"]),
    ]
    return Tree.from_nodes([*tree.nodes(), *extra])


def test_hierarchy_edges_both_ways_without_the_axis_nodes(tree):
    graph = KnowledgeGraph(tree)
    assert graph.relations_between(PE, "MEDRAY:finding/chest_radiograph") == ["is_a"]
    assert graph.relations_between("MEDRAY:finding/chest_radiograph", PE) == ["has_subtype"]
    assert not any(n.startswith("MET:") for n in graph.edges_table().column("head").to_pylist())
    assert "MET:anatomy" not in graph and "MET:root" not in graph
    # one is_a per node whose parent is below an axis node
    below_axes = sum(1 for n in tree.nodes() if n.parent_id and not n.parent_id.startswith("MET:"))
    assert graph.summary()["per_relation"] == {"is_a": below_axes}


def test_radiology_relations_resolve_by_name_synonym_and_code(tree):
    load = radiology_relations(tree)
    edges = {(e.head, e.relation, e.tail) for e in load.edges}
    assert (PE, "located_in", PLEURA) in edges
    assert (CM, "located_in", HEART) in edges
    assert (PTX, "located_in", PLEURA) in edges  # "Pleural space" is a synonym of Pleura
    assert ("DCM:CR", "examines", CHEST) in edges and ("DCM:MG", "examines", "SCT:76752008") in edges
    # this tree has no diseases: every disease row is counted as unresolved, none dropped silently
    assert load.rows == len(load.edges) + load.unresolved
    assert any(x.startswith("Heart failure -presents_with-> Cardiomegaly") for x in load.unresolved_examples)
    assert {e.source for e in load.edges} == {"medray_radiology"}


def test_diseases_in_the_tree_receive_radiology_relations(tree_with_diseases):
    edges = {(e.head, e.relation, e.tail) for e in radiology_relations(tree_with_diseases).edges}
    assert ("D:hf", "presents_with", CM) in edges and ("D:hf", "located_in", HEART) in edges
    assert ("D:tb", "presents_with", PE) in edges


def test_resolve_prefers_axis_and_primary_name(tree_with_diseases):
    assert resolve_entity(tree_with_diseases, "DOID:6000", "disease") == "D:hf"
    assert resolve_entity(tree_with_diseases, "cardiac failure", "disease") == "D:hf"
    assert resolve_entity(tree_with_diseases, "Heart", "anatomy") == HEART
    assert resolve_entity(tree_with_diseases, "Heart", "modality") is None
    assert resolve_entity(tree_with_diseases, "no such thing") is None


def test_disease_symptom_tsv_counts_unresolved_rows(tree_with_diseases, tmp_path):
    path = tmp_path / "disease-symptom.tsv"
    path.write_text("disease_id\tdisease_label\tsymptom_id\tsymptom_label\n"
                    "DOID:6000\theart failure\tSYMP:0000614\tcough\n"        # by codes
                    "DOID:999999\tTuberculosis\tSYMP:9\tpleural effusion\n"  # by names
                    "DOID:1\tunknown disease\tSYMP:0000614\tcough\n")         # unresolved
    load = disease_symptom_tsv(tree_with_diseases, str(path))
    assert [(e.head, e.relation, e.tail) for e in load.edges] == [("D:hf", "presents_with", "S:cough"), ("D:tb", "presents_with", PE)]
    assert (load.rows, load.unresolved) == (3, 1)
    assert load.unresolved_examples == ["DOID:1 (unknown disease) -> SYMP:0000614 (cough)"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tc\td\n")
    with pytest.raises(SourceError, match="disease_id"):
        disease_symptom_tsv(tree_with_diseases, str(bad))


def test_real_disease_symptom_file(shared_data):
    ontology = shared_data / "ontology"
    tree, _ = build_tree([("disease_ontology", {"path": str(ontology / "HumanDO.tsv")}),
                          ("symptom_ontology", {"path": str(ontology / "symp.obo")})])
    load = disease_symptom_tsv(tree, str(ontology / "disease-symptom.tsv"))
    assert load.rows == 2222
    assert len(load.edges) + load.unresolved == load.rows and load.unresolved < 20
    assert all(tree.node(e.head).axis == "disease" and tree.node(e.tail).axis == "symptom" for e in load.edges)
    graph, report = build_graph(tree, GraphConfig(radiology=False, disease_symptom=str(ontology / "disease-symptom.tsv")))
    assert report["per_relation"]["presents_with"] == len({(e.head, e.tail) for e in load.edges})
    assert report["sources"][0]["unresolved"] == load.unresolved


def test_hpo_annotations_keep_phenotypes_only(tree_with_diseases, tmp_path):
    path = tmp_path / "phenotype.hpoa"
    header = "database_id\tdisease_name\tqualifier\thpo_id\treference\tevidence\tonset\tfrequency\tsex\tmodifier\taspect\tbiocuration"
    rows = ["OMIM:607948\tTuberculosis, susceptibility to\t\tHP:0002202\tPMID:1\tPCS\t\t\t\t\tP\tx",   # by code
            "ORPHA:1\tHeart failure\t\tHP:0001640\tPMID:1\tPCS\t\t\t\t\tP\tx",                          # by name
            "ORPHA:1\tHeart failure\tNOT\tHP:0002107\tPMID:1\tPCS\t\t\t\t\tP\tx",                       # negated
            "ORPHA:1\tHeart failure\t\tHP:0003581\tPMID:1\tPCS\t\t\t\t\tC\tx",                          # onset, not a phenotype
            "OMIM:2\tRare syndrome\t\tHP:0002202\tPMID:1\tPCS\t\t\t\t\tP\tx"]                           # unresolved
    path.write_text("#description: test\n" + header + "\n" + "\n".join(rows) + "\n")
    load = hpo_annotations(tree_with_diseases, str(path))
    assert [(e.head, e.tail) for e in load.edges] == [("D:tb", PE), ("D:hf", CM)]
    assert (load.rows, load.unresolved) == (3, 1)


def test_build_graph_report_and_determinism(tree):
    graph, report = build_graph(tree)
    assert report["edges"] == graph.num_edges == sum(report["per_source"].values())
    assert report["per_relation"]["located_in"] >= 10 and report["per_relation"]["examines"] >= 40
    assert report["sources"][0]["source"] == "medray_radiology"
    edges = radiology_relations(tree).edges
    again = KnowledgeGraph(tree, list(reversed(edges)))
    assert again.edges_table().equals(graph.edges_table())
    assert [s for s in again.neighbours(HEART)] == graph.neighbours(HEART)
    for step in graph.neighbours(PLEURA):  # every stored step has its inverse at the other end
        assert INVERSE[step.relation] in graph.relations_between(step.node_id, PLEURA)


def test_edges_off_the_tree_or_self_loops_are_ignored(tree):
    graph = KnowledgeGraph(tree, [Edge(PE, "located_in", "nowhere", "t"), Edge(PE, "located_in", PE, "t"),
                                  Edge(CM, "located_in", HEART, "t")], hierarchy=False)
    assert graph.num_edges == 1 and len(graph) == 2


def test_graph_config_errors_name_the_key(tree, tmp_path):
    with pytest.raises(ConfigError, match="graph.disease_symptom"):
        build_graph(tree, GraphConfig(disease_symptom=str(tmp_path / "missing.tsv")))
    with pytest.raises(ConfigError, match="'graph'"):
        GraphConfig(hierarchy=False, radiology=False).check()
