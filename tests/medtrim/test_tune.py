"""MedTrim sweeps: 8 trials on Ray Tune with ASHA, every trial a run in a real MLflow server.

Real components: 150 phantom studies (64 px) in the MIMIC-CXR layout, the pairs reader, OBER,
mining and training in each trial, the session's local Ray cluster (2 CPUs, one per trial), an
`mlflow server` on loopback read back through `MlflowClient`, and the `medray medtrim tune`
command itself. ASHA uses reduction factor 3 here so that, with P@10 on 30 validation pairs
taking coarse values, a trial below the top third at epoch 1 is stopped.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from medray.config import load_config
from medray.errors import ConfigError
from medray.medtrim.commands import medtrim_app
from medray.medtrim.job_settings import MedTrimTrainConfig
from medray.medtrim.tune import run_sweep
from medray.medtrim.tune_settings import MedTrimTuneConfig
from medray.mm.phantom import write_phantoms

CONF = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "medtrim", "tune_tiny.yaml")
TRIALS, MAX_EPOCHS, METRIC = 8, 3, "val_zero_shot_auc"
SAMPLED = ("alpha", "tau_min", "tau_gap", "g0", "g1", "g2", "eta")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> str:
    """150 phantoms at 64 px: 105 train, 30 validate, 15 test (seed 0)."""
    pairs = str(tmp_path_factory.mktemp("medtrim-tune") / "phantoms")
    summary = write_phantoms(150, pairs, seed=0, size=64, splits=(0.7, 0.2, 0.1))
    assert summary["splits"] == {"train": 105, "validate": 30, "test": 15}
    return pairs


def _overrides(phantoms: str, out: str, *more: str) -> list[str]:
    return [f"train.data.pairs={phantoms}", f"out={out}", *more]


@pytest.fixture(scope="module")
def sweep(ray_local, mlflow_server, phantoms, tmp_path_factory) -> dict:
    out = str(tmp_path_factory.mktemp("sweep") / "out")
    args = ["tune", CONF, *_overrides(phantoms, out, f"tracking.uri={mlflow_server}", "name=tune-test",
                                      f"metric={METRIC}", f"num_samples={TRIALS}", f"max_epochs={MAX_EPOCHS}"),
            "--json"]
    result = CliRunner().invoke(medtrim_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    client = MlflowClient(tracking_uri=mlflow_server)
    parent = client.get_run(summary["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    drawn = {}  # what Ray Tune itself recorded as each trial's config
    for trial_dir in glob.glob(os.path.join(out, "ray_results", "tune-test", "run_trial_*")):
        with open(os.path.join(trial_dir, "result.json")) as fh:
            trial_id = json.loads(fh.readline())["trial_id"]
        with open(os.path.join(trial_dir, "params.json")) as fh:
            drawn[trial_id] = json.load(fh)
    return {"summary": summary, "out": out, "pairs": phantoms, "client": client, "parent": parent,
            "children": {run.data.tags["trial_id"]: run for run in children}, "drawn": drawn}


def test_every_trial_is_an_mlflow_run_under_the_sweeps_parent(sweep):
    summary, parent, children = sweep["summary"], sweep["parent"], sweep["children"]
    assert summary["trials"] == TRIALS and summary["failed"] == 0
    assert parent.data.tags["sweep"] == "tune-test" and parent.info.run_name == "tune-test"
    assert parent.data.params["num_samples"] == str(TRIALS)
    assert parent.data.params["search_space.alpha.kind"] == "uniform"
    assert parent.data.params["search_space.tau_gap.high"] == "0.45"
    assert len(children) == TRIALS and set(children) == set(sweep["drawn"])
    for trial_id, run in children.items():
        assert run.data.tags["sweep"] == "tune-test" and run.info.status == "FINISHED"
        drawn = sweep["drawn"][trial_id]
        for name in SAMPLED:  # the trial logged exactly what Tune drew for it
            assert float(run.data.params[name]) == drawn[name], (trial_id, name)
        tau_min, tau_max = float(run.data.params["tau_min"]), float(run.data.params["tau_max"])
        assert tau_min < tau_max == pytest.approx(drawn["tau_min"] + drawn["tau_gap"])


def test_metrics_are_logged_per_epoch_and_asha_stops_some_trials(sweep):
    client, children = sweep["client"], sweep["children"]
    rows = {r["trial"]: r for r in sweep["summary"]["rows"]}
    stopped = 0
    for trial_id, run in children.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, METRIC))
        epochs = [step for step, _ in history]
        assert epochs == list(range(1, len(epochs) + 1)) == list(range(1, rows[trial_id]["epochs"] + 1))
        assert history[-1][1] == pytest.approx(rows[trial_id][METRIC])
        fine = [m.step for m in client.get_metric_history(run.info.run_id, "val_i2t_fine_p10")]
        assert sorted(fine) == epochs  # every validation scalar, not only the ranked one
        assert all(0.0 <= value <= 1.0 for _, value in history)
        losses = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert sorted(losses) == epochs
        early = len(epochs) < MAX_EPOCHS
        assert run.data.tags["stopped_early"] == str(early).lower() and run.data.tags["epochs_run"] == str(len(epochs))
        stopped += early
    assert stopped >= 1 and stopped == sweep["summary"]["stopped_early"]
    assert any(len(client.get_metric_history(r.info.run_id, "loss")) == MAX_EPOCHS for r in children.values())


def test_best_yaml_is_a_train_config_with_the_best_trials_values(sweep):
    summary, out = sweep["summary"], sweep["out"]
    rows = summary["rows"]
    best = max(rows, key=lambda r: r[METRIC])
    assert summary["metric"] == METRIC and summary["best"]["trial"] == best["trial"]
    assert summary["best_config"] == os.path.join(out, "best.yaml")
    cfg = load_config(MedTrimTrainConfig, summary["best_config"])
    chosen = sweep["drawn"][summary["best"]["trial"]]
    assert cfg.loss.alpha == chosen["alpha"] and cfg.loss.eta == chosen["eta"]
    assert (cfg.data.score.g0, cfg.data.score.g1, cfg.data.score.g2) == (chosen["g0"], chosen["g1"], chosen["g2"])
    assert cfg.data.mining.tau_min == chosen["tau_min"] < cfg.data.mining.tau_max
    assert cfg.data.mining.tau_max == pytest.approx(chosen["tau_min"] + chosen["tau_gap"])
    assert cfg.data.pairs == sweep["pairs"] and cfg.medtrim_model.image.image_size == 64  # the rest is the base job
    with open(summary["results"]) as fh:
        saved = json.load(fh)
    assert saved["best_trial"] == summary["best"]["trial"] and len(saved["trials"]) == TRIALS
    assert sweep["parent"].data.tags["best_trial"] == summary["best"]["trial"]
    assert sweep["parent"].data.tags["best_run_id"] == sweep["children"][summary["best"]["trial"]].info.run_id


@pytest.mark.parametrize("changes, key", [
    (["search_space.alpha.low=0.9"], "search_space.alpha.low"),  # above high (0.5)
    (["search_space.eta.kind=normal"], "search_space.eta.kind"),
    (["num_samples=0"], "num_samples"),
    (["search_space.g1.kind=choice"], "search_space.g1.values"),  # a choice with no values
    (["search_space.tau_gap.high=0.7"], "search_space.tau_gap.high"),  # tau_max could reach 0.35 + 0.7
    (["search_space.alpha.kind=loguniform", "search_space.alpha.low=0.0"], "search_space.alpha.low"),
    (["search_space.eta.high=1.5"], "search_space.eta.high"),
    (["metric=val_accuracy"], "metric"),
    (["asha.grace_period=4"], "asha.grace_period"),
    (["train.data.pairs=/nowhere"], "train.data.pairs"),
    (["train.loss.kind=contrastive"], "train.loss.kind"),
])
def test_a_bad_sweep_config_names_the_key_before_any_trial(phantoms, tmp_path, changes, key):
    cfg = load_config(MedTrimTuneConfig, CONF, _overrides(phantoms, str(tmp_path / "out"), *changes))
    with pytest.raises(ConfigError) as err:
        run_sweep(cfg, progress=lambda msg: None)
    assert err.value.key == key
    assert not (tmp_path / "out").exists()  # nothing read, written or started


def test_the_command_reports_a_bad_key_without_running(phantoms, tmp_path):
    result = CliRunner().invoke(medtrim_app, ["tune", CONF, *_overrides(phantoms, str(tmp_path / "out"),
                                                                         "search_space.g0.high=0.5")])
    assert isinstance(result.exception, ConfigError) and result.exception.key == "search_space.g0.low"
    assert not (tmp_path / "out").exists()
