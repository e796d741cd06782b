"""One trial of a MedTrim sweep: the base job with the trial's draws, trained in its Ray Tune actor.

Each trial mines its own triplets (its g's weigh the score, its taus pick the negatives) from the
records the driver prepared once (pairs read, OBER run: the part that does not depend on the
draws), trains with its alpha and eta, and after every epoch evaluates on the validation split and
reports to Tune, so ASHA can stop it there. It logs from its own process to an MLflow run that is a
child of the sweep's parent run (`mlflow.parentRunId`), which is what groups a sweep's trials in
the MLflow UI. A trial ASHA stops is cut off inside `tune.report`, so the driver, which knows how
many epochs each trial ran, writes the final `stopped_early` tag (`finish_trial_runs`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from medray.medtrim.job_settings import MedTrimTrainConfig
from medray.medtrim.tune_settings import SEARCHED, VALIDATION_PREFIX

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under this parent
TRIAL_PARAMS = ("alpha", "tau_min", "tau_max", "tau_gap", "g0", "g1", "g2", "eta")


@dataclass(frozen=True)
class SweepContext:
    """What every trial shares, besides the data: where to log and how long to train."""

    name: str
    experiment: str
    tracking_uri: str | None  # None: tracking is off
    parent_run_id: str | None
    max_epochs: int
    threads: int = 1  # torch threads: the CPUs Tune gave the trial, so concurrent trials do not contend


def trial_values(config: Mapping) -> dict[str, float]:
    """The trial's draws plus the tau_max they imply (never above 1, always above tau_min)."""
    values = {name: float(config[name]) for name in SEARCHED}
    values["tau_max"] = min(1.0, values["tau_min"] + values["tau_gap"])
    return {name: values[name] for name in TRIAL_PARAMS}


def trial_config(base: MedTrimTrainConfig, values: Mapping[str, float]) -> MedTrimTrainConfig:
    """The base job with the trial's values in place: what the trial trains and best.yaml holds."""
    cfg = copy.deepcopy(base)
    cfg.loss.alpha, cfg.loss.eta = float(values["alpha"]), float(values["eta"])
    cfg.data.mining.tau_min, cfg.data.mining.tau_max = float(values["tau_min"]), float(values["tau_max"])
    cfg.data.score.g0, cfg.data.score.g1, cfg.data.score.g2 = (float(values[g]) for g in ("g0", "g1", "g2"))
    return cfg


def validation_metrics(model, validation: pa.Table, tokenizer) -> dict[str, float]:
    """The validation split's scalars (`val_i2t_fine_p10`, ...), what ASHA ranks trials on."""
    from medray.medtrim.evaluate import evaluate_model, flat_metrics

    result = evaluate_model(model, validation, split=None, tokenizer=tokenizer)
    scalars = {f"{VALIDATION_PREFIX}{k}": v for k, v in flat_metrics(result).items()}
    return {**scalars, f"{VALIDATION_PREFIX}pairs": float(result["n"])}


def run_trial(config: dict, *, base: MedTrimTrainConfig, records: pa.Table, validation: pa.Table,
              sweep: SweepContext) -> None:
    """The Ray Tune function trainable (bound with `tune.with_parameters`)."""
    import torch
    from ray import tune

    from medray.medtrim.model import build_text_tokenizer
    from medray.medtrim.train import fit_in_process

    torch.set_num_threads(sweep.threads)
    values = trial_values(config)
    cfg = trial_config(base, values)
    context = tune.get_context()
    tags = {"sweep": sweep.name, "trial_id": context.get_trial_id()}
    if sweep.parent_run_id:
        tags[PARENT_TAG] = sweep.parent_run_id
    tokenizer = build_text_tokenizer(cfg.medtrim_model)

    def evaluate(model) -> dict[str, float]:
        return validation_metrics(model, validation, tokenizer)

    with _trial_run(sweep, context.get_trial_name(), values, tags) as run:
        def report(metrics: dict) -> None:
            scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            run.log_metrics(scalars, step=int(metrics["epoch"]))
            tune.report(scalars)

        fit_in_process(cfg, records, epochs=sweep.max_epochs, report=report, evaluate=evaluate)
        run.set_tags({"stopped_early": "false", "epochs_run": sweep.max_epochs})


def _trial_run(sweep: SweepContext, run_name: str, values: dict, tags: dict):
    from contextlib import nullcontext

    from medray import tracking

    if sweep.tracking_uri is None:
        return nullcontext(tracking.NoOpRun())
    return tracking.run(sweep.experiment, run_name=run_name, params=values, tags=tags, uri=sweep.tracking_uri)


def finish_trial_runs(uri: str, parent_run_id: str, outcomes: Mapping[str, dict]) -> dict[str, str]:
    """Tag each trial's run with how it ended and close it; {trial_id: run_id}.

    `outcomes` maps a trial id to {"epochs": n, "stopped_early": bool, "error": str | None}. A run
    that ASHA cut off is left RUNNING (its actor was stopped) or FAILED (the report raised
    SystemExit inside the `with` block): stopped early is a normal end, so it becomes FINISHED.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                              max_results=10000)
    found = {}
    for child in runs:
        trial_id = child.data.tags.get("trial_id")
        outcome = outcomes.get(trial_id)
        if outcome is None:
            continue
        found[trial_id] = child.info.run_id
        client.set_tag(child.info.run_id, "stopped_early", str(bool(outcome["stopped_early"])).lower())
        client.set_tag(child.info.run_id, "epochs_run", str(outcome["epochs"]))
        if outcome.get("error"):
            client.set_tag(child.info.run_id, "error", str(outcome["error"])[:5000])
        client.set_terminated(child.info.run_id, status="FAILED" if outcome.get("error") else "FINISHED")
    return found
