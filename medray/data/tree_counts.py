"""Documents and tokens per tree node: the counts tree-guided sampling plans from and reports on.

Split out of `sample.py` because counting is its own pass (per shard in the tag
and finish phases, merged at the barriers) and the plan, the stage and the
report all read its tables.

Counts tables have one row per node id plus two reserved rows, `ALL_ROW`
(every document) and `UNTAGGED_ROW` (documents with no node), so totals
survive merging. `docs` counts distinct documents (rows with `copy` 0 when a
`copy` column is present), `tokens` counts every row: after sampling,
`docs` says how many different texts name a node and `tokens` how much
training mass it gets.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.errors import MedrayError
from medray.met.tree import Tree

ALL_ROW = "<all>"
UNTAGGED_ROW = "<none>"
COUNTS_SCHEMA = pa.schema([("node_id", pa.string()), ("docs", pa.int64()), ("tokens", pa.int64())])
TOKEN_COLUMNS = ("n_tokens", "n_words")  # the first one present sizes each record


def positions_in(values, value_set) -> np.ndarray:
    """Each value's row in `value_set` (int64), -1 where it is absent."""
    idx = pc.index_in(values, value_set=value_set).to_numpy(zero_copy_only=False).astype(np.float64)
    return np.where(np.isnan(idx), -1, idx).astype(np.int64)


# ---- kernels ------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _expand(parents, codes, anc_offsets, anc_codes):
    """Each (document, node) pair followed by the node's ancestors, keeping document order."""
    total = 0
    for i in range(len(codes)):
        c = codes[i]
        total += 1 + anc_offsets[c + 1] - anc_offsets[c]
    out_p = np.empty(total, np.int64)
    out_c = np.empty(total, np.int32)
    j = 0
    for i in range(len(codes)):
        c = codes[i]
        out_p[j] = parents[i]
        out_c[j] = c
        j += 1
        for k in range(anc_offsets[c], anc_offsets[c + 1]):
            out_p[j] = parents[i]
            out_c[j] = anc_codes[k]
            j += 1
    return out_p, out_c


@numba.njit(cache=True, nogil=True)
def _count(parents, codes, n_codes, tokens, distinct):
    """Distinct documents and tokens per code; a node named twice in a document counts once."""
    docs = np.zeros(n_codes, np.int64)
    toks = np.zeros(n_codes, np.int64)
    last = np.full(n_codes, -1, np.int64)
    tagged = np.zeros(len(tokens), np.bool_)
    for i in range(len(codes)):
        c, p = codes[i], parents[i]
        if last[c] == p:
            continue
        last[c] = p
        tagged[p] = True
        toks[c] += tokens[p]
        if distinct[p]:
            docs[c] += 1
    return docs, toks, tagged


# ---- documents to (document, node) pairs ------------------------------------


class AncestorIndex:
    """Each tree node's ancestors below the axes (as tree row indices), for counting mentions upward."""

    def __init__(self, tree: Tree):
        table = tree.table
        self.node_ids = table.column("node_id").combine_chunks()
        parent = positions_in(table.column("parent_id"), self.node_ids)
        level = table.column("level").to_numpy().astype(np.int64)
        child_parts, anc_parts = [], []
        rows, cur = np.arange(len(parent)), parent.copy()
        while True:
            live = cur >= 0
            if not live.any():
                break
            rows, cur = rows[live], cur[live]
            keep = level[cur] >= 2
            child_parts.append(rows[keep])
            anc_parts.append(cur[keep])
            cur = parent[cur]
        child = np.concatenate(child_parts) if child_parts else np.zeros(0, np.int64)
        anc = np.concatenate(anc_parts) if anc_parts else np.zeros(0, np.int64)
        order = np.argsort(child, kind="stable")  # nearest ancestor first within a node
        self.ancestors = anc[order].astype(np.int32)
        self.offsets = np.zeros(len(parent) + 1, np.int64)
        np.cumsum(np.bincount(child, minlength=len(parent)), out=self.offsets[1:])

    def expand(self, parents: np.ndarray, codes: np.ndarray, dictionary: pa.Array):
        """Pairs and dictionary extended with every known node's ancestors."""
        tix = positions_in(dictionary, self.node_ids)
        known = tix >= 0
        first = self.offsets[np.maximum(tix, 0)]
        lens = np.where(known, self.offsets[np.maximum(tix, 0) + 1] - first, 0)
        starts = np.repeat(first, lens)
        flat = self.ancestors[starts + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)]
        code_of = np.full(len(self.node_ids), -1, np.int64)
        code_of[tix[known]] = np.flatnonzero(known)
        new = np.unique(flat[code_of[flat] < 0])
        code_of[new] = len(dictionary) + np.arange(len(new))
        dictionary = pa.concat_arrays([dictionary.cast(pa.string()), self.node_ids.take(pa.array(new)).cast(pa.string())])
        anc_offsets = np.zeros(len(lens) + 1, np.int64)
        np.cumsum(lens, out=anc_offsets[1:])
        return (*_expand(parents, codes, anc_offsets, code_of[flat].astype(np.int32)), dictionary)


def doc_nodes(batch: pa.Table, ancestors: AncestorIndex | None) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(document row, node code) pairs in document order, and the codes' node ids."""
    if "nodes" not in batch.column_names:
        raise MedrayError("column 'nodes' missing: sampling reads the tree nodes the tag stage adds")
    nodes = batch.column("nodes")
    nodes = nodes.combine_chunks() if isinstance(nodes, pa.ChunkedArray) else nodes
    values, parents = pc.list_flatten(nodes), pc.list_parent_indices(nodes)
    if values.null_count:
        valid = pc.is_valid(values)
        values, parents = values.filter(valid), parents.filter(valid)
    encoded = values.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    parents = parents.to_numpy(zero_copy_only=False).astype(np.int64)
    dictionary = encoded.dictionary.cast(pa.string())
    if ancestors is not None:
        return ancestors.expand(parents, codes, dictionary)
    return parents, codes, dictionary


def doc_tokens(batch: pa.Table) -> np.ndarray:
    """Each record's size in tokens, from the first of `TOKEN_COLUMNS` present."""
    for name in TOKEN_COLUMNS:
        if name in batch.column_names:
            col = batch.column(name)
            if col.null_count:
                raise MedrayError(f"column {name!r} has nulls: every record needs its token count")
            return col.to_numpy().astype(np.int64)
    raise MedrayError(f"no token count column: expected one of {', '.join(TOKEN_COLUMNS)}")


# ---- counts ---------------------------------------------------------------------


def node_counts(batch: pa.Table, ancestors: AncestorIndex | None = None) -> pa.Table:
    """Per node of this batch: distinct documents and tokens, plus the `ALL_ROW` and `UNTAGGED_ROW` totals."""
    tokens = doc_tokens(batch)
    distinct = (pc.equal(batch.column("copy"), 0).to_numpy(zero_copy_only=False)
                if "copy" in batch.column_names else np.ones(batch.num_rows, np.bool_))
    parents, codes, dictionary = doc_nodes(batch, ancestors)
    docs, toks, tagged = _count(parents, codes, len(dictionary), tokens, distinct)
    untagged = ~tagged
    ids = pa.concat_arrays([dictionary, pa.array([ALL_ROW, UNTAGGED_ROW], pa.string())])
    docs = np.append(docs, [distinct.sum(), (distinct & untagged).sum()])
    toks = np.append(toks, [tokens.sum(), tokens[untagged].sum()])
    return pa.table([ids, pa.array(docs, pa.int64()), pa.array(toks, pa.int64())], schema=COUNTS_SCHEMA)


def sum_by_key(tables, schema: pa.Schema) -> pa.Table:
    """Sum tables of `schema` over its first column (the key); sorted by key."""
    key = schema.names[0]
    tables = [t.select(schema.names).cast(schema) for t in tables if t.num_rows]
    if not tables:
        return schema.empty_table()
    summed = pa.concat_tables(tables).group_by(key).aggregate([(n, "sum") for n in schema.names[1:]])
    summed = summed.select([key, *(f"{n}_sum" for n in schema.names[1:])]).rename_columns(schema.names)
    return summed.cast(schema).sort_by(key)


def merge_counts(tables) -> pa.Table:
    """Sum counts tables (node_id, docs, tokens) from any split of the corpus; sorted by node id."""
    return sum_by_key(tables, COUNTS_SCHEMA)


def node_rows(counts: pa.Table) -> pa.Table:
    """The per-node rows of a counts table (without the totals rows)."""
    return counts.filter(pc.invert(pc.is_in(counts.column("node_id"), value_set=pa.array([ALL_ROW, UNTAGGED_ROW]))))


def total(counts: pa.Table, row: str, column: str) -> int:
    """One column of a reserved totals row (`ALL_ROW`, `UNTAGGED_ROW`); 0 if the table lacks it."""
    hit = counts.filter(pc.equal(counts.column("node_id"), row))
    return int(pc.sum(hit.column(column)).as_py() or 0)
