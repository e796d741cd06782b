"""The Medical Entity Tree: one Arrow node table plus the indexes to walk it.

The table is the contract (saved as parquet, read by every later stage); the
Python indexes (children, codes, names) are built lazily because most
consumers (the matcher, the tagger) only need columns.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import pyarrow as pa
import pyarrow.parquet as pq

from medray.errors import MedrayError
from medray.met.normalize import normalize_term

AXES = ("disease", "anatomy", "modality", "symptom")
ROOT_ID = "MET:root"

SCHEMA = pa.schema(
    [
        ("node_id", pa.string()),
        ("parent_id", pa.string()),
        ("axis", pa.string()),
        ("level", pa.int16()),
        ("name", pa.string()),
        ("synonyms", pa.list_(pa.string())),
        ("codes", pa.list_(pa.string())),
        ("sources", pa.list_(pa.string())),
        ("absent_forms", pa.list_(pa.string())),
        ("provenance", pa.string()),
    ]
)


def axis_node_id(axis: str) -> str:
    check_axis(axis)
    return f"MET:{axis}"


def check_axis(axis: str) -> str:
    if axis not in AXES:
        raise MedrayError(f"unknown axis {axis!r}: expected one of {', '.join(AXES)}")
    return axis


@dataclass
class Node:
    """One entity. `provenance` is JSON text for grown nodes, empty for source nodes."""

    node_id: str
    parent_id: str | None
    axis: str | None
    level: int
    name: str
    synonyms: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # Phrases that state the entity is absent ("heart size normal" -> cardiomegaly).
    absent_forms: list[str] = field(default_factory=list)
    provenance: str = ""

    def as_row(self) -> dict:
        return {k: getattr(self, k) for k in SCHEMA.names}


class Tree:
    """An immutable view over the node table with traversal and lookup."""

    def __init__(self, table: pa.Table):
        missing = [n for n in SCHEMA.names if n not in table.column_names]
        if missing:
            raise MedrayError(f"node table lacks columns: {', '.join(missing)}")
        self.table = table.select(SCHEMA.names).cast(SCHEMA)

    # ---- construction and persistence ------------------------------------
    @classmethod
    def from_nodes(cls, nodes: Iterable[Node]) -> Tree:
        rows = [n.as_row() for n in nodes]
        return cls(pa.Table.from_pylist(rows, schema=SCHEMA))

    @classmethod
    def load(cls, path: str) -> Tree:
        from medray.storage import open_input_file

        with open_input_file(path) as fh:
            return cls(pq.read_table(fh))

    def save(self, path: str) -> None:
        """Write the node table as parquet and a JSON summary beside it."""
        from medray.storage import atomic_write_bytes, strip_suffix, write_parquet

        path = str(path)
        write_parquet(self.table, path)
        atomic_write_bytes(strip_suffix(path) + ".summary.json", json.dumps(self.summary(), indent=2).encode())

    # ---- indexes -----------------------------------------------------------
    @cached_property
    def _cols(self) -> dict[str, list]:
        return {name: self.table.column(name).to_pylist() for name in SCHEMA.names}

    @cached_property
    def _row(self) -> dict[str, int]:
        return {nid: i for i, nid in enumerate(self._cols["node_id"])}

    @cached_property
    def _children(self) -> dict[str, list[str]]:
        kids: dict[str, list[str]] = {}
        for nid, parent in zip(self._cols["node_id"], self._cols["parent_id"]):
            if parent is not None:
                kids.setdefault(parent, []).append(nid)
        return kids

    @cached_property
    def _by_code(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for nid, codes in zip(self._cols["node_id"], self._cols["codes"]):
            for code in codes or ():
                out.setdefault(code.upper(), nid)
        return out

    @cached_property
    def _by_name(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for nid, name, syns in zip(self._cols["node_id"], self._cols["name"], self._cols["synonyms"]):
            for term in [name, *(syns or ())]:
                key = normalize_term(term)
                if key:
                    ids = out.setdefault(key, [])
                    if nid not in ids:
                        ids.append(nid)
        return out

    # ---- access -------------------------------------------------------------
    def __len__(self) -> int:
        return self.table.num_rows

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._row

    def node(self, node_id: str) -> Node:
        try:
            i = self._row[node_id]
        except KeyError:
            raise MedrayError(f"no node with id {node_id!r}") from None
        return Node(**{k: self._cols[k][i] for k in SCHEMA.names})

    def nodes(self) -> Iterator[Node]:
        for nid in self._cols["node_id"]:
            yield self.node(nid)

    def children(self, node_id: str) -> list[str]:
        return list(self._children.get(node_id, ()))

    def parent(self, node_id: str) -> str | None:
        return self.node(node_id).parent_id

    def ancestors(self, node_id: str) -> list[str]:
        """Parents up to the root, nearest first."""
        out, cur = [], self.node(node_id).parent_id
        while cur is not None:
            out.append(cur)
            cur = self._cols["parent_id"][self._row[cur]]
        return out

    def siblings(self, node_id: str) -> list[str]:
        parent = self.parent(node_id)
        if parent is None:
            return []
        return [c for c in self._children.get(parent, ()) if c != node_id]

    def subtree(self, node_id: str) -> list[str]:
        """The node and all its descendants, depth first in child order."""
        self.node(node_id)
        out, stack = [], [node_id]
        while stack:
            nid = stack.pop()
            out.append(nid)
            stack.extend(reversed(self._children.get(nid, ())))
        return out

    def by_code(self, code: str) -> str | None:
        return self._by_code.get(code.strip().upper())

    def by_name(self, name: str) -> list[str]:
        """Nodes whose name or a synonym normalises to `name`."""
        return list(self._by_name.get(normalize_term(name), ()))

    def resolve(self, ref: str) -> str:
        """A node id, a code or a name -> node id; errors name the reference."""
        if ref in self._row:
            return ref
        hit = self.by_code(ref)
        if hit:
            return hit
        named = self.by_name(ref)
        if named:
            return named[0]
        raise MedrayError(f"no node matches {ref!r} (tried node id, code and name)")

    # ---- statistics ---------------------------------------------------------
    def summary(self) -> dict:
        axes = self._cols["axis"]
        levels = self._cols["level"]
        per_axis = Counter(a for a in axes if a)
        per_axis_level: dict[str, dict[str, int]] = {}
        for a, lvl in zip(axes, levels):
            if a:
                per_axis_level.setdefault(a, Counter())[str(lvl)] += 1
        sources = Counter(s for srcs in self._cols["sources"] for s in (srcs or ()))
        return {
            "nodes": len(self),
            "synonyms": sum(len(s or ()) for s in self._cols["synonyms"]),
            "codes": sum(len(c or ()) for c in self._cols["codes"]),
            "max_level": max(levels) if levels else 0,
            "per_axis": {a: per_axis.get(a, 0) for a in AXES},
            "per_axis_level": {a: dict(sorted(per_axis_level.get(a, {}).items(), key=lambda kv: int(kv[0]))) for a in AXES},
            "per_source": dict(sorted(sources.items())),
            "grown": sum(1 for p in self._cols["provenance"] if p),
        }
