"""MedTrim's training data, prepared once on the driver: pairs -> OBER meta-entities -> mined triplets.

Why a separate step: OBER and mining look at the whole pool (a triplet's members come from one
mining mini-batch), so they cannot run inside a worker's shard; done here they also run once per
run instead of once per restart, and a bad record becomes a reject with its id instead of a crash
mid-run. The steps:

1. `read_records`: `read_pairs` (bad images, missing or empty reports are its rejects), the pairs
   of `data.split`, OBER over `data.text_column` (in the driver for small inputs, on a Ray Data
   actor pool from `data.ray_from_rows` pairs); a text OBER finds no words in is an `empty_report`.
2. `mine_triplets`, once per pass (`data.epochs_of_triplets`, pass k with seed mining.seed + k):
   `mine_pool` (or `mine_dataset` on Ray Data for large pools), then each triplet gets its three
   members' image paths and texts, so a worker needs nothing but its rows.

Under the run folder: `prepared/records.parquet` (id, image_path, text, entities),
`prepared/triplets/pass-NNNNN.parquet`, `rejects/rejects.parquet` (id, stage, reason, detail,
path, pass) and `prepared/_manifest.json`, written last, with the counts and a fingerprint of the
input listing (names, sizes, mtimes) and the settings. A run that finds the same fingerprint
reuses the files, so a relaunched job trains on exactly the same triplets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from medray import storage
from medray.config import to_dict
from medray.errors import ConfigError, MedrayError
from medray.medtrim.job_settings import MedTrimDataConfig
from medray.medtrim.mine import TRIPLET_SCHEMA, mine_dataset, mine_pool
from medray.medtrim.ober import EMPTY_REPORT, OberStage
from medray.mm.pairs import read_pairs

FORMAT_VERSION = 1
PREPARED, REJECTS, MANIFEST = "prepared", "rejects", "_manifest.json"
ROLES = ("anchor", "positive", "negative")
RECORD_SCHEMA = pa.schema([("id", pa.string()), ("image_path", pa.string()), ("text", pa.string()),
                           ("entities", pa.string())])
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
                           ("detail", pa.string()), ("path", pa.string()), ("pass", pa.int32())])
OBER_BATCH_ROWS = 256


def member_columns(roles: tuple[str, ...] = ROLES) -> list[str]:
    """The columns a worker reads: each member's id, image path and text."""
    return [f"{role}_{part}" for role in roles for part in ("id", "image", "text")]


@dataclass
class PreparedData:
    records: str  # parquet of RECORD_SCHEMA
    triplets: list[str]  # one parquet per pass, in pass order: the training order
    rejects: str
    counts: dict = field(default_factory=dict)
    reused: bool = False
    manifest: str = ""


def _rejects(ids, stage: str, reasons, details, paths, pass_index: int | None = None) -> pa.Table:
    n = len(ids)
    return pa.table({"id": ids, "stage": [stage] * n, "reason": reasons, "detail": details, "path": paths,
                     "pass": [pass_index] * n}, schema=REJECT_SCHEMA)


def _ober(pairs: pa.Table, data: MedTrimDataConfig) -> pa.Table:
    """(id, entities); entities null where OBER found no words."""
    source = pairs.select(["id", data.text_column])
    if pairs.num_rows < data.ray_from_rows:
        tagged = [OberStage(data.ober, data.text_column)(source)]
    else:
        import ray.data

        blocks = [source.slice(i, OBER_BATCH_ROWS) for i in range(0, source.num_rows, OBER_BATCH_ROWS)]
        ds = ray.data.from_arrow(blocks).map_batches(
            OberStage, fn_constructor_args=(data.ober, data.text_column), batch_size=OBER_BATCH_ROWS,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=data.ober_actors), num_cpus=1)
        tagged = list(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    return pa.concat_tables([t.select(["id", "entities"]) for t in tagged])


def read_records(data: MedTrimDataConfig, progress: Callable[[str], None] = print) -> tuple[pa.Table, pa.Table, dict]:
    """(records, rejects, counts) of `data.split`: the pairs OBER can read, with their entities JSON."""
    pairs, pair_rejects = read_pairs(data.pairs, check_images=data.check_images)
    rejects = [_rejects(pair_rejects.column("id"), "pairs", pair_rejects.column("reason"), pair_rejects.column("detail"),
                        pair_rejects.column("path"))]
    splits = Counter(pairs.column("split").to_pylist())
    if data.split:
        pairs = pairs.filter(pc.equal(pairs.column("split"), data.split))
        if not pairs.num_rows:
            raise ConfigError("data.split", f"no pairs in split {data.split!r} under {data.pairs} (splits found: "
                                            f"{dict(splits)}; \"\" takes every pair)")
    progress(f"medtrim data: OBER over {pairs.num_rows} {data.text_column} texts")
    tagged = _ober(pairs, data)
    entities = tagged.column("entities").take(pc.index_in(pairs.column("id"), value_set=tagged.column("id")))
    ok = pc.is_valid(entities)
    empty = pairs.filter(pc.invert(ok))
    rejects.append(_rejects(empty.column("id"), "ober", [EMPTY_REPORT] * empty.num_rows,
                            [f"no words in {data.text_column}"] * empty.num_rows, empty.column("image_path")))
    kept = pairs.filter(ok)
    records = pa.table([kept.column("id"), kept.column("image_path"), kept.column(data.text_column),
                        entities.filter(ok)], schema=RECORD_SCHEMA)
    rejected = pa.concat_tables(rejects)
    counts = {"pairs": sum(splits.values()), "split": data.split, "in_split": pairs.num_rows,
              "records": records.num_rows, "rejected": dict(sorted(Counter(rejected.column("reason").to_pylist()).items()))}
    return records, rejected, counts


def _members(triplets: pa.Table, records: pa.Table, pass_index: int) -> pa.Table:
    out = triplets.append_column("pass", pa.array([pass_index] * triplets.num_rows, pa.int32()))
    for role in ROLES:
        where = pc.index_in(triplets.column(f"{role}_id"), value_set=records.column("id"))
        out = out.append_column(f"{role}_image", records.column("image_path").take(where))
        out = out.append_column(f"{role}_text", records.column("text").take(where))
    return out


def mine_triplets(records: pa.Table, data: MedTrimDataConfig, pass_index: int = 0) -> tuple[pa.Table, pa.Table, dict]:
    """(triplets with their members' image paths and texts, rejects, counts) of one mining pass.

    A pool smaller than one mini-batch gives no triplets, every record rejected `pool_too_small`
    and `counts["error"]`; the caller writes the rejects, then raises `pool_too_small(...)`.
    """
    mining = dataclasses.replace(data.mining, seed=data.mining.seed + pass_index)
    pool = records.select(["id", "entities"])
    if records.num_rows < data.ray_from_rows:
        result = mine_pool(pool, mining, data.score)
    else:
        import ray.data

        result = mine_dataset(ray.data.from_arrow(pool), mining, data.score)
    where = pc.index_in(result.rejects.column("id"), value_set=records.column("id"))
    rejects = _rejects(result.rejects.column("id"), "mining", result.rejects.column("reason"),
                       result.rejects.column("detail"), records.column("image_path").take(where), pass_index)
    counts = {"seed": mining.seed, **{k: v for k, v in result.counts.items() if k != "in"}}
    return _members(result.triplets.cast(TRIPLET_SCHEMA), records, pass_index), rejects, counts


def pool_too_small(counts: dict, data: MedTrimDataConfig, where: str) -> ConfigError:
    return ConfigError("data.mining.batch_size", f"{counts.get('records', 0)} usable records in split "
                       f"{data.split!r} ({counts.get('pairs', 0)} pairs read; rejects in {where}), fewer than "
                       f"data.mining.batch_size={data.mining.batch_size}: no mini-batch can be mined")


# ---- fingerprint, reuse, the whole step ---------------------------------------------------------


def fingerprint(data: MedTrimDataConfig) -> str:
    """What the prepared files depend on: the files under the pairs root, the OBER tree and the settings."""
    settings = {k: v for k, v in to_dict(data).items() if k not in ("ray_from_rows", "ober_actors")}
    digest = hashlib.sha256(json.dumps({"version": FORMAT_VERSION, "settings": settings}, sort_keys=True).encode())
    storage.listing_digest(data.pairs, digest)
    if data.ober.tree:
        storage.listing_digest(data.ober.tree, digest)
    return digest.hexdigest()[:20]


def _reusable(manifest_uri: str, fp: str, root: str, rejects_uri: str) -> dict | None:
    try:
        manifest = json.loads(storage.read_text(manifest_uri))
    except (MedrayError, OSError, ValueError):
        return None
    files = [storage.join(root, f) for f in (manifest.get("records"), *manifest.get("triplets", [])) if f]
    if manifest.get("fingerprint") != fp or not all(storage.exists(f) for f in (*files, rejects_uri)):
        return None
    return manifest


def prepare(data: MedTrimDataConfig, run_dir: str, progress: Callable[[str], None] = print) -> PreparedData:
    """Records and every pass's triplets under `run_dir/prepared/`, rejects under `run_dir/rejects/`,
    or what an earlier run with the same inputs and settings left there."""
    root, rejects_uri = storage.join(run_dir, PREPARED), storage.join(run_dir, REJECTS, "rejects.parquet")
    manifest_uri = storage.join(root, MANIFEST)
    fp = fingerprint(data)
    manifest = _reusable(manifest_uri, fp, root, rejects_uri)
    if manifest is not None:
        progress(f"medtrim data: reusing {manifest['counts']['triplets']} prepared triplets")
        return PreparedData(storage.join(root, manifest["records"]), [storage.join(root, f) for f in manifest["triplets"]],
                            rejects_uri, manifest["counts"], reused=True, manifest=manifest_uri)
    for folder in (root, storage.join(run_dir, REJECTS)):
        storage.delete(folder)
    records, rejects, counts = read_records(data, progress)
    passes, tables = [], []
    for k in range(data.epochs_of_triplets):
        progress(f"medtrim data: mining pass {k + 1}/{data.epochs_of_triplets} over {records.num_rows} records")
        triplets, mined_rejects, pass_counts = mine_triplets(records, data, k)
        rejects = pa.concat_tables([rejects, mined_rejects])
        if "error" in pass_counts:  # the pool is smaller than a mini-batch: every pass would say so
            break
        tables.append(triplets)
        passes.append(pass_counts)
    rejects = rejects.sort_by([("stage", "ascending"), ("id", "ascending"), ("pass", "ascending")])
    storage.write_parquet(rejects, rejects_uri)
    if not tables:
        raise pool_too_small(counts, data, rejects_uri)
    storage.write_parquet(records, storage.join(root, "records.parquet"))
    names = [f"triplets/pass-{k:05d}.parquet" for k in range(len(tables))]
    for name, table in zip(names, tables):
        storage.write_parquet(table, storage.join(root, name))
    counts.update(passes=passes, triplets=sum(t.num_rows for t in tables),
                  rejected=dict(sorted(Counter(rejects.column("reason").to_pylist()).items())))
    manifest = {"fingerprint": fp, "pairs": data.pairs, "records": "records.parquet", "triplets": names,
                "counts": counts}
    storage.write_text(manifest_uri, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return PreparedData(storage.join(root, "records.parquet"), [storage.join(root, n) for n in names], rejects_uri,
                        counts, manifest=manifest_uri)
