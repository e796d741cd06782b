"""The matcher on Ray Data: an actor pool that deserialises one shared matcher per actor.

The matcher goes to the object store once (`ray.put`); each actor fetches
it when it starts, never per batch, so a 170k-term automaton costs one
rebuild per actor however long the corpus is.
"""

from __future__ import annotations

import pyarrow as pa

from medray.met.matcher import Matcher

COUNT_SCHEMA = pa.schema([("node_id", pa.string()), ("assertion", pa.string()), ("count", pa.int64())])


class MentionCounter:
    """Per batch: mentions per (node, assertion); summed later with a groupby."""

    def __init__(self, matcher_ref: list, text_column: str = "text"):
        import ray

        self.matcher: Matcher = ray.get(matcher_ref[0])  # wrapped in a list so Ray passes the ref
        self.text_column = text_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        hits = self.matcher.match_batch(batch.column(self.text_column))
        if not hits.num_rows:
            return COUNT_SCHEMA.empty_table()
        grouped = hits.group_by(["node_id", "assertion"]).aggregate([("doc", "count")])
        return pa.table({"node_id": grouped["node_id"], "assertion": grouped["assertion"],
                         "count": grouped["doc_count"].cast(pa.int64())}, schema=COUNT_SCHEMA)


def default_actors() -> int:
    """One matcher actor per CPU, less one CPU left for reading (a full pool would starve the reads)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)


def count_mentions_ray(dataset, matcher: Matcher, text_column: str = "text", actors: int | None = None,
                       batch_size: int = 1024, num_partitions: int | None = None) -> pa.Table:
    """(node_id, assertion, count) over a Ray Dataset, tagged by a pool of matcher actors."""
    import ray
    from ray.data import ActorPoolStrategy

    actors = actors or default_actors()
    ref = ray.put(matcher)
    counted = dataset.map_batches(
        MentionCounter, fn_constructor_args=([ref], text_column), batch_format="pyarrow",
        batch_size=batch_size, compute=ActorPoolStrategy(size=actors), num_cpus=1,
    )
    tables = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
              for b in counted.groupby(["node_id", "assertion"], num_partitions=num_partitions or actors).sum("count").iter_batches(batch_format="pyarrow")]
    if not tables:
        return COUNT_SCHEMA.empty_table()
    merged = pa.concat_tables(tables)
    return pa.table({"node_id": merged["node_id"], "assertion": merged["assertion"],
                     "count": merged["sum(count)"].cast(pa.int64())}, schema=COUNT_SCHEMA)


def present_counts(counts: pa.Table) -> dict[str, int]:
    """Mentions that assert the entity (absent ones are not data about it)."""
    out: dict[str, int] = {}
    for nid, assertion, n in zip(*(counts[c].to_pylist() for c in ("node_id", "assertion", "count"))):
        if assertion != "absent":
            out[nid] = out.get(nid, 0) + n
    return out
