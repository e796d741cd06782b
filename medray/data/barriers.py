"""The pipeline's global steps: exact duplicates, near duplicates and node counts over the whole corpus.

Each reads only the few columns it needs from the previous phase's shards
and writes its decisions split per shard (`work/<name>/<shard>.parquet`),
so the next phase reads only its own shard's decisions. Exact dedup groups
records by text hash with Ray Data's hash shuffle: nothing the size of the
corpus is ever gathered on the driver. The first record in input order
(file, then line) is the one kept.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from medray import storage
from medray.data.io import ORDER_BITS, shard_name
from medray.data.layout import Layout
from medray.data.phases import DECISION_SCHEMA

PARTITION_BYTES = 64 << 20  # shuffle rows one task sorts at once: bounds a worker's memory at any corpus size
EXACT_ROW_BYTES = 48  # text_hash, _order and an id of ~30 characters
NEAR_ROW_BYTES = 56  # per band: part, band, key and a 20-digit order id


def shuffle_partitions(rows: int, row_bytes: int, cpus: int) -> int:
    """Hash partitions for a barrier shuffle: at least one per CPU, and enough that none holds more
    than `PARTITION_BYTES`, so a worker's memory does not grow with the corpus."""
    return max(1, cpus, -(-rows * row_bytes // PARTITION_BYTES))


def shard_of_order(order: pa.Array, chunk_lines: int) -> pa.Array:
    """The shard holding each record, from its order key (file index, line)."""
    import numpy as np

    order = np.asarray(order, dtype=np.int64)
    files = order >> ORDER_BITS
    chunks = ((order & ((1 << ORDER_BITS) - 1)) - 1) // chunk_lines
    return pa.array([shard_name(int(f), int(c)) for f, c in zip(files, chunks)], pa.string())


def _duplicates_in_group(group: pa.Table) -> pa.Table:
    """All records of one hash group but the first in input order, each pointing at that first one."""
    if group.num_rows < 2:
        return pa.table({"id": pa.array([], pa.string()), "dup_of": pa.array([], pa.string()),
                         "_order": pa.array([], pa.int64())})
    group = group.sort_by("_order")
    first = group.column("id")[0].as_py()
    rest = group.slice(1)
    return pa.table({"id": rest.column("id"), "dup_of": pa.array([first] * rest.num_rows, pa.string()),
                     "_order": rest.column("_order")})


def _tables(ds) -> list[pa.Table]:
    """A (small) Ray dataset's blocks on the driver, as Arrow tables."""
    return [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
            for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)]


def write_decisions(decisions: pa.Table, folder: str, chunk_lines: int) -> int:
    """Split (id, dup_of, _order) rows by shard and write one decision file per shard that has any."""
    if not decisions.num_rows:
        return 0
    decisions = decisions.append_column("shard", shard_of_order(decisions.column("_order"), chunk_lines))
    decisions = decisions.sort_by([("shard", "ascending"), ("_order", "ascending")])
    shards = decisions.column("shard").to_pylist()
    start = 0
    for end in range(1, len(shards) + 1):
        if end == len(shards) or shards[end] != shards[start]:
            part = decisions.slice(start, end - start).select(["id", "dup_of"]).cast(DECISION_SCHEMA)
            storage.write_parquet(part, storage.join(folder, f"{shards[start]}.parquet"))
            start = end
    return decisions.num_rows


def exact_duplicates(layout: Layout, chunk_lines: int, num_partitions: int) -> dict:
    """Group every record by its normalised-text hash (distributed) and record all but the first."""
    import ray

    folder = layout.work("read")
    files = storage.list_files(folder, suffixes=(".parquet",))
    ds = ray.data.read_parquet(files).select_columns(["id", "_order", "text_hash"])
    dups = ds.groupby("text_hash", num_partitions=num_partitions).map_groups(_duplicates_in_group, batch_format="pyarrow")
    tables = [t for t in _tables(dups) if t.num_rows]
    decisions = pa.concat_tables(tables) if tables else pa.table({"id": pa.array([], pa.string()),
                                                                  "dup_of": pa.array([], pa.string()),
                                                                  "_order": pa.array([], pa.int64())})
    written = write_decisions(decisions, layout.work("exact"), chunk_lines)
    return {"duplicates": written}


def near_duplicates(layout: Layout, chunk_lines: int, names: list[str], config, num_partitions: int | None = None) -> dict:
    """MinHash LSH over the signatures the clean phase computed; all but the first of each cluster go."""
    import ray

    from medray.data.near_dup_ray import near_duplicates_ray

    files = storage.list_files(layout.work("clean"), suffixes=(".parquet",))
    ds = ray.data.read_parquet(files).select_columns(["_order", "minhash"])
    # zero-padded order keys as ids: "keep the smallest id" then keeps the first occurrence
    ds = ds.map_batches(_order_ids, batch_format="pyarrow")
    found = near_duplicates_ray(ds, config, num_partitions=num_partitions)
    if not found.num_rows:
        return {"duplicates": 0}
    order = pc.cast(found.column("id"), pa.int64())
    decisions = pa.table({"id": record_ids(order, names), "dup_of": record_ids(pc.cast(found.column("dup_of"), pa.int64()), names),
                          "_order": order})
    return {"duplicates": write_decisions(decisions, layout.work("near"), chunk_lines)}


def _order_ids(batch: pa.Table) -> pa.Table:
    ids = pc.utf8_lpad(pc.cast(batch.column("_order"), pa.string()), 20, "0")
    return pa.table({"id": pa.array(ids, pa.string()), "minhash": batch.column("minhash")})


def record_ids(order: pa.Array | pa.ChunkedArray, names: list[str]) -> pa.Array:
    """Record ids (`<file>:<line>`) from order keys, given the input files' names by index."""
    mask = (1 << ORDER_BITS) - 1
    return pa.array([f"{names[o >> ORDER_BITS]}:{o & mask}" for o in order.to_pylist()], pa.string())


def merge_counts(layout: Layout, name: str) -> pa.Table:
    """Sum the per-shard node counts (node_id, docs, tokens) of a phase."""
    from medray.data.tree_counts import merge_counts as merge

    folder = layout.work(name)
    if not storage.exists(folder):
        return merge([])
    merged = merge([])
    files = storage.list_files(folder, suffixes=(".parquet",))
    for i in range(0, len(files), 64):  # a running sum: memory stays at the size of the node table
        merged = merge([merged, *(storage.read_parquet(uri) for uri in files[i:i + 64])])
    return merged


def sampling_plan(layout: Layout, config, tree=None):
    """The tree-guided sampling plan: multipliers from the node counts, then its scale calibrated
    over the tagged shards (distributed) so the expected output is exactly `target` x the input."""
    import ray

    from medray.data.sample import SamplingPlan, merge_profiles

    counts = merge_counts(layout, "counts")
    plan = SamplingPlan.from_counts(counts, config, tree)
    files = storage.list_files(layout.work("tagged"), suffixes=(".parquet",))
    ds = ray.data.read_parquet(files).select_columns(["id", "nodes", "n_words"])
    profiles = ds.map_batches(_Profile, fn_constructor_args=(plan,), batch_format="pyarrow", batch_size=None,
                              compute=ray.data.ActorPoolStrategy(size=1))
    tables = _tables(profiles)
    return counts, plan.calibrate(merge_profiles(tables))


class _Profile:
    def __init__(self, plan):
        self.plan = plan

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.plan.profile(batch)
