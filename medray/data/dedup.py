"""Near-duplicate removal: MinHash signatures, LSH banding, verified pairs, one record kept per cluster.

Why this shape: exact dedup misses documents that differ by a few words
(a re-posted note, a template with one field changed). MinHash turns each
document's set of word n-grams into `num_perm` minima whose agreement rate
estimates Jaccard similarity; splitting the signature into `bands` of
`rows` values and bucketing on a hash of each band makes pairs above about
(1/bands)^(1/rows) collide in at least one band, without comparing all
pairs. Candidates are then checked against the full signatures (`verify`)
so that pairs that only share one band do not merge clusters, and the
connected components of the verified pairs are the clusters; the smallest
id of each is kept, so the result does not depend on input order or on how
records were split into batches.

Signatures are computed in one compiled pass over the Arrow string buffer:
characters are decoded from UTF-8 and normalised through the matcher's
table (lower case, punctuation to spaces), words hashed with FNV-1a,
n-grams of word hashes mixed into 64-bit shingle hashes, and each
permutation is a multiply-add on the 64-bit hash whose top 32 bits are
kept (a Dietzfelbinger multiply-add-shift family; odd multipliers make it a
bijection before the shift). Everything derives from `seed`, never from a
global random state.

On Ray (`near_duplicates_ray`) the band rows are grouped in `num_partitions`
hash partitions (one vectorised call per partition, not one Python call per
bucket), candidate pairs come back to the driver, the signatures of the
candidate documents only are fetched for verification, and connected
components run on the driver: its memory grows with the number of
candidate edges and candidate documents, not with the corpus.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.data.stage import Stage, StageResult
from medray.errors import ConfigError, MedrayError
from medray.met.normalize import LUT, SENTENCE_MARK

REASON = "near_duplicate"
SIGNATURE_COLUMN = "minhash"
SIGNATURE_META = b"medray.minhash"  # field metadata: the settings a stored signature was made with
DROPPED_SCHEMA = pa.schema([("id", pa.string()), ("dup_of", pa.string())])

EMPTY = np.uint32(0xFFFFFFFF)  # every value of a document without words
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_S33, _S32 = np.uint64(33), np.uint64(32)
_SPACE, _NEWLINE, _MARK = 32, 10, ord(SENTENCE_MARK)


@dataclass
class NearDupConfig:
    """MinHash/LSH settings. With 128 permutations in 16 bands of 8 rows, pairs collide
    in some band from about Jaccard 0.7 (95% of pairs at 0.8, 99.7% at 0.86)."""

    ngram: int = 5  # words per shingle; shorter documents use all the words they have
    num_perm: int = 128
    bands: int = 16  # rows per band = num_perm / bands
    threshold: float = 0.8  # estimated Jaccard a verified pair must reach
    seed: int = 0
    max_bucket: int = 100  # larger buckets pair every member with their smallest id only (linear, not quadratic)
    verify: bool = True  # check candidates against the full signatures

    def __post_init__(self) -> None:
        self.validate()

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    def validate(self, prefix: str = "") -> NearDupConfig:
        """Raise ConfigError naming the first bad key (`prefix` is the section's dotted path)."""
        checks = [
            ("ngram", self.ngram >= 1, "must be at least 1"),
            ("num_perm", self.num_perm >= 1, "must be at least 1"),
            ("bands", self.bands >= 1, "must be at least 1"),
            ("bands", self.bands >= 1 and self.num_perm % self.bands == 0,
             f"must divide num_perm ({self.num_perm}) into bands of equal rows"),
            ("threshold", 0.0 < self.threshold <= 1.0, "must be in (0, 1]"),
            ("seed", self.seed >= 0, "must be >= 0"),
            ("max_bucket", self.max_bucket >= 2, "must be at least 2"),
        ]
        for key, ok, message in checks:
            if not ok:
                raise ConfigError(f"{prefix}{key}", f"{message}, got {getattr(self, key)!r}")
        return self

    def signature_tag(self) -> bytes:
        return f"ngram={self.ngram},num_perm={self.num_perm},seed={self.seed}".encode()


# ---- hashing ------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _fmix64(h):
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    return h ^ (h >> _S33)


def _splitmix(seed: int, count: int) -> np.ndarray:
    """`count` well-mixed 64-bit values from a seed (SplitMix64): the same on every machine and NumPy version."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) + np.arange(1, count + 1, dtype=np.uint64)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    values = _splitmix(seed, 2 * num_perm)
    return values[:num_perm] | np.uint64(1), values[num_perm:]


@numba.njit(cache=True, nogil=True)
def _minhash(data, offsets, lut, ngram, mul, add, out, words_out, shingles):
    """Signatures of documents data[offsets[d]:offsets[d+1]] (UTF-8) into out[d]; word counts into words_out."""
    num_perm = len(mul)
    ring = np.zeros(ngram, np.uint64)
    sig = np.empty(num_perm, np.uint32)
    lut_size = len(lut)
    for d in range(len(offsets) - 1):
        i, end = offsets[d], offsets[d + 1]
        words = 0
        n_sh = 0
        in_word = False
        h = _FNV_OFFSET
        while i <= end:
            if i == end:
                c = _SPACE
                i += 1
            else:
                b0 = np.int64(data[i])
                if b0 < 0x80:
                    c = b0
                    i += 1
                elif b0 < 0xE0:
                    c = ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
                    i += 2
                elif b0 < 0xF0:
                    c = ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
                    i += 3
                else:
                    c = (((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
                         | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F))
                    i += 4
                if c < lut_size:
                    c = np.int64(lut[c])
            if c == _SPACE or c == _NEWLINE or c == _MARK:
                if in_word:
                    ring[words % ngram] = h
                    words += 1
                    in_word = False
                    if words >= ngram:
                        s = _FNV_OFFSET
                        for j in range(words - ngram, words):
                            s = _fmix64(s ^ ring[j % ngram])
                        shingles[n_sh] = s
                        n_sh += 1
                continue
            if not in_word:
                in_word = True
                h = _FNV_OFFSET
            h = (h ^ np.uint64(c)) * _FNV_PRIME
        if 0 < words < ngram:  # a short document is one shingle of all its words
            s = _FNV_OFFSET
            for j in range(words):
                s = _fmix64(s ^ ring[j])
            shingles[0] = s
            n_sh = 1
        sig[:] = EMPTY
        for k in range(n_sh):
            x = shingles[k]
            for p in range(num_perm):
                v = np.uint32((mul[p] * x + add[p]) >> _S32)
                if v < sig[p]:
                    sig[p] = v
        out[d, :] = sig
        words_out[d] = words


def _string_buffers(texts) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and int64 offsets of a string array (nulls as empty strings), without copying the text."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), pa.large_string())
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise MedrayError(f"near-dup: text must be strings, got {texts.type}")
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    _, offset_buf, data_buf = texts.buffers()
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(offset_buf, dtype=width)[texts.offset:texts.offset + len(texts) + 1].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
    return data, offsets


def minhash_with_word_counts(texts, cfg: NearDupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(signatures uint32 (n, num_perm), words per document); texts: Arrow strings or a list of str."""
    data, offsets = _string_buffers(texts)
    n = len(offsets) - 1
    out = np.empty((n, cfg.num_perm), dtype=np.uint32)
    words = np.zeros(n, dtype=np.int64)
    longest = int(np.diff(offsets).max()) if n else 0
    mul, add = _permutations(cfg.num_perm, cfg.seed)
    _minhash(data, offsets, LUT, cfg.ngram, mul, add, out, words, np.empty(longest // 2 + 2, np.uint64))
    return out, words


def minhash_signatures(texts, cfg: NearDupConfig) -> np.ndarray:
    """MinHash signatures, uint32 (n, num_perm); a document without words is all `EMPTY`."""
    return minhash_with_word_counts(texts, cfg)[0]


@numba.njit(cache=True, nogil=True)
def _band_keys(sig, rows, band_seeds, out):
    for d in range(sig.shape[0]):
        for b in range(len(band_seeds)):
            h = band_seeds[b]
            for r in range(b * rows, (b + 1) * rows):
                h = _fmix64(h ^ np.uint64(sig[d, r]))
            out[d, b] = h


def band_keys(signatures: np.ndarray, cfg: NearDupConfig) -> np.ndarray:
    """One 64-bit hash per band, uint64 (n, bands); equal keys = the band's rows all agree."""
    sig = np.ascontiguousarray(signatures, dtype=np.uint32)
    if sig.ndim != 2 or sig.shape[1] != cfg.num_perm:
        raise MedrayError(f"near-dup: signatures must be (n, {cfg.num_perm}), got {sig.shape}")
    out = np.empty((sig.shape[0], cfg.bands), dtype=np.uint64)
    _band_keys(sig, cfg.rows, _splitmix(cfg.seed ^ 0x5BD1E995, cfg.bands), out)
    return out


# ---- candidates, verification, clusters ---------------------------------------------------------------


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


def _has_words(signatures: np.ndarray) -> np.ndarray:
    return (signatures != EMPTY).any(axis=1)


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
    docs = by_id[_has_words(sig)[by_id]]  # in id order: a position here ranks the id
    keys = band_keys(sig[docs], cfg)
    found, oversized = [], 0
    for band in range(cfg.bands):
        order = np.argsort(keys[:, band])
        sorted_keys = keys[order, band]
        new = np.ones(len(order), dtype=bool)
        new[1:] = sorted_keys[1:] != sorted_keys[:-1]
        p, q, large = bucket_pairs(new, order, cfg.max_bucket)
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
    return _with_counts(table, counts)


def _with_counts(table: pa.Table, counts: Counter) -> pa.Table:
    return table.replace_schema_metadata({b"medray.counts": json.dumps(dict(counts), sort_keys=True).encode()})


def near_dup_counts(table: pa.Table) -> Counter:
    """Counters recorded by `find_near_duplicates` / `near_duplicates_ray` (candidate_pairs, ...)."""
    raw = (table.schema.metadata or {}).get(b"medray.counts")
    return Counter(json.loads(raw)) if raw else Counter()


# ---- stages -------------------------------------------------------------------------------------------


def signature_field(cfg: NearDupConfig) -> pa.Field:
    """The `minhash` column's field, tagged with the settings that made it (checked when read back)."""
    return pa.field(SIGNATURE_COLUMN, pa.list_(pa.uint32(), cfg.num_perm), metadata={SIGNATURE_META: cfg.signature_tag()})


def signature_array(signatures: np.ndarray, cfg: NearDupConfig) -> tuple[pa.Field, pa.Array]:
    """The signatures as a fixed-size-list column, with its field."""
    values = pa.array(np.ascontiguousarray(signatures, dtype=np.uint32).ravel())
    return signature_field(cfg), pa.FixedSizeListArray.from_arrays(values, cfg.num_perm)


def signatures_of(column: pa.ChunkedArray | pa.Array, cfg: NearDupConfig) -> np.ndarray:
    """A stored `minhash` column back to (n, num_perm) uint32, checked against the config."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_fixed_size_list(array.type) or array.type.list_size != cfg.num_perm:
        raise ConfigError("num_perm", f"the '{SIGNATURE_COLUMN}' column is {array.type}, "
                                      f"expected fixed_size_list<uint32>[{cfg.num_perm}]")
    values = array.values.slice(array.offset * cfg.num_perm, len(array) * cfg.num_perm)
    return values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False).reshape(-1, cfg.num_perm)


class MinHashStage(Stage):
    """Adds the `minhash` column and keeps every record: signatures are made while the
    corpus streams, and the grouping runs later as a barrier over the stored shards."""

    name = "minhash"

    def __init__(self, cfg: NearDupConfig | None = None, text_column: str = "text"):
        self.cfg = (cfg or NearDupConfig()).validate()
        self.text_column = text_column

    def process(self, batch: pa.Table) -> StageResult:
        sig, words = minhash_with_word_counts(batch.column(self.text_column), self.cfg)
        field, array = signature_array(sig, self.cfg)
        if SIGNATURE_COLUMN in batch.column_names:
            batch = batch.drop_columns([SIGNATURE_COLUMN])
        counts = {"minhash_docs": batch.num_rows, "minhash_no_words": int((words == 0).sum())}
        return StageResult.keep_all(batch.append_column(field, array), counts)


class NearDupFilter(Stage):
    """Drops the ids a near-dup pass chose (reason `near_duplicate`, with `dup_of`), and the
    signature column from what it keeps (training shards do not need it)."""

    name = "near_dup"

    def __init__(self, dropped: pa.Table, drop_columns: tuple[str, ...] = (SIGNATURE_COLUMN,)):
        self.dropped = dropped.select(["id", "dup_of"])
        self.drop_columns = drop_columns
        self.lookup: dict | None = None

    def setup(self) -> None:
        self.lookup = dict(zip(self.dropped["id"].to_pylist(), self.dropped["dup_of"].to_pylist()))

    def process(self, batch: pa.Table) -> StageResult:
        if self.lookup is None:
            self.setup()
        batch = batch.drop_columns([c for c in self.drop_columns if c in batch.column_names])
        dup_of = [self.lookup.get(i) for i in batch.column("id").to_pylist()]
        result = StageResult.from_reasons(batch, [REASON if d is not None else None for d in dup_of])
        result.dropped = result.dropped.append_column("dup_of", pa.array([d for d in dup_of if d is not None], pa.string()))
        return result


# ---- Ray ----------------------------------------------------------------------------------------------

_BAND_ROWS = pa.schema([("part", pa.int64()), ("band", pa.int32()), ("key", pa.uint64()), ("id", pa.string())])
_EDGES = pa.schema([("a", pa.string()), ("b", pa.string()), ("band", pa.int32()), ("star", pa.bool_())])


def check_signature_field(schema: pa.Schema, cfg: NearDupConfig) -> None:
    """A stored `minhash` column made with other settings cannot be compared: fail naming the key."""
    if SIGNATURE_COLUMN not in schema.names:
        return
    tag = (schema.field(SIGNATURE_COLUMN).metadata or {}).get(SIGNATURE_META)
    if tag is not None and tag != cfg.signature_tag():
        stored = dict(item.split("=") for item in tag.decode().split(","))
        key = next((k for k, v in stored.items() if str(getattr(cfg, k, v)) != v), "num_perm")
        raise ConfigError(key, f"the stored '{SIGNATURE_COLUMN}' column was made with {tag.decode()}, "
                               f"the config asks for {cfg.signature_tag().decode()}")


def _batch_signatures(batch: pa.Table, cfg: NearDupConfig, text_column: str) -> np.ndarray:
    if SIGNATURE_COLUMN in batch.column_names:
        check_signature_field(batch.schema, cfg)
        return signatures_of(batch.column(SIGNATURE_COLUMN), cfg)
    if text_column not in batch.column_names or "id" not in batch.column_names:
        raise MedrayError(f"near-dup: records need 'id' and '{SIGNATURE_COLUMN}' or '{text_column}' "
                          f"columns, got {batch.column_names}")
    return minhash_signatures(batch.column(text_column), cfg)


def _band_rows(batch: pa.Table, cfg: NearDupConfig, text_column: str, partitions: int) -> pa.Table:
    sig = _batch_signatures(batch, cfg, text_column)
    rows = np.flatnonzero(_has_words(sig))
    keys = band_keys(sig[rows], cfg).ravel()
    ids = batch.column("id").cast(pa.string()).take(pa.array(np.repeat(rows, cfg.bands)))
    return pa.table({"part": (keys % np.uint64(partitions)).astype(np.int64),
                     "band": np.tile(np.arange(cfg.bands, dtype=np.int32), len(rows)),
                     "key": keys, "id": ids}, schema=_BAND_ROWS)


def _partition_edges(rows: pa.Table, cfg: NearDupConfig) -> pa.Table:
    rows = rows.take(pc.sort_indices(rows, [("band", "ascending"), ("key", "ascending"), ("id", "ascending")]))
    band, key = rows.column("band").to_numpy(), rows.column("key").to_numpy()
    new = np.ones(len(key), dtype=bool)
    new[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    p, q, _ = bucket_pairs(new, np.arange(len(key)), cfg.max_bucket)  # sorted by id within a bucket
    bucket = np.cumsum(new) - 1
    sizes = np.bincount(bucket)
    ids = rows.column("id")
    return pa.table({"a": ids.take(pa.array(p)), "b": ids.take(pa.array(q)), "band": pa.array(band[p], pa.int32()),
                     "star": pa.array(sizes[bucket[p]] > cfg.max_bucket)}, schema=_EDGES)


def _candidate_signatures(batch: pa.Table, wanted_ref: list, cfg: NearDupConfig, text_column: str) -> pa.Table:
    import ray

    ids = batch.column("id").cast(pa.string())
    batch = batch.filter(pc.is_in(ids, value_set=ray.get(wanted_ref[0])))
    sig = _batch_signatures(batch, cfg, text_column)
    field, array = signature_array(sig, cfg)
    return pa.Table.from_arrays([batch.column("id").cast(pa.string()), array], schema=pa.schema([("id", pa.string()), field]))


def _tables(ds):
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        yield batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def _collect(ds, schema: pa.Schema) -> pa.Table:
    tables = [t.cast(schema) for t in _tables(ds)]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _distinct(tables: list[pa.Table], keys: list[str], schema: pa.Schema) -> pa.Table:
    table = pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()
    return table.group_by(keys).aggregate([]).select(keys) if table.num_rows else table


def _distinct_edges(ds) -> tuple[pa.Table, int]:
    """Distinct (a, b) edges and the number of oversized buckets, deduplicated as batches arrive
    (a close pair collides in several bands), so the driver holds ~ the distinct edges."""
    pair_schema = pa.schema([_EDGES.field("a"), _EDGES.field("b")])
    star_schema = pa.schema([_EDGES.field("a"), _EDGES.field("band")])
    pairs: list[pa.Table] = []
    stars: list[pa.Table] = []
    held = compacted = 0
    for table in _tables(ds):
        stars.append(table.filter(table.column("star")).select(["a", "band"]))
        pairs.append(table.select(["a", "b"]))
        held += table.num_rows
        if held > 2 * compacted + 1_000_000:
            pairs = [_distinct(pairs, ["a", "b"], pair_schema)]
            held = compacted = pairs[0].num_rows
    return _distinct(pairs, ["a", "b"], pair_schema), _distinct(stars, ["a", "band"], star_schema).num_rows


def default_partitions() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def near_duplicates_ray(ds, cfg: NearDupConfig | None = None, *, num_partitions: int | None = None,
                        text_column: str = "text", batch_size: int = 4096) -> pa.Table:
    """The records to drop, (id, dup_of) sorted by id, over a Ray Dataset with `id` and
    either a `minhash` column (from `MinHashStage`) or `text`.

    Runs as tasks (no actor pool, so nothing to size on a 2-CPU machine).
    `num_partitions` hash partitions of the band rows are each sorted in one
    task: size it so that rows x bands x ~50 bytes / num_partitions fits a
    worker. The driver holds the candidate edges, the signatures of the
    candidate documents and the components: memory ~ edges, not documents.
    Same result as `find_near_duplicates` on the same records.
    """
    import ray

    cfg = (cfg or NearDupConfig()).validate()
    partitions = num_partitions or default_partitions()
    schema = ds.schema(fetch_if_missing=False)  # known without running anything for stored shards
    if schema is not None and isinstance(getattr(schema, "base_schema", None), pa.Schema):
        check_signature_field(schema.base_schema, cfg)
    keyed = ds.map_batches(_band_rows, fn_args=(cfg, text_column, partitions), batch_format="pyarrow",
                           batch_size=batch_size)
    grouped = keyed.groupby("part", num_partitions=partitions).map_groups(
        _partition_edges, fn_args=(cfg,), batch_format="pyarrow")
    edges, oversized = _distinct_edges(grouped)
    counts = Counter(candidate_pairs=edges.num_rows, oversized_buckets=oversized)
    a_ids, b_ids = edges.column("a"), edges.column("b")
    if cfg.verify and edges.num_rows:
        wanted = pc.unique(pa.concat_arrays([a_ids.combine_chunks(), b_ids.combine_chunks()]))
        fetched = ds.map_batches(_candidate_signatures, fn_args=([ray.put(wanted)], cfg, text_column),
                                 batch_format="pyarrow", batch_size=batch_size)
        found = _collect(fetched, pa.schema([("id", pa.string()), signature_field(cfg)]))
        sig = signatures_of(found.column(SIGNATURE_COLUMN), cfg)
        ia = pc.index_in(a_ids, value_set=found.column("id").combine_chunks()).to_numpy(zero_copy_only=False)
        ib = pc.index_in(b_ids, value_set=found.column("id").combine_chunks()).to_numpy(zero_copy_only=False)
        ok = estimated_jaccard(sig[ia], sig[ib]) >= cfg.threshold
        a_ids, b_ids = a_ids.filter(pa.array(ok)), b_ids.filter(pa.array(ok))
    counts["verified_pairs"] = len(a_ids)
    nodes = pc.unique(pa.concat_arrays([a_ids.combine_chunks(), b_ids.combine_chunks()])) if len(a_ids) else pa.array([], pa.string())
    ia = pc.index_in(a_ids, value_set=nodes).to_numpy(zero_copy_only=False)
    ib = pc.index_in(b_ids, value_set=nodes).to_numpy(zero_copy_only=False)
    rep = smallest_in_components(nodes, ia, ib)
    dropped = rep != np.arange(len(nodes))
    table = pa.table({"id": nodes.filter(pa.array(dropped)), "dup_of": nodes.take(pa.array(rep[dropped]))},
                     schema=DROPPED_SCHEMA).sort_by("id")
    counts[REASON] = table.num_rows
    return _with_counts(table, counts)
