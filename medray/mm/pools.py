"""Per-node pools over retrieval anchors: counts, and deterministic samples of pairs per node.

Counts come two ways because users ask both: `direct` (pairs anchored to the node itself) and
`total` (pairs anchored to it or any descendant: "under Pleural effusion" includes its children).
A pair counts once per node however many of its anchors fall under it.

Samples rank pairs by a hash of (seed, pair id), so a pool is the same whatever the table order,
and a larger `n` returns a superset of a smaller one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc

from medray.met.tree import Tree

COUNT_SCHEMA = pa.schema([("node_id", pa.string()), ("name", pa.string()), ("axis", pa.string()),
                          ("level", pa.int16()), ("direct", pa.int64()), ("total", pa.int64())])
_VIA_RANK = {"lexical": 0, "embedding": 1}


def node_counts(anchors: pa.Table, tree: Tree) -> pa.Table:
    """One row per node with a pair at or under it: direct and total distinct pairs, most first."""
    direct: dict[str, set] = defaultdict(set)
    total: dict[str, set] = defaultdict(set)
    lineage: dict[str, list[str]] = {}
    for pair_id, nid in zip(anchors.column("id").to_pylist(), anchors.column("node_id").to_pylist()):
        if nid not in tree:
            continue
        direct[nid].add(pair_id)
        if nid not in lineage:
            lineage[nid] = [nid, *tree.ancestors(nid)]
        for up in lineage[nid]:
            total[up].add(pair_id)
    rows = []
    for nid, pairs in total.items():
        node = tree.node(nid)
        rows.append({"node_id": nid, "name": node.name, "axis": node.axis, "level": node.level,
                     "direct": len(direct.get(nid, ())), "total": len(pairs)})
    rows.sort(key=lambda r: (-r["total"], -r["direct"], r["node_id"]))
    return pa.Table.from_pylist(rows, COUNT_SCHEMA)


def _rank(seed: int, pair_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{pair_id}".encode(), digest_size=8).digest()


def _pool_rows(anchors: pa.Table, nodes: set[str]) -> dict[str, dict]:
    """Pair id -> its best anchor among `nodes` (lexical before embedding, then score, then node id)."""
    chosen = anchors.filter(pc.is_in(anchors.column("node_id"), pa.array(sorted(nodes), pa.string())))
    best: dict[str, dict] = {}
    for row in chosen.to_pylist():
        key = (_VIA_RANK.get(row["via"], 9), -(row["score"] or 0.0), row["node_id"])
        prev = best.get(row["id"])
        if prev is None or key < prev[0]:
            best[row["id"]] = (key, row)
    return {pair_id: row for pair_id, (_, row) in best.items()}


def _with_pairs(table: pa.Table, pairs: pa.Table | None, id_column: str) -> pa.Table:
    if pairs is None or not table.num_rows:
        return table
    extra = [c for c in pairs.column_names if c != id_column and c not in table.column_names]
    joined = table.join(pairs.select([id_column, *extra]), keys="id", right_keys=id_column, join_type="left outer")
    return joined.sort_by([(c, "ascending") for c in ("pool_node_id", "id") if c in joined.column_names])


def node_pool(anchors: pa.Table, tree: Tree, ref: str, n: int | None = None, include_descendants: bool = True,
              seed: int = 0, pairs: pa.Table | None = None, id_column: str = "id") -> pa.Table:
    """Up to `n` pairs anchored to `ref` (a node id, code or name), and to its descendants by default.

    Columns: id, node_id (the anchor that brought the pair in), via, score, assertion, plus the
    columns of `pairs` when given. Rows are sorted by id; which rows depends only on `seed`.
    """
    root = tree.resolve(ref)
    nodes = set(tree.subtree(root)) if include_descendants else {root}
    rows = _pool_rows(anchors, nodes)
    picked = sorted(rows, key=lambda pair_id: _rank(seed, pair_id))
    if n is not None:
        picked = picked[: max(0, n)]
    keep = ("id", "node_id", "via", "score", "assertion")
    out = pa.Table.from_pylist([{k: rows[p][k] for k in keep} for p in sorted(picked)],
                               pa.schema([anchors.schema.field(k) for k in keep])) if picked else anchors.select(list(keep)).slice(0, 0)
    return _with_pairs(out, pairs, id_column)


def pools_under(anchors: pa.Table, tree: Tree, ref: str, n_per_node: int, seed: int = 0,
                include_descendants: bool = False, pairs: pa.Table | None = None, id_column: str = "id") -> pa.Table:
    """Up to `n_per_node` pairs for `ref` and for each node under it that has any, in tree order.

    Each pool is `node_pool` of that node (its own anchors unless `include_descendants`), tagged
    with `pool_node_id` and `pool_name`; a pair in two pools appears in both.
    """
    root = tree.resolve(ref)
    parts = []
    for nid in tree.subtree(root):
        pool = node_pool(anchors, tree, nid, n=n_per_node, include_descendants=include_descendants, seed=seed)
        if pool.num_rows:
            name = tree.node(nid).name
            parts.append(pool.add_column(0, "pool_node_id", pa.array([nid] * pool.num_rows, pa.string()))
                         .add_column(1, "pool_name", pa.array([name] * pool.num_rows, pa.string())))
    if not parts:
        empty = node_pool(anchors.slice(0, 0), tree, root)
        out = empty.add_column(0, "pool_node_id", pa.array([], pa.string())).add_column(1, "pool_name", pa.array([], pa.string()))
    else:
        out = pa.concat_tables(parts)
    if pairs is None or not out.num_rows:
        return out
    extra = [c for c in pairs.column_names if c != id_column and c not in out.column_names]
    joined = out.append_column("_order", pa.array(range(out.num_rows), pa.int64())).join(
        pairs.select([id_column, *extra]), keys="id", right_keys=id_column, join_type="left outer")
    return joined.sort_by("_order").drop(["_order"])


def attach_node_ids(pairs: pa.Table, anchors: pa.Table, id_column: str = "id") -> pa.Table:
    """`pairs` plus `node_ids` (list<string>): each pair's anchored nodes, sorted; [] for none."""
    by_pair: dict[str, list[str]] = defaultdict(list)
    for pair_id, nid in zip(anchors.column("id").to_pylist(), anchors.column("node_id").to_pylist()):
        by_pair[pair_id].append(nid)
    values = [sorted(set(by_pair.get(str(p), ()))) for p in pairs.column(id_column).to_pylist()]
    table = pairs.drop(["node_ids"]) if "node_ids" in pairs.column_names else pairs
    return table.append_column("node_ids", pa.array(values, pa.list_(pa.string())))
