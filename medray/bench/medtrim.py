"""`medray bench medtrim`: MedTrim beside InfoNCE over several seeds, and a sweep beside its target.

Comparison: phantom studies are written once; for each seed, the MedTrim loss and the InfoNCE
baseline train the same job (`conf/medtrim/train_tiny.yaml` on Ray Train: same towers, data, steps,
batch size, seed) and are evaluated on the held-out `test` split. One seed is an anecdote at this
size (60 test pairs for 600 studies), so the JSON has every seed, the mean and spread per metric,
the mean difference MedTrim - InfoNCE with its spread, and how many seeds MedTrim won; chance (the
share of relevant items in the pool) is beside every Precision@R.

Sweep: `conf/medtrim/tune_tiny.yaml` (8 trials, ASHA) timed against the 15-minute target on this
machine, and its baseline, the same draws with early stopping off (every trial runs every epoch),
timed in the same process, so `asha_time_ratio` says what ASHA saved. MLflow child runs under the
sweep's parent run are counted from the tracking store, so a trial that did not log shows up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from medray.errors import ConfigError

SWEEP_TARGET_SECONDS = 15 * 60
LOSSES = ("medtrim", "infonce")
TEXT_TOWERS = ("tiny", "minilm")
HEADLINE = ("i2t", "fine", 10)  # the figure: image-to-text fine-grained Precision@10


def _train_and_evaluate(kind: str, seed: int, phantom: str, work: str, steps: int, text: str,
                        progress: Callable[[str], None]) -> dict:
    from medray.config import load_config
    from medray.medtrim.evaluate import evaluate_model, flat_metrics
    from medray.medtrim.job_settings import MedTrimTrainConfig
    from medray.medtrim.model import MINILM, MedTrimModel
    from medray.medtrim.train import train_medtrim
    from medray.mm.pairs import read_pairs

    overrides = [f"data.pairs={phantom}", f"loss.kind={kind}", f"seed={seed}", f"data.mining.seed={seed}",
                 f"max_steps={steps}", f"checkpoint.storage_path={os.path.join(work, 'train')}",
                 f"checkpoint.name={kind}-{text}-seed{seed}", "checkpoint.keep=1", "tracking.enabled=false"]
    if text == "minilm":
        overrides.append(f"medtrim_model.text.path={MINILM}")
    cfg = load_config(MedTrimTrainConfig, "medtrim/train_tiny", overrides)
    progress(f"bench medtrim: seed {seed}, {kind} loss, {steps} steps ...")
    started = time.perf_counter()
    run = train_medtrim(cfg, progress=lambda msg: None)
    pairs, _ = read_pairs(phantom, check_images="none")
    result = evaluate_model(MedTrimModel.load(run["export"]), pairs, split="test")
    return {"metrics": flat_metrics(result), "chance": result["chance"], "n": result["n"],
            "final_loss": run["final_loss"], "seconds": round(time.perf_counter() - started, 1)}


def _spread(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": round(float(arr.mean()), 4), "std": round(float(arr.std(ddof=1)) if arr.size > 1 else 0.0, 4),
            "min": round(float(arr.min()), 4), "max": round(float(arr.max()), 4)}


def summarize_comparison(per_seed: list[dict]) -> dict:
    """Mean and spread per metric and loss, the paired difference, MedTrim's wins, over seeds."""
    names = sorted(k for k in per_seed[0]["medtrim"]["metrics"] if not k.startswith("chance_"))
    summary = {kind: {name: _spread([s[kind]["metrics"][name] for s in per_seed]) for name in names} for kind in LOSSES}
    summary["medtrim_minus_infonce"] = {
        name: _spread([s["medtrim"]["metrics"][name] - s["infonce"]["metrics"][name] for s in per_seed]) for name in names}
    summary["medtrim_wins"] = {name: sum(s["medtrim"]["metrics"][name] > s["infonce"]["metrics"][name] for s in per_seed)
                               for name in names}
    return summary


def metric_name(direction: str, mode: str, rank: int) -> str:
    """The `flat_metrics` key of one Precision@R."""
    return f"{direction}_{mode}_p{rank}"


def run_comparison(phantom: str, work: str, seeds: int, steps: int, text: str,
                   progress: Callable[[str], None]) -> dict:
    per_seed = []
    for seed in range(seeds):
        row = {"seed": seed}
        for kind in LOSSES:
            row[kind] = _train_and_evaluate(kind, seed, phantom, work, steps, text, progress)
        per_seed.append(row)
    summary = summarize_comparison(per_seed)
    chance = per_seed[0]["medtrim"]["chance"]
    headline = metric_name(*HEADLINE)
    direction, mode, rank = HEADLINE
    return {
        "test_pairs": per_seed[0]["medtrim"]["n"], "seeds": seeds, "steps": steps, "text_tower": text,
        "headline": {"metric": headline, "chance": chance[mode][rank],
                     **{kind: summary[kind][headline] for kind in LOSSES},
                     "medtrim_minus_infonce": summary["medtrim_minus_infonce"][headline],
                     "medtrim_wins": f"{summary['medtrim_wins'][headline]}/{seeds}",
                     "over_chance": {kind: round(summary[kind][headline]["mean"] / chance[mode][rank], 2)
                                     for kind in LOSSES}},
        "chance": {mode_: {str(r): round(c, 4) for r, c in by_rank.items()} for mode_, by_rank in chance.items()},
        "summary": summary,
        "per_seed": [{"seed": s["seed"], **{kind: {"metrics": {k: round(v, 4) for k, v in s[kind]["metrics"].items()
                                                               if not k.startswith("chance_")},
                                                   "final_loss": s[kind]["final_loss"], "seconds": s[kind]["seconds"]}
                                            for kind in LOSSES}} for s in per_seed],
    }


def count_child_runs(tracking_uri: str, experiment: str, parent_run_id: str) -> int:
    """Runs MLflow holds under the sweep's parent run: what the UI shows grouped under it."""
    from mlflow.tracking import MlflowClient

    from medray.medtrim.tune_trial import PARENT_TAG

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return 0
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                              max_results=10_000)
    return len(runs)


def _sweep(phantom: str, work: str, trials: int, early_stopping: bool, progress: Callable[[str], None]) -> dict:
    from medray.config import load_config
    from medray.medtrim.tune import run_sweep
    from medray.medtrim.tune_settings import MedTrimTuneConfig

    label = "asha" if early_stopping else "no-early-stopping"
    overrides = [f"train.data.pairs={phantom}", f"num_samples={trials}", f"name=bench-sweep-{label}",
                 f"out={os.path.join(work, 'sweep', label)}"]
    cfg = load_config(MedTrimTuneConfig, "medtrim/tune_tiny", overrides)
    if not early_stopping:
        cfg.asha.grace_period = cfg.max_epochs  # no rung below max_t: ASHA stops nothing
    progress(f"bench medtrim: sweep of {trials} trials, {label} ...")
    started = time.perf_counter()
    summary = run_sweep(cfg, progress=lambda msg: None)
    seconds = time.perf_counter() - started
    runs = count_child_runs(summary["tracking_uri"], summary["experiment"], summary["parent_run_id"]) \
        if summary["tracking_uri"] else None
    return {"seconds": round(seconds, 1), "trials": summary["trials"], "stopped_early": summary["stopped_early"],
            "failed": summary["failed"], "epochs_run": sum(r["epochs"] for r in summary["rows"]),
            "best": {summary["metric"]: summary["best"][summary["metric"]], "trial": summary["best"]["trial"]},
            "mlflow_child_runs": runs, "tracking_uri": summary["tracking_uri"]}


def run_sweep_bench(phantom: str, work: str, trials: int, progress: Callable[[str], None]) -> dict:
    asha = _sweep(phantom, work, trials, True, progress)
    baseline = _sweep(phantom, work, trials, False, progress)
    return {"trials": trials, "seconds": asha["seconds"], "target_seconds": SWEEP_TARGET_SECONDS,
            "within_target": asha["seconds"] < SWEEP_TARGET_SECONDS,
            "share_of_target": round(asha["seconds"] / SWEEP_TARGET_SECONDS, 3),
            "asha": asha, "baseline_no_early_stopping": baseline,
            "asha_time_ratio": round(asha["seconds"] / baseline["seconds"], 3),
            "asha_epoch_ratio": round(asha["epochs_run"] / max(1, baseline["epochs_run"]), 3),
            "baseline": "the same draws, seed and data with early stopping off, timed in this process"}


def run_bench(work: str, studies: int = 600, seeds: int = 3, steps: int = 300, text: str = "tiny",
              compare: bool = True, sweep: bool = True, trials: int = 8,
              progress: Callable[[str], None] = print) -> dict:
    """Both parts (or one); each with its figures and its baseline beside them."""
    from medray.mm.phantom import write_phantoms
    from medray.runtime import init_ray

    for key, value, low in (("studies", studies, 100), ("seeds", seeds, 1), ("steps", steps, 1), ("trials", trials, 1)):
        if value < low:
            raise ConfigError(key, f"must be at least {low}, got {value}")
    if text not in TEXT_TOWERS:
        raise ConfigError("text", f"{text!r}: expected one of {', '.join(TEXT_TOWERS)}")
    if not (compare or sweep):
        raise ConfigError("compare", "nothing to run: both --no-compare and --no-sweep were given")
    work = os.path.abspath(os.path.expanduser(work))
    phantom = os.path.join(work, "phantom")
    progress(f"bench medtrim: writing {studies} phantom studies ...")
    written = write_phantoms(studies, phantom, seed=0, overwrite=True)
    cluster = init_ray()
    report = {"bench": "medtrim", "studies": written["studies"], "cpus": cluster.get("num_cpus"),
              "tracking": os.environ.get("MLFLOW_TRACKING_URI") or "sqlite beside each sweep's out"}
    started = time.perf_counter()
    if compare:
        report["comparison"] = run_comparison(phantom, work, seeds, steps, text, progress)
        report["comparison"]["baseline"] = ("InfoNCE (CLIP-style) on the same towers, data, steps, batch and seed; "
                                            "chance is the share of relevant items")
    if sweep:
        report["sweep"] = run_sweep_bench(phantom, work, trials, progress)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
