"""MedTrim triplet mining: per mini-batch, every record an anchor with its best positive and a
semi-hard negative (arXiv 2504.15929; reference: icon-lab/MedTrim ``TripletGenerator.APNFinder``).

The pool is dealt into mini-batches by a seeded shuffle of its sorted ids: the record at shuffled
position p of n goes to batch p * m // n with m = ceil(n / batch_size), so batches hold
batch_size or slightly fewer records, differ by at most one, and no batch is a lone straggler.
The deal depends on (seed, the set of ids) only, never on input order, workers or blocks, so
`mine_pool` (in-process) and `mine_dataset` (Ray Data, one `map_groups` call per mini-batch) give
the same table. Within a batch, for each anchor (S from medray/medtrim/score.py, rounded to 12
decimals so that equal scores compare equal):

- positive: the other record with the highest S; ties go to the earlier shuffled position.
- negative: among the rest, those with S < tau_max and S below the positive's S (an equally
  similar "negative" would ask the model to separate what the score calls alike; the reference
  allows it). Semi-hard ones, tau_min <= S, come first: the LOWEST S among them, as the reference
  picks (`semi_hard_pick: highest` takes the hardest instead). None semi-hard: the highest S below
  tau_max, flagged `negative_fallback`. None at all: the anchor is rejected `no_negative` (the
  reference crashes there); the record still serves as positive or negative for others.

Unlike the reference (one random anchor per sampled mini-batch, with replacement), every record is
an anchor once per pass. Rejects (id, reason, detail): `bad_entities` (null, not JSON, malformed),
`missing_id`, `duplicate_id` (every copy: which one is meant is unknowable), `pool_too_small`
(fewer valid records than batch_size: every record, nothing mined), `no_negative` and
`no_positive` (a mini-batch of one; the deal never makes one from a pool of at least batch_size).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray import storage
from medray.errors import MedrayError
from medray.medtrim.score import canonical_json, parse_entities, resolve_weights, score_matrix
from medray.medtrim.settings import MiningConfig, ScoreConfig

TRIPLET_SCHEMA = pa.schema([("anchor_id", pa.string()), ("positive_id", pa.string()),
                            ("negative_id", pa.string()), ("s_pos", pa.float64()), ("s_neg", pa.float64()),
                            ("negative_fallback", pa.bool_()), ("batch", pa.int64())])
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
# One row per anchor from a mini-batch: a triplet when `reason` is null, else a reject.
_OUTCOME_SCHEMA = pa.schema(list(TRIPLET_SCHEMA) + [("position", pa.int64()), ("reason", pa.string()),
                                                     ("detail", pa.string())])
_PARSED_SCHEMA = pa.schema([("id", pa.string()), ("entities", pa.string()), ("reason", pa.string()),
                            ("detail", pa.string())])


@dataclass
class MiningResult:
    triplets: pa.Table  # TRIPLET_SCHEMA, ordered by (batch, anchor's shuffled position)
    rejects: pa.Table  # REJECT_SCHEMA, ordered by (id, reason)
    counts: dict = field(default_factory=dict)


def _parse_table(table: pa.Table, id_column: str = "id", entities_column: str = "entities") -> pa.Table:
    """Each input row as (id, canonical entities JSON) or (id, reason, detail)."""
    rows = []
    for rid, cell in zip(table.column(id_column).to_pylist(), table.column(entities_column).to_pylist()):
        if rid is None or rid == "":
            rows.append(("", None, "missing_id", f"row without an id (entities {str(cell)[:80]!r})"))
            continue
        try:
            rows.append((str(rid), canonical_json(parse_entities(cell)), None, None))
        except ValueError as exc:
            rows.append((str(rid), None, "bad_entities", str(exc)[:300]))
    return pa.table(list(zip(*rows)) if rows else [[]] * 4, schema=_PARSED_SCHEMA)


def assign_batches(ids: list[str], batch_size: int, seed: int) -> pa.Table:
    """(id, position, batch) for unique ids: a seeded shuffle of the sorted ids, dealt in order."""
    ordered = sorted(ids)
    n = len(ordered)
    position = np.empty(n, dtype=np.int64)
    position[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    m = max(1, math.ceil(n / batch_size))
    return pa.table({"id": pa.array(ordered, pa.string()), "position": pa.array(position),
                     "batch": pa.array(position * m // max(n, 1))})


def _pick_negative(row: np.ndarray, cand: np.ndarray, s_pos: float, cfg: MiningConfig) -> tuple[int, bool] | None:
    """(index, fallback) of the negative among candidate columns of one anchor's score row."""
    below = cand & (row < cfg.tau_max) & (row < s_pos)
    semi = np.flatnonzero(below & (row >= cfg.tau_min))
    if semi.size:  # argmin/argmax return the first, i.e. the earliest position, on ties
        pick = np.argmin(row[semi]) if cfg.semi_hard_pick == "lowest" else np.argmax(row[semi])
        return int(semi[pick]), False
    rest = np.flatnonzero(below)
    return (int(rest[np.argmax(row[rest])]), True) if rest.size else None


def mine_batch(table: pa.Table, mining: MiningConfig, weights: tuple[float, float, float]) -> pa.Table:
    """One mini-batch (id, entities, position, batch; any row order) to one outcome row per anchor."""
    table = table.sort_by("position")
    ids = table.column("id").to_pylist()
    positions = table.column("position").to_pylist()
    batch = table.column("batch")[0].as_py() if table.num_rows else -1
    scores = np.round(score_matrix(table.column("entities").to_pylist(), weights, dtype=np.float64), 12)
    rows = []
    for i, anchor in enumerate(ids):
        row, cand = scores[i], np.ones(len(ids), dtype=bool)
        cand[i] = False
        if not cand.any():
            rows.append((anchor, None, None, None, None, None, batch, positions[i], "no_positive",
                         f"mini-batch {batch} holds no other record"))
            continue
        p = int(np.flatnonzero(cand)[np.argmax(row[cand])])
        cand[p] = False
        negative = _pick_negative(row, cand, float(row[p]), mining)
        if negative is None:
            rows.append((anchor, ids[p], None, float(row[p]), None, None, batch, positions[i], "no_negative",
                         f"no other record in mini-batch {batch} scores below tau_max={mining.tau_max} "
                         f"and below the positive's {row[p]:.4f}"))
            continue
        j, fallback = negative
        rows.append((anchor, ids[p], ids[j], float(row[p]), float(row[j]), fallback, batch, positions[i], None, None))
    return pa.table(list(zip(*rows)) if rows else [[]] * len(_OUTCOME_SCHEMA), schema=_OUTCOME_SCHEMA)


def _rejects(ids: list[str], reason: str, details: list[str]) -> pa.Table:
    return pa.table({"id": ids, "reason": [reason] * len(ids), "detail": details}, schema=REJECT_SCHEMA)


def _plan(parsed: pa.Table, mining: MiningConfig) -> tuple[pa.Table, pa.Table]:
    """From (id, reason, detail) of every parsed row: the batch assignment of the usable ids and
    the rejects known before scoring (bad rows, duplicate ids, a pool too small)."""
    ok = pc.is_null(parsed.column("reason"))
    rejects = [parsed.filter(pc.invert(ok)).select(REJECT_SCHEMA.names).cast(REJECT_SCHEMA)]
    valid = parsed.filter(ok).column("id").to_pylist()
    seen = Counter(valid)
    copies = [i for i in valid if seen[i] > 1]
    rejects.append(_rejects(copies, "duplicate_id", [f"id appears {seen[i]} times among valid records" for i in copies]))
    unique = [i for i, c in seen.items() if c == 1]
    if len(unique) < mining.batch_size:
        detail = f"the pool has {len(unique)} valid records, fewer than mining.batch_size={mining.batch_size}"
        rejects.append(_rejects(unique, "pool_too_small", [detail] * len(unique)))
        unique = []
    return assign_batches(unique, mining.batch_size, mining.seed), pa.concat_tables(rejects)


def _result(outcomes: pa.Table, early_rejects: pa.Table, assignment: pa.Table, n_in: int,
            mining: MiningConfig) -> MiningResult:
    outcomes = outcomes.sort_by([("batch", "ascending"), ("position", "ascending")])
    done = pc.is_null(outcomes.column("reason"))
    triplets = outcomes.filter(done).select(TRIPLET_SCHEMA.names).cast(TRIPLET_SCHEMA)
    anchor_rejects = outcomes.filter(pc.invert(done)).select(["anchor_id", "reason", "detail"]).rename_columns(REJECT_SCHEMA.names)
    rejects = pa.concat_tables([early_rejects, anchor_rejects.cast(REJECT_SCHEMA)])
    rejects = rejects.sort_by([("id", "ascending"), ("reason", "ascending")])
    reasons = Counter(rejects.column("reason").to_pylist())
    counts = {"in": n_in, "anchors": assignment.num_rows, "mini_batches": len(set(assignment.column("batch").to_pylist())),
              "triplets": triplets.num_rows, "negative_fallback": int(pc.sum(triplets.column("negative_fallback")).as_py() or 0),
              "rejected": dict(sorted(reasons.items()))}
    if counts["anchors"] != triplets.num_rows + anchor_rejects.num_rows:
        raise MedrayError(f"mining: {counts['anchors']} anchors but {triplets.num_rows} triplets + "
                          f"{anchor_rejects.num_rows} anchor rejects")
    if pool := reasons.get("pool_too_small"):
        counts["error"] = f"pool of {pool} valid records is smaller than mining.batch_size={mining.batch_size}"
    return MiningResult(triplets, rejects, counts)


def _as_table(records: pa.Table | Iterable[Mapping], id_column: str, entities_column: str) -> pa.Table:
    if isinstance(records, pa.Table):
        return records
    rows = list(records)
    cells = [r.get(entities_column) for r in rows]
    cells = [c if c is None or isinstance(c, (str, bytes)) else json.dumps(c, default=sorted) for c in cells]
    return pa.table({id_column: pa.array([r.get(id_column) for r in rows], pa.string()),
                     entities_column: pa.array(cells, pa.string())})


def _checked(mining: MiningConfig | None, score: ScoreConfig | None) -> tuple[MiningConfig, tuple]:
    mining = mining or MiningConfig()
    mining.check()
    (score or ScoreConfig()).check()
    return mining, resolve_weights(score)


def mine_pool(records: pa.Table | Iterable[Mapping], mining: MiningConfig | None = None,
              score: ScoreConfig | None = None, *, id_column: str = "id",
              entities_column: str = "entities") -> MiningResult:
    """Mine a pool in this process: records are a table or dicts with an id and an entities cell
    (JSON string or mapping). Same triplets as `mine_dataset` on the same records."""
    mining, weights = _checked(mining, score)
    table = _as_table(records, id_column, entities_column)
    parsed = _parse_table(table, id_column, entities_column)
    assignment, early = _plan(parsed, mining)
    keyed = _keyed(parsed, assignment)
    outcomes = [mine_batch(keyed.filter(pc.equal(keyed.column("batch"), b)), mining, weights)
                for b in sorted(set(keyed.column("batch").to_pylist()))]
    outcomes = pa.concat_tables(outcomes) if outcomes else _OUTCOME_SCHEMA.empty_table()
    return _result(outcomes, early, assignment, table.num_rows, mining)


def _keyed(parsed: pa.Table, assignment: pa.Table) -> pa.Table:
    """The assigned rows of a parsed table with their position and batch (others dropped)."""
    where = pc.index_in(parsed.column("id"), value_set=assignment.column("id"))
    keep = pc.and_(pc.is_valid(where), pc.is_null(parsed.column("reason")))
    rows, where = parsed.filter(keep), where.filter(keep)
    return pa.table({"id": rows.column("id"), "entities": rows.column("entities"),
                     "position": assignment.column("position").take(where),
                     "batch": assignment.column("batch").take(where)})


def _keyed_batch(batch: pa.Table, assignment_ref: list) -> pa.Table:
    import ray

    return _keyed(batch, ray.get(assignment_ref[0]))


def _collect(ds, schema: pa.Schema) -> pa.Table:
    tables = [t for t in ds.iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables]) if tables else schema.empty_table()


def _prefer_sort_shuffle(ds) -> None:
    """Group by sorting, in tasks: a mini-batch is a few kB, and the hash shuffle's actors cost
    seconds to start on every run. `materialize()` gave `ds` its own context, so the caller's
    datasets keep theirs."""
    try:
        from ray.data.context import ShuffleStrategy
    except ImportError:  # older Ray: the sort shuffle is the only one
        return
    ds.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED


def mine_dataset(ds, mining: MiningConfig | None = None, score: ScoreConfig | None = None, *,
                 id_column: str = "id", entities_column: str = "entities",
                 num_partitions: int | None = None) -> MiningResult:
    """Mine a Ray Dataset of (id, entities) rows: parse in parallel, deal on the driver (ids only),
    then one `map_groups` task per mini-batch. Memory on the driver: the ids and the outcomes."""
    import ray

    mining, weights = _checked(mining, score)
    parsed = ds.map_batches(_parse_table, fn_args=(id_column, entities_column), batch_format="pyarrow").materialize()
    heads = _collect(parsed.select_columns(REJECT_SCHEMA.names), REJECT_SCHEMA)
    assignment, early = _plan(heads, mining)
    if assignment.num_rows:
        _prefer_sort_shuffle(parsed)
        keyed = parsed.map_batches(_keyed_batch, fn_args=([ray.put(assignment)],), batch_format="pyarrow")
        partitions = num_partitions or max(1, int(ray.cluster_resources().get("CPU", 1)))
        mined = keyed.groupby("batch", num_partitions=partitions).map_groups(
            mine_batch, fn_args=(mining, weights), batch_format="pyarrow")
        outcomes = _collect(mined, _OUTCOME_SCHEMA)
    else:
        outcomes = _OUTCOME_SCHEMA.empty_table()
    return _result(outcomes, early, assignment, heads.num_rows, mining)


def write_mining(result: MiningResult, out: str, configs: dict | None = None) -> dict:
    """`out/triplets.parquet`, `out/rejects.parquet` and `out/summary.json` (counts and configs)."""
    storage.makedirs(out)
    storage.write_parquet(result.triplets, storage.join(out, "triplets.parquet"))
    storage.write_parquet(result.rejects, storage.join(out, "rejects.parquet"))
    summary = {"counts": result.counts, **(configs or {})}
    storage.write_text(storage.join(out, "summary.json"), json.dumps(summary, indent=2))
    return summary


def run_mining(pool: str, out: str, mining: MiningConfig | None = None, score: ScoreConfig | None = None, *,
               id_column: str = "id", entities_column: str = "entities") -> dict:
    """The mining job: parquet pool (local or s3://) in, triplet table and rejects out, on Ray.

    A pool smaller than one mini-batch still writes its rejects, then raises MedrayError naming
    the pool size and batch_size: nothing can be trained from it.
    """
    import ray

    from medray.runtime import init_ray

    mining, score = mining or MiningConfig(), score or ScoreConfig()
    _checked(mining, score)
    files = storage.list_files(pool, suffixes=(".parquet",))
    if not files:
        raise MedrayError(f"{pool}: no .parquet files in the pool")
    init_ray()
    ds = ray.data.read_parquet(files).select_columns([id_column, entities_column])
    result = mine_dataset(ds, mining, score, id_column=id_column, entities_column=entities_column)
    summary = write_mining(result, out, {"mining": asdict(mining), "score": asdict(score), "pool": pool})
    if "error" in result.counts:
        raise MedrayError(f"{pool}: {result.counts['error']} (records in {storage.join(out, 'rejects.parquet')})")
    return summary
