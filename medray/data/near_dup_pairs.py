"""Near-duplicate pairs and clusters from MinHash signatures, and the local (in-memory) run.

Why a module of its own: turning signatures into kept/dropped records is
plain array work (LSH buckets, verification, connected components) that
both the local run here and the Ray path (`near_dup_ray`) build on.

Pairs that share a bucket in some band are candidates; with `verify` they
are checked against the full signatures so that pairs that only share one
band do not merge clusters, and the connected components of the verified
pairs are the clusters. The smallest id of each is kept, so the result does
not depend on input order or on how records were split into batches.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.data.dedup import REASON, NearDupConfig
from medray.data.minhash import band_keys, has_words, minhash_signatures
from medray.errors import MedrayError


def bucket_starts(*sorted_columns: np.ndarray) -> np.ndarray:
    """For rows sorted by `sorted_columns`: True where a bucket starts (any column differs from the row before)."""
    new = np.ones(len(sorted_columns[0]), dtype=bool)
    new[1:] = np.logical_or.reduce([column[1:] != column[:-1] for column in sorted_columns])
    return new


def bucket_pairs(new: np.ndarray, rank: np.ndarray, max_bucket: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs of row positions in the same bucket, for rows grouped by bucket (`new` marks each bucket's first row).

    Buckets up to `max_bucket` give all their pairs; a larger one pairs each
    member with its lowest-`rank` (smallest id) member only, so a huge bucket
    costs linear, not quadratic, work. Returns (p, q, oversized buckets).
    """
    n = len(new)
    empty = np.empty(0, np.int64)
    if n < 2:
        return empty, empty, 0
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, n))
    ps, qs = [], []
    for size in np.unique(sizes[(sizes >= 2) & (sizes <= max_bucket)]):
        first = starts[sizes == size][:, None]
        iu, ju = np.triu_indices(int(size), 1)
        ps.append((first + iu).ravel())
        qs.append((first + ju).ravel())
    large = sizes > max_bucket
    if large.any():
        bucket = np.cumsum(new) - 1
        rows = np.flatnonzero(large[bucket])
        lowest = np.minimum.reduceat(rank, starts)[bucket[rows]]
        is_head = rank[rows] == lowest
        head = np.empty(len(starts), dtype=np.int64)
        head[bucket[rows[is_head]]] = rows[is_head]
        members = rows[~is_head]
        ps.append(head[bucket[members]])
        qs.append(members)
    if not ps:
        return empty, empty, 0
    return np.concatenate(ps).astype(np.int64), np.concatenate(qs).astype(np.int64), int(large.sum())


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Share of equal signature values per row pair (chunked: memory stays ~chunk x num_perm)."""
    out = np.empty(len(sig_a), dtype=np.float64)
    for start in range(0, len(sig_a), chunk):
        stop = start + chunk
        out[start:stop] = (sig_a[start:stop] == sig_b[start:stop]).mean(axis=1)
    return out


def smallest_in_components(ids: pa.Array, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each of `ids` (unique), the index of the smallest id in its connected component over edges (a, b)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    order = pc.sort_indices(ids).to_numpy()  # order[r] = the index of the r-th smallest id
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    best_rank = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(best_rank, labels, rank)
    return order[best_rank[labels]]


def _id_array(ids) -> pa.Array:
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else pa.array(ids)
    if pc.count_distinct(ids).as_py() != len(ids):
        raise MedrayError("near-dup: ids must be unique")
    return ids


def near_duplicate_pairs(ids, signatures: np.ndarray, cfg: NearDupConfig) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Verified pairs (a, b) of record indices (a < b, sorted), with counters.

    Documents without words are never paired.
    """
    ids = _id_array(ids)
    sig = signatures
    if len(sig) != len(ids):
        raise MedrayError(f"near-dup: {len(ids)} ids for {len(sig)} documents")
    n = max(len(ids), 1)
    by_id = pc.sort_indices(ids).to_numpy()
    docs = by_id[has_words(sig)[by_id]]  # in id order: a position here ranks the id
    keys = band_keys(sig[docs], cfg)
    found, oversized = [], 0
    for band in range(cfg.bands):
        order = np.argsort(keys[:, band])
        p, q, large = bucket_pairs(bucket_starts(keys[order, band]), order, cfg.max_bucket)
        a, b = docs[order[p]], docs[order[q]]
        found.append(np.minimum(a, b) * n + np.maximum(a, b))
        oversized += large
    pairs = np.unique(np.concatenate(found))
    a, b = pairs // n, pairs % n
    counts = Counter(candidate_pairs=len(a), oversized_buckets=oversized)
    if cfg.verify and len(a):
        ok = estimated_jaccard(sig[a], sig[b]) >= cfg.threshold
        a, b = a[ok], b[ok]
    counts["verified_pairs"] = len(a)
    return a, b, counts


def find_near_duplicates(ids, texts, cfg: NearDupConfig | None = None, *,
                         signatures: np.ndarray | None = None) -> pa.Table:
    """Local, in memory: (id, cluster, keep, dup_of) for every record, in input order.

    `cluster` is the kept (smallest) id of the record's cluster; `dup_of` is
    that id for dropped records and null for kept ones. Pass `signatures` to
    skip computing them from `texts`. Counters go to the schema metadata
    (see `near_dup_counts`).
    """
    cfg = (cfg or NearDupConfig()).validate()
    ids = _id_array(ids)
    sig = minhash_signatures(texts, cfg) if signatures is None else signatures
    a, b, counts = near_duplicate_pairs(ids, sig, cfg)
    rep = smallest_in_components(ids, a, b)
    keep = rep == np.arange(len(ids))
    cluster = ids.take(pa.array(rep, pa.int64()))
    dup_of = pc.if_else(pa.array(keep), pa.nulls(len(ids), ids.type), cluster)
    counts[REASON] = int((~keep).sum())
    table = pa.table({"id": ids, "cluster": cluster, "keep": pa.array(keep, pa.bool_()), "dup_of": dup_of})
    return with_counts(table, counts)


def with_counts(table: pa.Table, counts: Counter) -> pa.Table:
    """The table with `counts` in its schema metadata (read back by `near_dup_counts`)."""
    return table.replace_schema_metadata({b"medray.counts": json.dumps(dict(counts), sort_keys=True).encode()})


def near_dup_counts(table: pa.Table) -> Counter:
    """Counters recorded by `find_near_duplicates` / `near_duplicates_ray` (candidate_pairs, ...)."""
    raw = (table.schema.metadata or {}).get(b"medray.counts")
    return Counter(json.loads(raw)) if raw else Counter()
