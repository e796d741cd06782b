"""The Human Disease Ontology (HumanDO.tsv + ICD10inDO.tsv) from a path.

DO terms carry ICD-10-CM cross-references, which is how the builder folds a
DO disease into the ICD-10-CM node for the same concept; DO terms with no
ICD equivalent hang under their DO parent.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from medray.errors import SourceError
from medray.met.sources.base import SourceNode, register_source
from medray.met.sources.ontology_files import require_file

DO_ROOT_LABEL = "disease"


def _read_tsv(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quotechar='"')
        header = next(reader, None)
        if header is None or [h.strip() for h in header[: len(columns)]] != list(columns):
            raise SourceError(str(path), 1, f"expected header columns {', '.join(columns)}, got {header}")
        for row in reader:
            lineno = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(columns):
                raise SourceError(str(path), lineno, f"expected {len(columns)} tab-separated fields, got {len(row)}")
            yield lineno, [c.strip() for c in row]


@register_source("disease_ontology")
def disease_ontology_nodes(path: str | None = None, icd_xrefs_path: str | None = None, **_options) -> Iterator[SourceNode]:
    """`path` is HumanDO.tsv; `icd_xrefs_path` (default: ICD10inDO.tsv beside it)."""
    if not path:
        raise SourceError("disease_ontology.path", 0, "the Disease Ontology needs a path to HumanDO.tsv")
    terms_path = require_file(path, "Disease Ontology")
    xref_path = Path(icd_xrefs_path) if icd_xrefs_path else terms_path.with_name("ICD10inDO.tsv")
    xrefs: dict[str, list[str]] = {}
    if icd_xrefs_path or xref_path.is_file():
        for lineno, (doid, _label, refs) in _read_tsv(require_file(xref_path, "DO ICD-10 xref"), ("id", "label", "xrefs")):
            for ref in refs.split("|"):
                if not ref.startswith("ICD10CM:"):
                    raise SourceError(str(xref_path), lineno, f"expected an ICD10CM: cross-reference, got {ref!r}")
                xrefs.setdefault(doid, []).append(ref)

    rows = []
    label_to_id: dict[str, str] = {}
    for lineno, (doid, label, parent_label) in _read_tsv(terms_path, ("id", "label", "subClassOf")):
        if not doid.startswith("DOID:") or not label:
            raise SourceError(str(terms_path), lineno, f"malformed DO row: id {doid!r}, label {label!r}")
        rows.append((lineno, doid, label, parent_label))
        label_to_id.setdefault(label, doid)

    parent_of = {}
    for lineno, doid, _label, parent_label in rows:
        if parent_label and parent_label != DO_ROOT_LABEL and parent_label not in label_to_id:
            raise SourceError(str(terms_path), lineno, f"parent {parent_label!r} of {doid} is not a DO label")
        parent_of[doid] = None if parent_label in ("", DO_ROOT_LABEL) else label_to_id[parent_label]

    by_id = {doid: (label, lineno) for lineno, doid, label, _ in rows}
    emitted: set[str] = set()

    def emit(doid: str, trail: tuple[str, ...] = ()) -> Iterator[SourceNode]:
        if doid in emitted or doid == label_to_id.get(DO_ROOT_LABEL):
            return
        if doid in trail:
            raise SourceError(str(terms_path), by_id[doid][1], f"cycle in DO parents through {doid}")
        parent = parent_of.get(doid)
        if parent is not None:
            yield from emit(parent, (*trail, doid))
        emitted.add(doid)
        label = by_id[doid][0]
        yield SourceNode(
            key=doid,
            parent=parent,
            axis="disease",
            name=label,
            codes=[doid],
            xrefs=list(dict.fromkeys(xrefs.get(doid, []))),
            source="disease_ontology",
        )

    for _lineno, doid, _label, _parent in rows:
        yield from emit(doid)
