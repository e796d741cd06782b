"""`medray bench medtrim`: MedTrim beside InfoNCE over seeds, and the sweep beside its no-early-stopping baseline.

Real components: phantoms written to disk, both losses trained on Ray Train (the demo's job, cut to a
few steps), evaluated on the held-out split, and two real sweeps on Ray Tune logging to a real MLflow
server, whose child runs are counted back from it. The figures themselves are for `medray bench
medtrim` to print; these tests check that they are computed right, not how fast anything is.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from medray.bench.medtrim import count_child_runs, metric_name, run_bench, summarize_comparison
from medray.errors import ConfigError


def _seed(medtrim: float, infonce: float) -> dict:
    return {"medtrim": {"metrics": {"i2t_fine_p10": medtrim, "chance_fine_p10": 0.05}},
            "infonce": {"metrics": {"i2t_fine_p10": infonce, "chance_fine_p10": 0.05}}}


def test_summary_has_means_spreads_paired_differences_and_wins():
    summary = summarize_comparison([_seed(0.30, 0.20), _seed(0.20, 0.25), _seed(0.40, 0.15)])
    assert summary["medtrim"]["i2t_fine_p10"]["mean"] == pytest.approx(0.30)
    assert summary["medtrim"]["i2t_fine_p10"]["std"] == pytest.approx(0.10)  # sample std of .3 .2 .4
    assert summary["infonce"]["i2t_fine_p10"]["min"] == pytest.approx(0.15)
    assert summary["medtrim_minus_infonce"]["i2t_fine_p10"]["mean"] == pytest.approx((0.10 - 0.05 + 0.25) / 3, abs=1e-4)
    assert summary["medtrim_wins"]["i2t_fine_p10"] == 2
    assert "chance_fine_p10" not in summary["medtrim"]  # chance is the same for both: reported once, elsewhere
    assert metric_name("i2t", "fine", 10) == "i2t_fine_p10"


def test_bad_arguments_name_the_option():
    with pytest.raises(ConfigError, match="studies"):
        run_bench("unused", studies=10)
    with pytest.raises(ConfigError, match="text"):
        run_bench("unused", text="clip")
    proc = subprocess.run([sys.executable, "-m", "medray", "bench", "medtrim", "--seeds", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "seeds" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def bench(ray_local, mlflow_server, tmp_path_factory) -> dict:
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    try:
        return run_bench(str(tmp_path_factory.mktemp("bench-medtrim")), studies=100, seeds=1, steps=4, trials=2,
                         progress=lambda message: None)
    finally:
        mp.undo()


def test_comparison_reports_both_losses_per_seed_beside_chance(bench):
    comparison = bench["comparison"]
    assert bench["studies"] == 100 and comparison["test_pairs"] == 10 and comparison["seeds"] == 1
    assert [row["seed"] for row in comparison["per_seed"]] == [0]
    for row in comparison["per_seed"]:
        for kind in ("medtrim", "infonce"):
            metrics = row[kind]["metrics"]
            assert all(0.0 <= metrics[f"{d}_{m}_p{r}"] <= 1.0 for d in ("i2t", "t2i") for m in ("fine", "disease")
                       for r in (1, 10))
            assert row[kind]["final_loss"] > 0
    headline = comparison["headline"]
    values = [row["medtrim"]["metrics"]["i2t_fine_p10"] for row in comparison["per_seed"]]
    assert headline["medtrim"]["mean"] == pytest.approx(values[0], abs=1e-4)
    assert headline["medtrim_minus_infonce"]["mean"] == pytest.approx(
        values[0] - comparison["per_seed"][0]["infonce"]["metrics"]["i2t_fine_p10"], abs=2e-4)
    assert headline["chance"] == pytest.approx(float(comparison["chance"]["fine"]["10"]), abs=1e-4)
    assert 0 < headline["chance"] < 1
    assert headline["medtrim_wins"] in ("0/1", "1/1")


def test_sweep_runs_beside_its_baseline_with_every_trial_in_mlflow(bench, mlflow_server):
    sweep = bench["sweep"]
    asha, baseline = sweep["asha"], sweep["baseline_no_early_stopping"]
    assert sweep["trials"] == 2 and sweep["target_seconds"] == 900
    assert sweep["within_target"] is (sweep["seconds"] < 900)
    assert asha["tracking_uri"] == mlflow_server == baseline["tracking_uri"]
    assert asha["mlflow_child_runs"] == 2 and baseline["mlflow_child_runs"] == 2
    assert asha["failed"] == 0 and baseline["failed"] == 0
    assert baseline["stopped_early"] == 0 and baseline["epochs_run"] == 2 * 3  # every trial, every epoch
    assert asha["epochs_run"] <= baseline["epochs_run"]
    assert sweep["asha_time_ratio"] == pytest.approx(asha["seconds"] / baseline["seconds"], abs=2e-3)


def test_child_runs_are_counted_under_their_parent_only(mlflow_server):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment("bench-medtrim-count")
    parent = client.create_run(experiment).info.run_id
    for _ in range(3):
        client.create_run(experiment, tags={"mlflow.parentRunId": parent})
    client.create_run(experiment)  # not a child
    assert count_child_runs(mlflow_server, "bench-medtrim-count", parent) == 3
    assert count_child_runs(mlflow_server, "no-such-experiment", parent) == 0
