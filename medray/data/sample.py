"""Tree-guided sampling: reweight documents toward under-represented tree nodes.

A first pass counts documents and tokens per node (`node_counts` per batch,
`merge_counts` across shards). Temperature sampling over the node
distribution (token mass p_n; weights w_n ~ p_n^(1/T)) gives each node a
multiplier m_n = w_n / p_n; a document's expected number of copies is its
largest node multiplier times one global scale, capped at `max_repeat`. The
scale is solved so that the output holds `target` times the input tokens:
exactly from a profile of the documents' factors (`SamplingPlan.profile`, a
second pass over the `nodes` and token columns only, then `calibrate`), or
approximately from the node counts alone. The integer number of copies is
floor(f) plus a Bernoulli(frac(f)) draw from a hash of (seed, record id), so
the output does not depend on how records are split into batches or shards.

Counts tables have one row per node id plus two reserved rows, `ALL_ROW`
(every document) and `UNTAGGED_ROW` (documents with no node), so totals
survive merging. `docs` counts distinct documents (rows with `copy` 0 when a
`copy` column is present), `tokens` counts every row: after sampling,
`docs` says how many different texts name a node and `tokens` how much
training mass it gets.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.data.stage import Stage, StageResult
from medray.errors import ConfigError, MedrayError
from medray.met.tree import Tree

SAMPLED_OUT = "sampled_out"
ALL_ROW = "<all>"
UNTAGGED_ROW = "<none>"
COUNTS_SCHEMA = pa.schema([("node_id", pa.string()), ("docs", pa.int64()), ("tokens", pa.int64())])
PROFILE_SCHEMA = pa.schema([("key", pa.int64()), ("tokens", pa.int64())])
TOKEN_COLUMNS = ("n_tokens", "n_words")  # the first one present sizes each record
COMBINES = ("max", "mean")
_PROFILE_STEPS = 4096  # profile keys: log2(factor) in steps of 1/4096 (relative error < 1e-4)
_SALT = 0x5A4D504C45  # keeps these draws independent of other stages hashing ids with the same seed
_MASK64 = (1 << 64) - 1


@dataclass
class SampleConfig:
    """Tree-guided sampling (`sample.*` in `conf/data/*.yaml`).

    temperature: T = 1 keeps the natural node distribution; larger flattens it toward
      uniform over nodes; below 1 sharpens it toward the head.
    max_repeat: most copies of one document (4: about what repeated epochs tolerate
      before returns drop, Muennighoff et al. 2023).
    target: output tokens as a fraction of input tokens.
    combine: a document's factor from its nodes' multipliers. "max" (default) lets its
      rarest node decide, so a rare finding is lifted even when the report also names
      ubiquitous nodes ("lung", "chest"); "mean" dilutes it by them.
    tail_quantile: the tail is the floor(q * N) nodes with the fewest documents before
      sampling (ties: fewer tokens, then node id), N = nodes mentioned before.
    min_docs_k: the report counts nodes with at least k distinct documents.
    backfill_min_docs: nodes with fewer distinct documents after sampling go to the
      back-fill list (what synthesis should generate for).
    backfill_limit: back-fill entries embedded in the report (0: all); the full list
      comes from `backfill_table`.
    ancestors: count a mention for the node's ancestors too (root and axes excluded),
      so a parent is as common as its subtree. Off by default: counts then mean "texts
      that name this entity", which is what the back-fill needs (a leaf named by no
      text is a gap even when its siblings are common), and with "max" the extra,
      more common ancestors never change a document's factor anyway.
    seed: the copies drawn for a record depend only on (seed, record id).
    """

    temperature: float = 2.0
    max_repeat: int = 4
    target: float = 1.0
    combine: str = "max"
    tail_quantile: float = 0.5
    min_docs_k: int = 10
    backfill_min_docs: int = 10
    backfill_limit: int = 1000
    ancestors: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError("sample.temperature", "must be > 0")
        if self.max_repeat < 1:
            raise ConfigError("sample.max_repeat", "must be at least 1")
        if not 0 < self.target <= self.max_repeat:
            raise ConfigError("sample.target", f"must be in (0, max_repeat={self.max_repeat}]")
        if self.combine not in COMBINES:
            raise ConfigError("sample.combine", f"unknown {self.combine!r}: expected one of {', '.join(COMBINES)}")
        if not 0 <= self.tail_quantile <= 1:
            raise ConfigError("sample.tail_quantile", "must be in [0, 1]")
        for key in ("min_docs_k", "backfill_min_docs", "backfill_limit"):
            if getattr(self, key) < 0:
                raise ConfigError(f"sample.{key}", "must be >= 0")


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


@numba.njit(cache=True, nogil=True)
def _combine(parents, codes, code_mult, n_docs, use_max):
    """Per document: the max (or mean over distinct nodes) of its known nodes' multipliers; NaN if none."""
    acc = np.zeros(n_docs, np.float64)
    cnt = np.zeros(n_docs, np.int64)
    last = np.full(len(code_mult), -1, np.int64)
    for i in range(len(codes)):
        c, p = codes[i], parents[i]
        m = code_mult[c]
        if np.isnan(m) or last[c] == p:
            continue
        last[c] = p
        if use_max:
            if cnt[p] == 0 or m > acc[p]:
                acc[p] = m
        else:
            acc[p] += m
        cnt[p] += 1
    out = np.empty(n_docs, np.float64)
    for d in range(n_docs):
        if cnt[d] == 0:
            out[d] = np.nan
        elif use_max:
            out[d] = acc[d]
        else:
            out[d] = acc[d] / cnt[d]
    return out


@numba.njit(cache=True, nogil=True)
def _unit_hash(offsets, data, seed, out):
    """A uniform [0, 1) value per string: FNV-1a over its bytes from a seeded start, then murmur3's fmix64."""
    for k in range(len(out)):
        h = seed
        for i in range(offsets[k], offsets[k + 1]):
            h = (h ^ np.uint64(data[i])) * np.uint64(1099511628211)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
        out[k] = np.float64(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


def _seed_state(seed: int) -> np.uint64:
    """splitmix64 of (seed, salt): nearby seeds give unrelated streams."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + _SALT) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return np.uint64(z ^ (z >> 31) ^ 0xCBF29CE484222325)


def record_uniforms(ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """One uniform draw per record id, a pure function of (seed, id)."""
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    state, parts = _seed_state(seed), []
    for chunk in chunks:
        if chunk.null_count:
            raise MedrayError("column 'id' has nulls: sampling needs a stable id per record")
        chunk = chunk.cast(pa.large_string())
        out = np.zeros(len(chunk), np.float64)
        if len(chunk):
            _, offsets, data = chunk.buffers()
            offs = np.frombuffer(offsets, np.int64)[chunk.offset:chunk.offset + len(chunk) + 1]
            _unit_hash(offs, np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8), state, out)
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


# ---- documents to (document, node) pairs ------------------------------------


class AncestorIndex:
    """Each tree node's ancestors below the axes (as tree row indices), for counting mentions upward."""

    def __init__(self, tree: Tree):
        table = tree.table
        self.node_ids = table.column("node_id").combine_chunks()
        parent = pc.index_in(table.column("parent_id"), value_set=self.node_ids).to_numpy(zero_copy_only=False)
        parent = np.where(np.isnan(parent.astype(np.float64)), -1, parent).astype(np.int64)
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
        tix = pc.index_in(dictionary, value_set=self.node_ids).to_numpy(zero_copy_only=False)
        tix = np.where(np.isnan(tix.astype(np.float64)), -1, tix).astype(np.int64)
        known = tix >= 0
        lens = np.where(known, self.offsets[np.maximum(tix, 0) + 1] - self.offsets[np.maximum(tix, 0)], 0)
        starts = np.repeat(self.offsets[np.maximum(tix, 0)], lens)
        flat = self.ancestors[starts + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)]
        code_of = np.full(len(self.node_ids), -1, np.int64)
        code_of[tix[known]] = np.flatnonzero(known)
        new = np.unique(flat[code_of[flat] < 0])
        code_of[new] = len(dictionary) + np.arange(len(new))
        dictionary = pa.concat_arrays([dictionary.cast(pa.string()), self.node_ids.take(pa.array(new)).cast(pa.string())])
        anc_offsets = np.zeros(len(lens) + 1, np.int64)
        np.cumsum(lens, out=anc_offsets[1:])
        return (*_expand(parents, codes, anc_offsets, code_of[flat].astype(np.int32)), dictionary)


def _doc_nodes(batch: pa.Table, ancestors: AncestorIndex | None) -> tuple[np.ndarray, np.ndarray, pa.Array]:
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
    parents, codes, dictionary = _doc_nodes(batch, ancestors)
    docs, toks, tagged = _count(parents, codes, len(dictionary), tokens, distinct)
    untagged = ~tagged
    ids = pa.concat_arrays([dictionary, pa.array([ALL_ROW, UNTAGGED_ROW], pa.string())])
    docs = np.append(docs, [distinct.sum(), (distinct & untagged).sum()])
    toks = np.append(toks, [tokens.sum(), tokens[untagged].sum()])
    return pa.table([ids, pa.array(docs, pa.int64()), pa.array(toks, pa.int64())], schema=COUNTS_SCHEMA)


def _merge_sum(tables, schema: pa.Schema) -> pa.Table:
    key = schema.names[0]
    tables = [t.select(schema.names).cast(schema) for t in tables if t.num_rows]
    if not tables:
        return schema.empty_table()
    summed = pa.concat_tables(tables).group_by(key).aggregate([(n, "sum") for n in schema.names[1:]])
    summed = summed.select([key, *(f"{n}_sum" for n in schema.names[1:])]).rename_columns(schema.names)
    return summed.cast(schema).sort_by(key)


def merge_counts(tables) -> pa.Table:
    """Sum counts tables (node_id, docs, tokens) from any split of the corpus; sorted by node id."""
    return _merge_sum(tables, COUNTS_SCHEMA)


def merge_profiles(tables) -> pa.Table:
    """Sum `SamplingPlan.profile` tables from any split of the corpus."""
    return _merge_sum(tables, PROFILE_SCHEMA)


def node_rows(counts: pa.Table) -> pa.Table:
    """The per-node rows of a counts table (without the totals rows)."""
    return counts.filter(pc.invert(pc.is_in(counts.column("node_id"), value_set=pa.array([ALL_ROW, UNTAGGED_ROW]))))


def _total(counts: pa.Table, row: str, column: str) -> int:
    hit = counts.filter(pc.equal(counts.column("node_id"), row))
    return int(pc.sum(hit.column(column)).as_py() or 0)


# ---- the plan -------------------------------------------------------------------


def solve_scale(factors: np.ndarray, weights: np.ndarray, max_repeat: float, target: float) -> float:
    """The s with sum(w * min(s * g, R)) = target * sum(w): piecewise linear in s, solved at its breakpoints."""
    keep = (weights > 0) & (factors > 0)
    g, w = factors[keep].astype(np.float64), weights[keep].astype(np.float64)
    if not len(g):
        return 1.0
    order = np.argsort(-g, kind="stable")
    g, w = g[order], w[order]
    goal = target * w.sum()
    cw, cwg = np.cumsum(w), np.cumsum(w * g)
    at_breaks = max_repeat * cw + (max_repeat / g) * (cwg[-1] - cwg)  # items 0..j capped at s = R / g_j
    j = int(np.searchsorted(at_breaks, goal * (1 - 1e-12)))
    if j >= len(g):
        return float(max_repeat / g[-1])
    capped_w = cw[j - 1] if j else 0.0
    free_wg = cwg[-1] - (cwg[j - 1] if j else 0.0)
    return float((goal - max_repeat * capped_w) / free_wg)


@dataclass(frozen=True)
class SamplingPlan:
    """Node multipliers and the global scale: everything a worker needs to sample any shard."""

    cfg: SampleConfig
    node_ids: pa.Array  # the nodes of the counts the plan was built from
    multipliers: np.ndarray  # m_n = w_n / p_n, relative (the most common node has 1)
    scale: float
    calibrated: bool  # True once `calibrate` has solved the scale on the documents' own factors
    ancestors: AncestorIndex | None = None

    @classmethod
    def from_counts(cls, counts: pa.Table, cfg: SampleConfig, tree: Tree | None = None) -> SamplingPlan:
        """Multipliers from node token mass; the scale approximated as if each mention were its own document."""
        if cfg.ancestors and tree is None:
            raise ConfigError("sample.ancestors", "counting ancestors needs the tree")
        nodes = node_rows(counts)
        nodes = nodes.filter(pc.greater(nodes.column("tokens"), 0))
        tokens = nodes.column("tokens").to_numpy().astype(np.float64)
        if len(tokens):
            log_p = np.log(tokens) - np.log(tokens.sum())
            multipliers = np.exp((1.0 / cfg.temperature - 1.0) * (log_p - log_p.max()))
        else:
            multipliers = np.zeros(0, np.float64)
        scale = solve_scale(multipliers, tokens, cfg.max_repeat, cfg.target)
        return cls(cfg, nodes.column("node_id").combine_chunks(), multipliers, scale, False,
                   AncestorIndex(tree) if cfg.ancestors else None)

    def raw_factors(self, batch: pa.Table) -> np.ndarray:
        """Per document, the combined multiplier of its nodes before scaling (NaN: no known node)."""
        parents, codes, dictionary = _doc_nodes(batch, self.ancestors)
        idx = pc.index_in(dictionary, value_set=self.node_ids).to_numpy(zero_copy_only=False).astype(np.float64)
        known = ~np.isnan(idx)
        code_mult = np.full(len(idx), np.nan)
        code_mult[known] = self.multipliers[idx[known].astype(np.int64)]
        return _combine(parents, codes, code_mult, batch.num_rows, self.cfg.combine == "max")

    def factors(self, batch: pa.Table) -> np.ndarray:
        """Expected copies per document: scale * factor capped at max_repeat; `target` for untagged ones."""
        raw = self.raw_factors(batch)
        return np.where(np.isnan(raw), float(self.cfg.target), np.minimum(self.scale * np.nan_to_num(raw), self.cfg.max_repeat))

    def copies(self, batch: pa.Table) -> np.ndarray:
        """Integer copies per document: floor(f) + Bernoulli(frac(f)), the draw hashed from (seed, id)."""
        f = self.factors(batch)
        whole = np.floor(f)
        u = record_uniforms(batch.column("id"), self.cfg.seed)
        return (whole + (u < f - whole)).astype(np.int64)

    def profile(self, batch: pa.Table) -> pa.Table:
        """Tokens of tagged documents per quantised log2 factor: what `calibrate` needs, mergeable by `merge_profiles`."""
        raw = self.raw_factors(batch)
        tagged = ~np.isnan(raw)
        keys = np.rint(np.log2(raw[tagged]) * _PROFILE_STEPS).astype(np.int64)
        uniq, inverse = np.unique(keys, return_inverse=True)
        tokens = np.bincount(inverse, weights=doc_tokens(batch)[tagged], minlength=len(uniq))
        return pa.table([pa.array(uniq, pa.int64()), pa.array(np.rint(tokens).astype(np.int64))], schema=PROFILE_SCHEMA)

    def calibrate(self, profile: pa.Table) -> SamplingPlan:
        """The same plan with the scale that makes the expected output exactly `target` times the input."""
        g = np.exp2(profile.column("key").to_numpy().astype(np.float64) / _PROFILE_STEPS)
        scale = solve_scale(g, profile.column("tokens").to_numpy(), self.cfg.max_repeat, self.cfg.target)
        return dataclasses.replace(self, scale=scale, calibrated=True)

    def table(self) -> pa.Table:
        """node_id, multiplier, expected copies of a document whose rarest node it is."""
        return pa.table({"node_id": self.node_ids, "multiplier": self.multipliers,
                         "factor": np.minimum(self.scale * self.multipliers, self.cfg.max_repeat)})

    def summary(self) -> dict:
        m = self.multipliers
        return {"nodes": len(m), "scale": self.scale, "calibrated": self.calibrated,
                "factor_min": float(min(self.scale * m.min(), self.cfg.max_repeat)) if len(m) else None,
                "factor_max": float(min(self.scale * m.max(), self.cfg.max_repeat)) if len(m) else None}


def plan_from_batches(batches, cfg: SampleConfig, tree: Tree | None = None) -> SamplingPlan:
    """Count, plan and calibrate over an in-memory sequence of batches (two passes; tests and small corpora)."""
    ancestors = AncestorIndex(tree) if cfg.ancestors and tree is not None else None
    plan = SamplingPlan.from_counts(merge_counts([node_counts(b, ancestors) for b in batches]), cfg, tree)
    return plan.calibrate(merge_profiles([plan.profile(b) for b in batches]))


class SampleStage(Stage):
    """Each record repeated as many times as the plan draws (column `copy`: 0..r-1); r = 0 drops it as `sampled_out`.

    A record appears r times in `kept`, so `in = kept - copies_added + dropped`.
    """

    name = "sample"

    def __init__(self, plan: SamplingPlan, cfg: SampleConfig | None = None):
        if cfg is not None and cfg != plan.cfg:
            raise MedrayError("the sampling plan was built with a different sample config")
        self.plan = plan

    def process(self, batch: pa.Table) -> StageResult:
        if "copy" in batch.column_names:
            raise MedrayError("records already carry a 'copy' column: they were sampled once")
        r = self.plan.copies(batch)
        rows = np.repeat(np.arange(batch.num_rows), r)
        copy = np.arange(len(rows)) - np.repeat(np.cumsum(r) - r, r)
        kept = batch.take(pa.array(rows)).append_column("copy", pa.array(copy, pa.int32()))
        out = r == 0
        dropped = batch.filter(pa.array(out)).append_column("reason", pa.array([SAMPLED_OUT] * int(out.sum()), pa.string()))
        counts = Counter({"copies_added": int(r.sum() - (r > 0).sum()), "docs_repeated": int((r > 1).sum())})
        return StageResult(kept, dropped, counts)


# ---- the report -----------------------------------------------------------------


def _aligned(counts: pa.Table, node_ids: pa.Array, column: str) -> np.ndarray:
    idx = pc.index_in(node_ids, value_set=counts.column("node_id").combine_chunks()).to_numpy(zero_copy_only=False)
    idx = idx.astype(np.float64)
    values = counts.column(column).to_numpy().astype(np.float64)
    out = np.zeros(len(node_ids))
    known = ~np.isnan(idx)
    out[known] = values[idx[known].astype(np.int64)]
    return out


def _entropy_bits(mass: np.ndarray) -> float:
    p = mass[mass > 0] / mass.sum() if mass.sum() > 0 else np.zeros(0)
    return float(-(p * np.log2(p)).sum())


def backfill_table(counts_before: pa.Table, counts_after: pa.Table, cfg: SampleConfig, tree: Tree | None = None) -> pa.Table:
    """Nodes with fewer than `backfill_min_docs` distinct documents after sampling.

    Nodes the corpus does name come first (thin data that synthesis can
    extend), neediest first; then, with a tree, its nodes below the axes that
    no document names (0 documents), shallowest first. Each row has name, axis
    and level; need = backfill_min_docs - docs_after.
    """
    before, after = node_rows(counts_before), node_rows(counts_after)
    ids = pc.unique(pa.concat_arrays([before.column("node_id").combine_chunks(), after.column("node_id").combine_chunks()]))
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
    before, after = node_rows(counts_before), node_rows(counts_after)
    universe = pc.unique(pa.concat_arrays([before.column("node_id").combine_chunks(), after.column("node_id").combine_chunks()]))
    by_doc = before.sort_by([("docs", "ascending"), ("tokens", "ascending"), ("node_id", "ascending")])
    tail = by_doc.column("node_id").combine_chunks()[:int(np.floor(cfg.tail_quantile * before.num_rows))]
    head = before.sort_by([("tokens", "descending"), ("node_id", "ascending")]).column("node_id")[:1].combine_chunks()
    denominator = np.log2(len(universe)) if len(universe) > 1 else 1.0

    def side(counts: pa.Table, nodes: pa.Table) -> dict:
        mass = _aligned(nodes, universe, "tokens")
        docs = _aligned(nodes, universe, "docs")
        total = mass.sum() or 1.0
        entropy = _entropy_bits(mass)
        return {"docs": _total(counts, ALL_ROW, "docs"), "tokens": _total(counts, ALL_ROW, "tokens"),
                "untagged_docs": _total(counts, UNTAGGED_ROW, "docs"), "untagged_tokens": _total(counts, UNTAGGED_ROW, "tokens"),
                "nodes_covered": int((docs > 0).sum()), "nodes_with_k_docs": int((docs >= cfg.min_docs_k).sum()),
                "entropy_bits": entropy, "entropy_normalised": float(entropy / denominator),
                "tail_token_share": float(_aligned(nodes, tail, "tokens").sum() / total),
                "head_token_share": float(_aligned(nodes, head, "tokens").sum() / total)}

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
