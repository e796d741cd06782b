"""Near-duplicate removal over a Ray Dataset: the same clusters as the local run, at corpus scale.

Why a module of its own: the distributed path is Ray plumbing (hash
partitions, tasks, driver-side collection) around the array work of
`near_dup_pairs`, and only the pipeline's near-dup barrier needs it.

The band rows are grouped in `num_partitions` hash partitions (one
vectorised call per partition, not one Python call per bucket), candidate
pairs come back to the driver, the signatures of the candidate documents
only are fetched for verification, and connected components run on the
driver: its memory grows with the number of candidate edges and candidate
documents, not with the corpus.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.data.dedup import (
    REASON,
    SIGNATURE_COLUMN,
    NearDupConfig,
    check_signature_field,
    signature_array,
    signature_field,
    signatures_of,
)
from medray.data.minhash import band_keys, has_words, minhash_signatures
from medray.data.near_dup_pairs import (
    bucket_pairs,
    bucket_starts,
    estimated_jaccard,
    smallest_in_components,
    with_counts,
)
from medray.errors import MedrayError

DROPPED_SCHEMA = pa.schema([("id", pa.string()), ("dup_of", pa.string())])
_BAND_ROWS = pa.schema([("part", pa.int64()), ("band", pa.int32()), ("key", pa.uint64()), ("id", pa.string())])
_EDGES = pa.schema([("a", pa.string()), ("b", pa.string()), ("band", pa.int32()), ("star", pa.bool_())])


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
    rows = np.flatnonzero(has_words(sig))
    keys = band_keys(sig[rows], cfg).ravel()
    ids = batch.column("id").cast(pa.string()).take(pa.array(np.repeat(rows, cfg.bands)))
    return pa.table({"part": (keys % np.uint64(partitions)).astype(np.int64),
                     "band": np.tile(np.arange(cfg.bands, dtype=np.int32), len(rows)),
                     "key": keys, "id": ids}, schema=_BAND_ROWS)


def _partition_edges(rows: pa.Table, cfg: NearDupConfig) -> pa.Table:
    rows = rows.take(pc.sort_indices(rows, [("band", "ascending"), ("key", "ascending"), ("id", "ascending")]))
    band, key = rows.column("band").to_numpy(), rows.column("key").to_numpy()
    new = bucket_starts(band, key)
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


def _endpoints(a_ids: pa.ChunkedArray, b_ids: pa.ChunkedArray) -> pa.Array:
    """The distinct ids at either end of the edges."""
    return pc.unique(pa.concat_arrays([a_ids.combine_chunks(), b_ids.combine_chunks()]))


def _positions(ids: pa.ChunkedArray, value_set: pa.Array) -> np.ndarray:
    """The index of each of `ids` in `value_set`."""
    return pc.index_in(ids, value_set=value_set).to_numpy(zero_copy_only=False)


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
        wanted = _endpoints(a_ids, b_ids)
        fetched = ds.map_batches(_candidate_signatures, fn_args=([ray.put(wanted)], cfg, text_column),
                                 batch_format="pyarrow", batch_size=batch_size)
        found = _collect(fetched, pa.schema([("id", pa.string()), signature_field(cfg)]))
        sig = signatures_of(found.column(SIGNATURE_COLUMN), cfg)
        found_ids = found.column("id").combine_chunks()
        ok = estimated_jaccard(sig[_positions(a_ids, found_ids)], sig[_positions(b_ids, found_ids)]) >= cfg.threshold
        a_ids, b_ids = a_ids.filter(pa.array(ok)), b_ids.filter(pa.array(ok))
    counts["verified_pairs"] = len(a_ids)
    nodes = _endpoints(a_ids, b_ids) if len(a_ids) else pa.array([], pa.string())
    rep = smallest_in_components(nodes, _positions(a_ids, nodes), _positions(b_ids, nodes))
    dropped = rep != np.arange(len(nodes))
    table = pa.table({"id": nodes.filter(pa.array(dropped)), "dup_of": nodes.take(pa.array(rep[dropped]))},
                     schema=DROPPED_SCHEMA).sort_by("id")
    counts[REASON] = table.num_rows
    return with_counts(table, counts)
