"""Build the tree: a root and four axes, then each configured source, merged.

Sources are applied in order; the first source to name a concept owns its
node id (ICD-10-CM for diseases, HPO for findings, DICOM for anatomy and
modality). A later source's concept folds into an existing node of the same
axis when a code or cross-reference matches (DOID -> ICD10CM, UMLS, SNOMED)
or, failing that, when its name normalises to exactly one existing node's
name or synonym. Every merge is counted by source pair and reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from medray.met.normalize import normalize_term
from medray.met.sources import SOURCES, SourceNode
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id

log = logging.getLogger(__name__)

AXIS_NAMES = {
    "disease": "Disease",
    "anatomy": "Anatomy",
    "modality": "Imaging modality",
    "symptom": "Symptom and finding",
}


@dataclass
class BuildReport:
    added: Counter = field(default_factory=Counter)  # source -> new nodes
    merged: Counter = field(default_factory=Counter)  # "src->owner_src (reason)" -> count
    ambiguous_names: Counter = field(default_factory=Counter)  # source -> names matching > 1 node
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        merged_by_source: Counter = Counter()
        for key, n in self.merged.items():
            merged_by_source[key.split("->")[0]] += n
        return {
            "added": dict(self.added),
            "merged": dict(sorted(self.merged.items())),
            "merged_total": sum(self.merged.values()),
            "merged_by_source": dict(merged_by_source),
            "ambiguous_names_not_merged": dict(self.ambiguous_names),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


class TreeBuilder:
    """Accumulates source nodes into one tree with merged concepts."""

    def __init__(self, merge_by_name: bool = True):
        self.merge_by_name = merge_by_name
        self.nodes: dict[str, Node] = {}
        self._owner: dict[str, str] = {}  # node id -> the source that created it
        self._codes: dict[tuple[str, str], str] = {}  # (axis, CODE) -> node id
        self._names: dict[tuple[str, str], list[str]] = {}  # (axis, normalised term) -> node ids
        self._keys: dict[tuple[str, str], str] = {}  # (source, key) -> node id
        self.report = BuildReport()
        self._add(Node(ROOT_ID, None, None, 0, "Medical Entity Tree", sources=["medray"]), "medray")
        for axis in AXES:
            self._add(Node(axis_node_id(axis), ROOT_ID, axis, 1, AXIS_NAMES[axis], sources=["medray"]), "medray")

    # ---- indexes -------------------------------------------------------------
    def _index_terms(self, node: Node, terms: Iterable[str]) -> None:
        for term in terms:
            key = normalize_term(term)
            if key:
                ids = self._names.setdefault((node.axis or "", key), [])
                if node.node_id not in ids:
                    ids.append(node.node_id)

    def _index_codes(self, node: Node, codes: Iterable[str]) -> None:
        for code in codes:
            self._codes.setdefault((node.axis or "", code.upper()), node.node_id)

    def _add(self, node: Node, source: str) -> None:
        self.nodes[node.node_id] = node
        self._owner[node.node_id] = source
        self._index_codes(node, node.codes)
        self._index_terms(node, [node.name, *node.synonyms])

    # ---- merging -------------------------------------------------------------
    def _find_existing(self, sn: SourceNode, source: str) -> tuple[str | None, str]:
        for code in [*sn.codes, *sn.xrefs]:
            hit = self._codes.get((sn.axis, code.upper()))
            if hit is not None and self._owner[hit] != source:
                return hit, "code"
        if self.merge_by_name and not sn.key.startswith("MEDRAY:"):
            ids = [i for i in self._names.get((sn.axis, normalize_term(sn.name)), ()) if self._owner[i] != source]
            ids = [i for i in ids if not i.startswith("MET:")]
            if len(ids) == 1:
                return ids[0], "name"
            if len(ids) > 1:
                self.report.ambiguous_names[source] += 1
        return None, ""

    def _merge_into(self, target: Node, sn: SourceNode) -> None:
        known = {normalize_term(t) for t in (target.name, *target.synonyms)}
        extra_terms = []
        for term in (sn.name, *sn.synonyms):
            key = normalize_term(term)
            if key and key not in known:
                known.add(key)
                extra_terms.append(term)
        target.synonyms.extend(extra_terms)
        new_codes = [c for c in (*sn.codes, *sn.xrefs) if c not in target.codes]
        target.codes.extend(new_codes)
        target.absent_forms.extend(f for f in sn.absent_forms if f not in target.absent_forms)
        if sn.source not in target.sources:
            target.sources.append(sn.source)
        self._index_codes(target, new_codes)
        self._index_terms(target, extra_terms)

    def add(self, sn: SourceNode, source: str) -> str:
        """Add or merge one node of the source registered as `source`; returns its node id."""
        existing, reason = self._find_existing(sn, source)
        if existing is not None:
            self._merge_into(self.nodes[existing], sn)
            self._keys[(source, sn.key)] = existing
            self.report.merged[f"{source}->{self._owner[existing]} ({reason})"] += 1
            return existing
        if sn.parent is None:
            parent_id = axis_node_id(sn.axis)
        else:
            parent_id = self._keys.get((source, sn.parent))
            if parent_id is None:
                raise ValueError(f"source {source}: {sn.key} names parent {sn.parent} before yielding it")
        parent = self.nodes[parent_id]
        node_id = sn.key if sn.key not in self.nodes else f"{sn.key}@{sn.axis}"
        if node_id in self.nodes:
            raise ValueError(f"source {source}: duplicate key {sn.key}")
        codes = list(dict.fromkeys([*sn.codes, *sn.xrefs]))
        seen = {normalize_term(sn.name)}
        synonyms = []
        for term in sn.synonyms:
            key = normalize_term(term)
            if key and key not in seen:
                seen.add(key)
                synonyms.append(term)
        node = Node(node_id, parent_id, sn.axis, parent.level + 1, sn.name, synonyms, codes, [sn.source],
                    list(sn.absent_forms))
        self._add(node, source)
        self._keys[(source, sn.key)] = node_id
        self.report.added[source] += 1
        return node_id

    def add_source(self, name: str, nodes: Iterable[SourceNode]) -> None:
        start = time.perf_counter()
        for sn in nodes:
            self.add(sn, name)
        self.report.seconds[name] = time.perf_counter() - start
        log.info("source %s: %d added", name, self.report.added[name])

    def tree(self) -> Tree:
        return Tree.from_nodes(self.nodes.values())


def build_tree(sources: list[tuple[str, dict]], merge_by_name: bool = True, progress=None) -> tuple[Tree, dict]:
    """Build from `[(source name, options), ...]` in order; returns the tree and a report."""
    builder = TreeBuilder(merge_by_name=merge_by_name)
    for name, options in sources:
        if name not in SOURCES:
            from medray.errors import MedrayError

            raise MedrayError(f"unknown source {name!r}: known sources are {', '.join(sorted(SOURCES))}")
        if progress:
            progress(name)
        builder.add_source(name, SOURCES[name](**options))
    tree = builder.tree()
    return tree, builder.report.as_dict()
