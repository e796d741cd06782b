"""The text pipeline as one job: streaming phases on Ray Data actor pools, global steps between them.

    read -> [exact dedup] -> clean -> [near dup] -> tag -> [node counts] -> finish

Each phase maps its units (input files, then shards) over a pool of
actors with `map_batches`; an actor builds the phase's stages once
(matcher, classifier, tokenizer) and then processes whole shards, so a
shard's records are read once, written once, and memory stays at a few
shards per worker however large the corpus. Units already done (their
stats file exists) are skipped: a re-run after a crash resumes, and since
every name, id and random draw derives from the input and the config, the
output equals an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict

from medray import storage
from medray.config import to_dict
from medray.data.io import discover_inputs
from medray.data.layout import Layout
from medray.data.phases import PHASES, PhaseContext
from medray.data.settings import DataPipelineConfig
from medray.errors import MedrayError

OUTPUT_FOLDERS = ("docs", "packed", "rejects", "filtered", "stats", "work")
_NOT_FINGERPRINTED = ("resume", "workers", "tracking", "keep_work")


class PhaseWorker:
    """A Ray Data actor: one phase's stages, set up once, run over one unit per call."""

    def __init__(self, phase: str, ctx_ref: list):
        import ray

        self.phase = PHASES[phase](ray.get(ctx_ref[0]))

    def __call__(self, batch):
        import pyarrow as pa

        stats = [json.dumps(self.phase.run(json.loads(unit))) for unit in batch.column("unit").to_pylist()]
        return pa.table({"stats": pa.array(stats, pa.string())})


def _map_units(phase: str, units: list[dict], ctx: PhaseContext, workers: int, progress) -> list[dict]:
    import ray
    from ray.data import ActorPoolStrategy

    if not units:
        return []
    ref = ray.put(ctx)
    items = ray.data.from_items([{"unit": json.dumps(u)} for u in units], override_num_blocks=len(units))
    mapped = items.map_batches(PhaseWorker, fn_constructor_args=(phase, [ref]), batch_size=1, batch_format="pyarrow",
                               compute=ActorPoolStrategy(size=max(1, min(workers, len(units)))), num_cpus=1)
    results: list[dict] = []
    done = 0
    for batch in mapped.iter_batches(batch_format="pyarrow", batch_size=None):
        for stats in batch.column("stats").to_pylist():
            results.extend(json.loads(stats))
            done += 1
            progress(f"{phase}: {done}/{len(units)} units")
    return results


def _fingerprint(cfg: DataPipelineConfig, inputs) -> str:
    settings = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_FINGERPRINTED}
    files = []
    for f in inputs:
        fs, path = storage.filesystem_for(f.uri)
        files.append((f.name, fs.get_file_info(path).size))
    return hashlib.sha256(json.dumps([settings, files], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _prepare_out(cfg: DataPipelineConfig, layout: Layout, inputs) -> None:
    """Start over (resume=false), or check that OUT holds a run of this very input and config."""
    if not cfg.resume:
        for folder in OUTPUT_FOLDERS:
            storage.delete(layout.folder(folder))
        for name in ("manifest.json", "report.json"):
            storage.delete(layout.folder(name))
    fingerprint = _fingerprint(cfg, inputs)
    previous = layout.load_marker("run")
    if previous and previous["fingerprint"] != fingerprint:
        raise MedrayError(f"{cfg.out} holds a run of another input or config: give another out, or resume=false to start over")
    layout.save_marker("run", {"fingerprint": fingerprint, "inputs": [f.name for f in inputs]})


def _totals(units: list[dict]) -> dict[str, dict]:
    """Per stage: records in / kept / dropped by reason, counters, tokens and CPU seconds, summed over units."""
    out: dict[str, dict] = {}
    for unit in units:
        for s in unit["stages"]:
            t = out.setdefault(s["stage"], {"in": 0, "kept": 0, "dropped": Counter(), "counts": Counter(),
                                            "tokens_in": 0, "tokens_out": 0, "cpu_s": 0.0})
            for key in ("in", "kept", "tokens_in", "tokens_out", "cpu_s"):
                t[key] += s[key]
            t["dropped"].update(s["dropped"])
            t["counts"].update(s["counts"])
    for name, t in out.items():
        if t["in"] != t["kept"] + sum(t["dropped"].values()):
            raise MedrayError(f"stage {name}: {t['in']} in but {t['kept']} kept + {sum(t['dropped'].values())} dropped")
        t["dropped"], t["counts"] = dict(sorted(t["dropped"].items())), dict(sorted(t["counts"].items()))
        t["cpu_s"] = round(t["cpu_s"], 3)
        t["tokens_per_s_per_core"] = round(t["tokens_in"] / t["cpu_s"]) if t["cpu_s"] > 0 else None
    return out


def _records_out(results: list[dict]) -> int:
    return sum(int(r.get("outputs", {}).get("records", 0)) for r in results)


def run_pipeline(cfg: DataPipelineConfig, progress=print) -> dict:
    """Run (or resume) the pipeline; returns the report also written to OUT/report.json."""
    from medray.data import barriers
    from medray.runtime import init_ray

    cfg.check()
    start = time.perf_counter()
    layout = Layout(cfg.out)
    inputs = discover_inputs(cfg.input)
    _prepare_out(cfg, layout, inputs)
    cluster = init_ray()
    workers = cfg.workers or max(1, cluster["num_cpus"] - 1)
    cpus = max(1, cluster["num_cpus"])
    ctx = PhaseContext(cfg)
    units: list[dict] = []
    barrier_results: dict[str, dict] = {}

    def phase(name: str, todo: list[dict]) -> list[dict]:
        done = layout.done_names(name)
        if name == "read":
            finished = layout.done_names("read_files")
            todo = [{"file": u, "done_chunks": sorted(int(d.rsplit("-", 1)[1]) for d in done if d.startswith(f"part-{u['index']:05d}-"))}
                    for u in todo if f"file-{u['index']:05d}" not in finished]
        else:
            todo = [u for u in todo if u["shard"] not in done]
        progress(f"{name}: {len(todo)} units to run, {len(done)} done before")
        results = layout.load_stats(name, done) + _map_units(name, todo, ctx, workers, progress)
        units.extend(results)
        return results

    def barrier(name: str, run) -> None:
        found = layout.load_marker(name)
        if found is None:
            progress(f"{name} ...")
            found = run()
            layout.save_marker(name, found)
        barrier_results[name] = found

    read = phase("read", [asdict(f) for f in inputs])
    shards = sorted(u["unit"] for u in read)
    if cfg.enabled("exact_dedup"):
        partitions = cfg.exact_dedup.num_partitions or barriers.shuffle_partitions(
            _records_out(read), barriers.EXACT_ROW_BYTES, cpus)
        barrier("exact_dedup", lambda: barriers.exact_duplicates(layout, cfg.chunk_lines, partitions))
    clean = phase("clean", [{"shard": s} for s in shards])
    if cfg.enabled("near_dup"):
        partitions = barriers.shuffle_partitions(_records_out(clean) * cfg.near_dup.bands, barriers.NEAR_ROW_BYTES, cpus)
        barrier("near_dup", lambda: barriers.near_duplicates(layout, cfg.chunk_lines, [f.name for f in inputs],
                                                             cfg.near_dup, partitions))
    sampling = None
    if cfg.enabled("tag"):
        phase("tag", [{"shard": s} for s in shards])
    tree = None
    if cfg.enabled("sample"):
        from medray.met.tree import Tree

        tree = Tree.load(cfg.tag.tree) if cfg.sample.ancestors else None
        progress("sampling plan ...")
        before, ctx.plan = barriers.sampling_plan(layout, cfg.sample, tree)
        barrier_results["sampling_plan"] = ctx.plan.summary()
    finish = phase("finish", [{"shard": s} for s in shards])
    if cfg.enabled("sample"):
        from medray.data.sample_report import sampling_report
        from medray.met.tree import Tree

        after = barriers.merge_counts(layout, "counts_after")
        sampling = sampling_report(before, after, cfg.sample, tree=tree or Tree.load(cfg.tag.tree))
    stages = _totals(units)
    manifest = _manifest(cfg, finish)
    storage.write_text(layout.folder("manifest.json"), json.dumps(manifest, indent=1, sort_keys=True))
    report = {"out": cfg.out, "inputs": len(inputs), "shards": len(shards), "stages": stages,
              "global_steps": barrier_results, "sampling": sampling, "manifest": layout.folder("manifest.json"),
              "outputs": {"docs": manifest["docs"]["rows"], "docs_tokens": manifest["docs"]["tokens"],
                          "packed_sequences": manifest["packed"]["rows"], "packed_tokens": manifest["packed"]["tokens"]},
              "seconds": round(time.perf_counter() - start, 1)}
    if not cfg.keep_work:
        storage.delete(layout.folder("work"))
    storage.write_text(layout.folder("report.json"), json.dumps(report, indent=1, sort_keys=True, default=str))
    if cfg.tracking.enabled:
        report["mlflow_run_id"] = _track(cfg, report)
    return report


def _manifest(cfg: DataPipelineConfig, finish: list[dict]) -> dict:
    units = sorted(finish, key=lambda u: u["unit"])
    docs = [{"shard": u["unit"], "rows": u["outputs"]["docs"], "tokens": u["outputs"]["tokens"]} for u in units]
    packed = [{"shard": u["unit"], **u["outputs"]["packed"]} for u in units if "packed" in u["outputs"]]
    return {
        "docs": {"folder": Layout(cfg.out).folder("docs"), "rows": sum(d["rows"] for d in docs),
                 "tokens": sum(d["tokens"] for d in docs), "shards": docs},
        "packed": {"folder": Layout(cfg.out).folder("packed"), "rows": sum(p.get("rows", 0) for p in packed),
                   "tokens": sum(p.get("tokens", 0) for p in packed), "shards": packed},
    }


def _track(cfg: DataPipelineConfig, report: dict) -> str:
    from medray.tracking import job_tracking_uri, run

    metrics: dict[str, float] = {"seconds": report["seconds"], "shards": report["shards"]}
    for stage, t in report["stages"].items():
        metrics[f"{stage}.in"], metrics[f"{stage}.kept"] = t["in"], t["kept"]
        for reason, n in t["dropped"].items():
            metrics[f"{stage}.dropped.{reason}"] = n
        for key, n in t["counts"].items():
            metrics[f"{stage}.{key}"] = n
    for key, value in (report["sampling"] or {}).items():
        if isinstance(value, dict):
            metrics.update({f"sampling.{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float))})
    with run(cfg.tracking.experiment, run_name="data-pipeline", params=to_dict(cfg),
             uri=job_tracking_uri(cfg.tracking.uri, Layout(cfg.out).folder("report.json"))) as tracked:  # the database lands in OUT
        tracked.log_metrics(metrics)
        tracked.log_dict(report, "data_report.json")
        return tracked.run_id
