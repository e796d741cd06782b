"""MedTrim sweeps on Ray Tune with ASHA: alpha, tau_min/tau_max, g0..g2 and eta, every trial in MLflow.

`run_sweep` checks the whole config, reads the pairs and runs OBER once on the driver (the part no
draw changes; its rejects go to `out/rejects.parquet`), then runs `num_samples` trials
(`medray.medtrim.tune_trial.run_trial`), `cpus_per_trial` CPUs each, under ASHA on the
validation metric, with the records shipped to trials once through the object store
(`tune.with_parameters`). MLflow gets one parent run per sweep (the search space as params) and
one child run per trial, so the UI shows a sweep's trials grouped and side by side.

Outputs under `out` (local or s3://): `best.yaml`, the best trial's full training config
(loadable by `load_config(MedTrimTrainConfig, ...)`, e.g. `medray medtrim train out/best.yaml`),
`results.json` (every trial: values, last metric, epochs run, stopped early) and `ray_results/`,
Ray Tune's own storage. The best trial is ranked on its LAST reported metric, the value it ended
on, so a trial ASHA stopped after a lucky first epoch is compared on what it had then.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import nullcontext

import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import OmegaConf
from ray import tune

from medray import console, storage, tracking
from medray.config import load_config, to_dict
from medray.errors import ConfigError, MedrayError
from medray.medtrim.data import pool_too_small, read_records
from medray.medtrim.job_settings import MedTrimTrainConfig
from medray.medtrim.train import absolute_paths
from medray.medtrim.tune_settings import MedTrimTuneConfig
from medray.medtrim.tune_trial import (
    TRIAL_PARAMS,
    SweepContext,
    finish_trial_runs,
    run_trial,
    trial_config,
    trial_values,
)

BEST_CONFIG, RESULTS, REJECTS, RAY_RESULTS = "best.yaml", "results.json", "rejects.parquet", "ray_results"


def sweep_data(train: MedTrimTrainConfig, validation_split: str,
               progress: Callable[[str], None]) -> tuple[pa.Table, pa.Table, pa.Table, dict]:
    """(training records with OBER entities, validation pairs, rejects, counts): what no draw changes."""
    from medray.mm.pairs import read_pairs

    try:
        records, rejects, counts = read_records(train.data, progress)
    except ConfigError as err:
        raise ConfigError(f"train.{err.key}", err.message, err.source) from None
    pairs, _ = read_pairs(train.data.pairs, check_images="none")  # bad images: evaluate_model's rejects
    validation = pairs.filter(pc.equal(pairs.column("split"), validation_split))
    if validation.num_rows < 2:
        found = sorted(set(pairs.column("split").to_pylist()))
        raise ConfigError("validation_split", f"{validation.num_rows} pairs in split {validation_split!r} under "
                                              f"{train.data.pairs} (splits: {found}); retrieval needs at least 2")
    counts["validation_pairs"] = validation.num_rows
    return records, validation, rejects, counts


class _Progress(tune.Callback):
    """One line per trial epoch and per finished trial, on the driver."""

    def __init__(self, progress: Callable[[str], None], metric: str, max_epochs: int):
        self.progress, self.metric, self.max_epochs = progress, metric, max_epochs

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks with the experiment state; a printer stays with this driver."""
        return {**self.__dict__, "progress": lambda msg: None}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        shown = "-" if value is None else f"{value:.4f}"
        self.progress(f"medtrim tune: {trial.trial_id} epoch {result.get('training_iteration')}: "
                      f"{self.metric}={shown} loss={result.get('loss', float('nan')):.4f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        epochs = (trial.last_result or {}).get("training_iteration", 0)
        how = "stopped by ASHA" if epochs < self.max_epochs else "done"
        self.progress(f"medtrim tune: {trial.trial_id} {how} after {epochs} epoch(s)")


def _storage(out: str) -> dict:
    uri = storage.join(out, RAY_RESULTS)
    if storage.is_remote(uri):
        fs, path = storage.filesystem_for(uri)
        return {"storage_path": path, "storage_filesystem": fs}
    return {"storage_path": os.path.abspath(os.path.expanduser(uri))}


def _fit(cfg: MedTrimTuneConfig, base: MedTrimTrainConfig, records: pa.Table, validation: pa.Table,
         sweep: SweepContext, progress: Callable[[str], None]):
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_parameters(run_trial, base=base, records=records, validation=validation, sweep=sweep)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=cfg.max_epochs,
                              grace_period=cfg.asha.grace_period, reduction_factor=cfg.asha.reduction_factor)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial}),
        param_space=cfg.search_space.param_space(),
        tune_config=tune.TuneConfig(metric=cfg.metric, mode=cfg.mode, scheduler=scheduler, num_samples=cfg.num_samples,
                                    search_alg=BasicVariantGenerator(random_state=cfg.seed), reuse_actors=True,
                                    max_concurrent_trials=cfg.max_concurrent_trials or None),
        run_config=tune.RunConfig(name=cfg.name, verbose=0, callbacks=[_Progress(progress, cfg.metric, cfg.max_epochs)],
                                  **_storage(cfg.out)))
    return tuner.fit()


def trial_rows(grid, cfg: MedTrimTuneConfig) -> list[dict]:
    """One row per trial, in trial order: id, values, last metric, epochs run, stopped early, error."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        epochs = int(metrics.get("training_iteration", 0))
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"[:2000]
        value = metrics.get(cfg.metric)
        rows.append({"trial": metrics.get("trial_id") or os.path.basename(result.path), **trial_values(result.config),
                     cfg.metric: None if value is None else float(value), "epochs": epochs,
                     "stopped_early": error is None and epochs < cfg.max_epochs, "error": error})
    return sorted(rows, key=lambda r: r["trial"])


def best_row(rows: list[dict], metric: str, mode: str) -> dict:
    ranked = [r for r in rows if r["error"] is None and r[metric] is not None and r[metric] == r[metric]]
    if not ranked:
        problems = "; ".join(f"{r['trial']}: {r['error']}" for r in rows if r["error"]) or "no trial reported"
        raise MedrayError(f"no trial reported {metric} ({problems})")
    pick = max if mode == "max" else min
    return pick(ranked, key=lambda r: r[metric])  # ties: the earlier trial


def write_best_config(cfg: MedTrimTuneConfig, best: dict) -> str:
    """The best trial's training job as a full YAML, a comment saying where it came from."""
    best_cfg = trial_config(cfg.train, best)
    header = (f"# Best trial {best['trial']} of MedTrim sweep {cfg.name!r}: {cfg.metric}={best[cfg.metric]:.6g} "
              f"after {best['epochs']} epoch(s) of {cfg.max_epochs}.\n"
              f"# Train it: medray medtrim train {storage.join(cfg.out, BEST_CONFIG)}\n")
    uri = storage.join(cfg.out, BEST_CONFIG)
    storage.write_text(uri, header + OmegaConf.to_yaml(OmegaConf.structured(best_cfg)))
    return uri


def run_sweep(cfg: MedTrimTuneConfig, progress: Callable[[str], None] = print) -> dict:
    """Run the sweep; a summary with the best trial, the output paths and the MLflow ids."""
    from medray.runtime import init_ray

    started = time.perf_counter()
    cfg.check()
    base = absolute_paths(cfg.train)  # trials run in their own directories
    records, validation, rejects, counts = sweep_data(base, cfg.validation_split, progress)
    rejects_uri = storage.join(cfg.out, REJECTS)
    storage.write_parquet(rejects, rejects_uri)
    if records.num_rows < base.data.mining.batch_size:
        raise pool_too_small(counts, base.data, rejects_uri)
    init_ray()
    uri = tracking.job_tracking_uri(cfg.tracking.uri, cfg.out) if cfg.tracking.enabled else None
    params = {"search_space": to_dict(cfg.search_space), "num_samples": cfg.num_samples, "max_epochs": cfg.max_epochs,
              "asha": to_dict(cfg.asha), "metric": cfg.metric, "mode": cfg.mode, "seed": cfg.seed,
              "train_seed": cfg.train.seed, "records": records.num_rows, "validation_pairs": validation.num_rows}
    parent_run = (tracking.run(cfg.tracking.experiment, run_name=cfg.name, params=params,
                               tags={"sweep": cfg.name, "kind": "sweep"}, uri=uri)
                  if uri else nullcontext(tracking.NoOpRun()))
    with parent_run as parent:
        sweep = SweepContext(cfg.name, cfg.tracking.experiment, uri, parent.run_id, cfg.max_epochs,
                             threads=max(1, int(cfg.cpus_per_trial)))
        progress(f"medtrim tune: {cfg.num_samples} trials over {records.num_rows} records, "
                 f"{validation.num_rows} validation pairs, ASHA on {cfg.metric} ({cfg.mode})")
        rows = trial_rows(_fit(cfg, base, records, validation, sweep, progress), cfg)
        run_ids = {}
        if uri:
            outcomes = {r["trial"]: {"epochs": r["epochs"], "stopped_early": r["stopped_early"], "error": r["error"]}
                        for r in rows}
            run_ids = finish_trial_runs(uri, parent.run_id, outcomes)
        for row in rows:
            row["mlflow_run_id"] = run_ids.get(row["trial"])
        best = best_row(rows, cfg.metric, cfg.mode)
        best_uri = write_best_config(cfg, best)
        results = {"sweep": cfg.name, "metric": cfg.metric, "mode": cfg.mode, "max_epochs": cfg.max_epochs,
                   "best_trial": best["trial"], "trials": rows}
        results_uri = storage.join(cfg.out, RESULTS)
        storage.write_text(results_uri, json.dumps(results, indent=2) + "\n")
        parent.log_metrics({f"best_{cfg.metric}": best[cfg.metric],
                            "trials_stopped_early": sum(r["stopped_early"] for r in rows),
                            "trials_failed": sum(r["error"] is not None for r in rows)})
        parent.set_tags({"best_trial": best["trial"], "best_run_id": best["mlflow_run_id"] or "-"})
        parent.log_dict(results, RESULTS)
    return {"sweep": cfg.name, "trials": len(rows), "stopped_early": sum(r["stopped_early"] for r in rows),
            "failed": sum(r["error"] is not None for r in rows), "metric": cfg.metric, "mode": cfg.mode,
            "best": {k: best[k] for k in ("trial", cfg.metric, "epochs", "mlflow_run_id", *TRIAL_PARAMS)},
            "best_config": best_uri, "results": results_uri, "rejects": rejects_uri,
            "data": {k: counts[k] for k in ("records", "validation_pairs", "rejected") if k in counts},
            "ray_results": storage.join(cfg.out, RAY_RESULTS), "tracking_uri": uri,
            "experiment": cfg.tracking.experiment if uri else None, "parent_run_id": parent.run_id,
            "seconds": round(time.perf_counter() - started, 1), "rows": rows}


def print_sweep(summary: dict) -> None:
    """The trials table (the best marked *) and the sweep's outputs."""
    metric, best = summary["metric"], summary["best"]["trial"]

    def fmt(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [(("* " if r["trial"] == best else "") + r["trial"].rsplit("_", 1)[-1], fmt(r["alpha"], 2),
             f"{fmt(r['tau_min'], 2)}-{fmt(r['tau_max'], 2)}", "/".join(fmt(r[g], 2) for g in ("g0", "g1", "g2")),
             fmt(r["eta"], 2), fmt(r[metric]), r["epochs"], "yes" if r["stopped_early"] else "no",
             "error" if r["error"] else "ok") for r in summary["rows"]]
    columns = ("trial", "alpha", "tau", "g0/g1/g2", "eta", metric, "epochs", "stopped", "status")
    console.table(f"MedTrim sweep {summary['sweep']!r}: {summary['trials']} trials, ASHA on {metric} ({summary['mode']})",
                  columns, rows)
    console.key_values("Sweep outputs", {k: summary[k] for k in (
        "best_config", "results", "rejects", "ray_results", "tracking_uri", "experiment", "parent_run_id", "seconds")})


def tune_command(conf: str, overrides: list[str] | None = None, as_json: bool = False) -> None:
    """`medray medtrim tune CONF [key=value ...]`."""
    cfg = load_config(MedTrimTuneConfig, conf, overrides or [])
    console.run_and_print(lambda progress: run_sweep(cfg, progress=progress), print_sweep, as_json)
