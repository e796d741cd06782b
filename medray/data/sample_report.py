"""Coverage before and after tree-guided sampling, and the back-fill list for synthesis.

Split out of `sample.py` because the report only reads the merged counts
tables (`tree_counts`) at the end of a run; it never touches the plan or
the records.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.data.sample import SampleConfig
from medray.data.tree_counts import ALL_ROW, UNTAGGED_ROW, node_rows, positions_in, total
from medray.met.tree import Tree


def _aligned(counts: pa.Table, node_ids: pa.Array, column: str) -> np.ndarray:
    idx = positions_in(node_ids, counts.column("node_id").combine_chunks())
    values = counts.column(column).to_numpy().astype(np.float64)
    out = np.zeros(len(node_ids))
    known = idx >= 0
    out[known] = values[idx[known]]
    return out


def _entropy_bits(mass: np.ndarray) -> float:
    p = mass[mass > 0] / mass.sum() if mass.sum() > 0 else np.zeros(0)
    return float(-(p * np.log2(p)).sum())


def _node_universe(counts_before: pa.Table, counts_after: pa.Table) -> tuple[pa.Table, pa.Table, pa.Array]:
    """The per-node rows of both sides and every node id either side mentions."""
    before, after = node_rows(counts_before), node_rows(counts_after)
    ids = pc.unique(pa.concat_arrays([before.column("node_id").combine_chunks(), after.column("node_id").combine_chunks()]))
    return before, after, ids


def backfill_table(counts_before: pa.Table, counts_after: pa.Table, cfg: SampleConfig, tree: Tree | None = None) -> pa.Table:
    """Nodes with fewer than `backfill_min_docs` distinct documents after sampling.

    Nodes the corpus does name come first (thin data that synthesis can
    extend), neediest first; then, with a tree, its nodes below the axes that
    no document names (0 documents), shallowest first. Each row has name, axis
    and level; need = backfill_min_docs - docs_after.
    """
    before, after, ids = _node_universe(counts_before, counts_after)
    if tree is not None:
        deep = tree.table.filter(pc.greater_equal(tree.table.column("level"), 2)).column("node_id").combine_chunks()
        ids = pc.unique(pa.concat_arrays([ids, deep]))
    docs_after = _aligned(after, ids, "docs")
    sparse = docs_after < cfg.backfill_min_docs
    ids = ids.filter(pa.array(sparse))
    out = {"node_id": ids, "need": (cfg.backfill_min_docs - docs_after[sparse]).astype(np.int64),
           "docs_before": _aligned(before, ids, "docs").astype(np.int64), "docs_after": docs_after[sparse].astype(np.int64),
           "tokens_after": _aligned(after, ids, "tokens").astype(np.int64)}
    info = {"name": pa.nulls(len(ids), pa.string()), "axis": pa.nulls(len(ids), pa.string()), "level": pa.nulls(len(ids), pa.int16())}
    if tree is not None:
        rows = pc.index_in(ids, value_set=tree.table.column("node_id").combine_chunks())
        info = {k: tree.table.column(k).take(rows) for k in info}
    table = pa.table({**out, **info})
    table = table.append_column("_unnamed", pc.equal(table.column("docs_before"), 0))
    return table.sort_by([("_unnamed", "ascending"), ("need", "descending"), ("level", "ascending"),
                          ("node_id", "ascending")]).drop(["_unnamed"])


def sampling_report(counts_before: pa.Table, counts_after: pa.Table, cfg: SampleConfig, tree: Tree | None = None) -> dict:
    """Coverage before and after sampling, over node token mass, plus the back-fill list.

    Entropy is in bits over p_n = tokens_n / sum tokens (a document's tokens count
    for each node it names); it is normalised by log2 of the nodes mentioned before
    or after, one denominator for both sides. Tail and head are fixed on the counts
    before: the tail is `tail_quantile` of the nodes by fewest documents, the head
    the node with the most tokens.
    """
    before, after, universe = _node_universe(counts_before, counts_after)
    by_doc = before.sort_by([("docs", "ascending"), ("tokens", "ascending"), ("node_id", "ascending")])
    tail = by_doc.column("node_id").combine_chunks()[:int(np.floor(cfg.tail_quantile * before.num_rows))]
    head = before.sort_by([("tokens", "descending"), ("node_id", "ascending")]).column("node_id")[:1].combine_chunks()
    denominator = np.log2(len(universe)) if len(universe) > 1 else 1.0

    def side(counts: pa.Table, nodes: pa.Table) -> dict:
        mass = _aligned(nodes, universe, "tokens")
        docs = _aligned(nodes, universe, "docs")
        mass_total = mass.sum() or 1.0
        entropy = _entropy_bits(mass)
        return {"docs": total(counts, ALL_ROW, "docs"), "tokens": total(counts, ALL_ROW, "tokens"),
                "untagged_docs": total(counts, UNTAGGED_ROW, "docs"), "untagged_tokens": total(counts, UNTAGGED_ROW, "tokens"),
                "nodes_covered": int((docs > 0).sum()), "nodes_with_k_docs": int((docs >= cfg.min_docs_k).sum()),
                "entropy_bits": entropy, "entropy_normalised": float(entropy / denominator),
                "tail_token_share": float(_aligned(nodes, tail, "tokens").sum() / mass_total),
                "head_token_share": float(_aligned(nodes, head, "tokens").sum() / mass_total)}

    report = {"mass": "tokens", "k": cfg.min_docs_k, "tail_nodes": len(tail), "head_node": head[0].as_py() if len(head) else None,
              "before": side(counts_before, before), "after": side(counts_after, after)}
    if report["before"]["tokens"]:
        report["output_ratio"] = report["after"]["tokens"] / report["before"]["tokens"]
    backfill = backfill_table(counts_before, counts_after, cfg, tree)
    report["backfill_min_docs"] = cfg.backfill_min_docs
    report["backfill_total"] = backfill.num_rows
    report["backfill_unmentioned"] = int(pc.sum(pc.equal(backfill.column("docs_before"), 0)).as_py() or 0)
    report["backfill"] = (backfill if not cfg.backfill_limit else backfill.slice(0, cfg.backfill_limit)).to_pylist()
    return report
