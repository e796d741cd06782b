"""Tree-guided sampling: reweight documents toward under-represented tree nodes.

A first pass counts documents and tokens per node (`tree_counts.node_counts`
per batch, `tree_counts.merge_counts` across shards). Temperature sampling over the node
distribution (token mass p_n; weights w_n ~ p_n^(1/T)) gives each node a
multiplier m_n = w_n / p_n; a document's expected number of copies is its
largest node multiplier times one global scale, capped at `max_repeat`. The
scale is solved so that the output holds `target` times the input tokens:
exactly from a profile of the documents' factors (`SamplingPlan.profile`, a
second pass over the `nodes` and token columns only, then `calibrate`), or
approximately from the node counts alone. The integer number of copies is
floor(f) plus a Bernoulli(frac(f)) draw from a hash of (seed, record id), so
the output does not depend on how records are split into batches or shards.
The coverage report on the counts before and after is in `sample_report`.
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
from medray.data.tree_counts import (
    AncestorIndex,
    doc_nodes,
    doc_tokens,
    merge_counts,
    node_counts,
    node_rows,
    positions_in,
    sum_by_key,
)
from medray.errors import ConfigError, MedrayError
from medray.met.tree import Tree

SAMPLED_OUT = "sampled_out"
PROFILE_SCHEMA = pa.schema([("key", pa.int64()), ("tokens", pa.int64())])
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
        parents, codes, dictionary = doc_nodes(batch, self.ancestors)
        idx = positions_in(dictionary, self.node_ids)
        known = idx >= 0
        code_mult = np.full(len(idx), np.nan)
        code_mult[known] = self.multipliers[idx[known]]
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


def merge_profiles(tables) -> pa.Table:
    """Sum `SamplingPlan.profile` tables from any split of the corpus."""
    return sum_by_key(tables, PROFILE_SCHEMA)


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
