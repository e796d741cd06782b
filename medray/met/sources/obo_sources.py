"""Symptoms and findings from OBO ontologies: HPO and the Symptom Ontology.

HPO is a DAG; the tree keeps one parent per term, the most specific one (the
parent deepest from the root), so a finding sits in its narrowest branch.
HPO ids and labels are kept unaltered, as its licence asks.
"""

from __future__ import annotations

from collections.abc import Iterator

from medray.met.obo import OboOntology, read_obo
from medray.met.sources.base import SourceNode, register_source
from medray.met.sources.ontology_files import normalize_xref, packaged_hpo_obo, require_file

HPO_PHENOTYPIC_ABNORMALITY = "HP:0000118"
SYMP_ROOT = "SYMP:0000462"  # "symptom"


def _depths(onto: OboOntology, root: str) -> dict[str, int]:
    """Longest-path depth below `root` (so every parent is shallower than its child)."""
    kids = onto.children_map()
    under = set(onto.descendants(root))
    pending = {t: sum(1 for p in onto.terms[t].is_a if p in under) for t in under if t != root}
    depth, ready = {root: 0}, [root]
    while ready:
        node = ready.pop()
        for child in kids.get(node, ()):
            if child in pending:
                depth[child] = max(depth.get(child, 0), depth[node] + 1)
                pending[child] -= 1
                if pending[child] == 0:
                    ready.append(child)
    return depth


def _tree_nodes(onto: OboOntology, root: str, source: str, include_root: bool) -> Iterator[SourceNode]:
    depth = _depths(onto, root)
    order = sorted(depth, key=lambda t: (depth[t], onto.terms[t].line if t in onto.terms else 0))
    for term_id in order:
        if term_id == root and not include_root:
            continue
        term = onto.terms.get(term_id)
        if term is None or term.obsolete:
            continue
        parents = [p for p in term.is_a if p in depth and depth[p] < depth[term_id]]
        if term_id == root or not parents:
            parent = None
        else:
            parent = max(parents, key=lambda p: (depth[p], -term.is_a.index(p)))
            if parent == root and not include_root:
                parent = None
        xrefs = [x for x in (normalize_xref(r) for r in term.xrefs) if x]
        yield SourceNode(
            key=term.id,
            parent=parent,
            axis="symptom",
            name=term.name,
            synonyms=[text for text, scope in term.synonyms if scope in ("EXACT", "RELATED")],
            codes=[term.id, *term.alt_ids],
            xrefs=list(dict.fromkeys(xrefs)),
            source=source,
        )


@register_source("hpo")
def hpo_nodes(path: str | None = None, **_options) -> Iterator[SourceNode]:
    """HPO's phenotypic-abnormality subtree (the packaged hp.obo unless `path`)."""
    onto = read_obo(require_file(path, "HPO") if path else packaged_hpo_obo())
    if HPO_PHENOTYPIC_ABNORMALITY not in onto.terms:
        from medray.errors import SourceError

        raise SourceError(onto.path, 0, f"no {HPO_PHENOTYPIC_ABNORMALITY} (Phenotypic abnormality) term")
    yield from _tree_nodes(onto, HPO_PHENOTYPIC_ABNORMALITY, "hpo", include_root=True)


@register_source("symptom_ontology")
def symptom_ontology_nodes(path: str | None = None, **_options) -> Iterator[SourceNode]:
    """The Symptom Ontology (symp.obo) from `path`; its top terms sit under the axis."""
    if not path:
        from medray.errors import SourceError

        raise SourceError("symptom_ontology.path", 0, "the Symptom Ontology needs a path to symp.obo")
    onto = read_obo(require_file(path, "Symptom Ontology"))
    root = SYMP_ROOT if SYMP_ROOT in onto.terms else None
    if root is None:
        from medray.errors import SourceError

        raise SourceError(onto.path, 0, f"no {SYMP_ROOT} (symptom) root term")
    yield from _tree_nodes(onto, root, "symptom_ontology", include_root=False)
