"""MedTrim training on 2 Ray Train workers (CPU, gloo, DDP) and in one process, on 200 phantom studies.

Real components: phantoms written in the MIMIC-CXR layout, the pairs reader, OBER, mining, a
local Ray cluster with Ray Data shards, MLflow on SQLite. The phantoms hold a corrupt PNG, an
empty report file and a report without a word; every run trains around them. The fault drill
(`fail_at_step`) kills rank 1 after step 17; Ray Train restarts from the step-10 checkpoint and the
run must end at the uninterrupted run's loss. The drilled run prepares its data on Ray Data (OBER
actors, mining by `map_groups`) and the plain one in the driver: equal triplets, and an equal
loss, show the two paths agree.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from medray import storage
from medray.config import load_config
from medray.errors import ConfigError
from medray.medtrim.data import prepare, read_records
from medray.medtrim.job_settings import MedTrimTrainConfig
from medray.medtrim.model import (
    MedTrimModel,
    MedTrimModelConfig,
    build_text_tokenizer,
    preprocess_images,
    tokenize_texts,
)
from medray.medtrim.train import fit_in_process, train_medtrim
from medray.mm.pairs import read_image
from medray.mm.phantom import write_phantoms
from medray.tracking import metric_history
from medray.train.loop import DRILL_MARKER

STEPS, LOG_EVERY, BATCH = 30, 5, 16
N_STUDIES, TRAIN_STUDIES = 200, 160  # phantom seed 0: 160 train, 20 validate, 20 test


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict:
    """200 phantoms (64 px); in the train split one PNG is corrupt, one report is empty, one has no word."""
    root = tmp_path_factory.mktemp("medtrim-train")
    pairs = str(root / "phantoms")
    write_phantoms(N_STUDIES, pairs, seed=0, size=64)
    train = sorted(line.split(",")[1] for line in open(os.path.join(pairs, "split.csv")).read().splitlines()[1:]
                   if line.endswith(",train"))
    bad_image, empty, wordless = train[:3]
    png = glob.glob(os.path.join(pairs, "files", "*", "*", f"s{bad_image}", "*.png"))[0]
    with open(png, "r+b") as fh:  # keep the signature, break the data
        fh.seek(40)
        fh.write(b"\0" * 200)
    for study, text in ((empty, ""), (wordless, " . -- ")):
        with open(glob.glob(os.path.join(pairs, "files", "*", "*", f"s{study}.txt"))[0], "w") as fh:
            fh.write(text)
    return {"root": root, "pairs": pairs, "bad_image": bad_image, "empty": empty, "wordless": wordless}


def _model() -> MedTrimModelConfig:
    cfg = MedTrimModelConfig.tiny(image_size=64, proj_dim=32)
    cfg.image.patch_size = 16
    return cfg


def _config(phantoms, name: str, **changes) -> MedTrimTrainConfig:
    cfg = MedTrimTrainConfig(medtrim_model=_model(), max_steps=STEPS, micro_batch_size=8, global_batch_size=BATCH,
                             log_every=LOG_EVERY)
    cfg.data.pairs, cfg.data.epochs_of_triplets = phantoms["pairs"], 2
    cfg.optim.lr, cfg.optim.weight_decay, cfg.schedule.warmup_steps = 2e-3, 0.0, 2
    cfg.scaling.cpus_per_worker = 0.5  # 2 workers on 2 CPUs leave one CPU to Ray Data
    cfg.checkpoint.storage_path, cfg.checkpoint.name, cfg.checkpoint.every_steps = str(phantoms["root"] / "runs"), name, 10
    cfg.tracking.uri = f"sqlite:///{phantoms['root'] / 'mlflow.db'}"
    for key, value in changes.items():  # dotted keys, as on the command line
        *path, attr = key.split(".")
        target = cfg
        for part in path:
            target = getattr(target, part)
        setattr(target, attr, value)
    return cfg


@pytest.fixture(scope="module")
def runs(ray_local, phantoms):
    frozen = {"medtrim_model.text.trainable_layers": 1}  # the text tower's embeddings and first layer stay
    plain = train_medtrim(_config(phantoms, "plain", **frozen))
    drilled = train_medtrim(_config(phantoms, "drill", fail_at_step=17, **frozen,
                                    **{"data.ray_from_rows": 1, "checkpoint.export": False}))
    return plain, drilled


def _losses(summary: dict) -> list[float]:
    return [value for _, value in metric_history(summary["mlflow_run_id"], summary["tracking_uri"], "loss")]


def test_loss_falls_on_two_ddp_workers(runs):
    plain, _ = runs
    losses = _losses(plain)
    assert plain["steps"] == STEPS and len(losses) == STEPS // LOG_EVERY
    assert plain["tokens"] == STEPS * BATCH * 3  # "tokens" are images: 3 per triplet
    assert 0.4 < losses[0] < 0.65  # 4 hinges near the margin alpha = 0.3, weighted 0.5 each
    assert np.mean(losses[-2:]) < losses[0] - 0.08, losses


def test_killed_worker_resumes_to_the_same_loss(runs):
    plain, drilled = runs
    assert storage.exists(storage.join(drilled["run_dir"], DRILL_MARKER))  # the failure really happened
    assert drilled["final_loss"] == pytest.approx(plain["final_loss"], abs=1e-6)
    assert drilled["tokens"] == plain["tokens"]
    for a, b in zip(sorted(glob.glob(f"{plain['run_dir']}/prepared/triplets/*.parquet")),
                    sorted(glob.glob(f"{drilled['run_dir']}/prepared/triplets/*.parquet")), strict=True):
        assert pq.read_table(a).equals(pq.read_table(b))  # Ray Data OBER + map_groups mining == in the driver


def test_saved_model_loads_and_embeds(runs, phantoms):
    plain, _ = runs
    model = MedTrimModel.load(plain["export"]).eval()
    records = pq.read_table(f"{plain['run_dir']}/prepared/records.parquet").slice(0, 6).to_pylist()

    images = [read_image(r["image_path"]) for r in records]
    with torch.no_grad():
        image, text = model(preprocess_images(images, model.preprocessor),
                            **tokenize_texts(build_text_tokenizer(model.config), [r["text"] for r in records]))
    assert image.shape == text.shape == (6, 32)
    assert torch.allclose(image.norm(dim=-1), torch.ones(6), atol=1e-5)
    trained = torch.load(f"{plain['checkpoint']}/ddp_state.pt", weights_only=True)["model"]
    assert torch.equal(model.image_proj.weight, trained["medtrim.image_proj.weight"])
    fresh = MedTrimModel(_model())
    assert not torch.equal(model.image_proj.weight, fresh.image_proj.weight)  # it trained
    before = dict(fresh.text_tower.named_parameters())
    for name, p in model.text_tower.named_parameters():  # trainable_layers=1: the last layer alone trained
        changed = not torch.equal(p, before[name])
        assert changed == name.startswith("encoder.layer.1.") or name.startswith("pooler."), name


def test_bad_records_go_to_rejects_and_the_run_still_trains(runs, phantoms):
    plain, _ = runs
    data = plain["data"]
    rejects = {(r["id"], r["stage"], r["reason"]) for r in pq.read_table(data["rejects"]).to_pylist()
               if r["stage"] != "mining"}
    assert rejects == {(phantoms["bad_image"], "pairs", "image_decode"), (phantoms["empty"], "pairs", "empty_report"),
                       (phantoms["wordless"], "ober", "empty_report")}
    assert data["pairs"] == N_STUDIES - 2 and data["in_split"] == TRAIN_STUDIES - 2
    assert data["records"] == TRAIN_STUDIES - 3 and len(data["passes"]) == 2
    assert data["passes"][0]["seed"] == 0 and data["passes"][1]["seed"] == 1
    assert all(p["anchors"] == data["records"] and p["triplets"] > 100 for p in data["passes"])
    assert plain["steps"] == STEPS


def test_prepared_data_is_reused_while_inputs_are_unchanged(runs, phantoms):
    plain, _ = runs
    again = prepare(_config(phantoms, "plain").data, plain["run_dir"], progress=lambda msg: None)
    assert again.reused and again.counts["passes"] == plain["data"]["passes"]
    assert again.triplets == sorted(glob.glob(f"{plain['run_dir']}/prepared/triplets/*.parquet"))
    changed = _config(phantoms, "plain").data
    changed.mining.tau_max = 0.7
    assert not prepare(changed, str(phantoms["root"] / "runs" / "other"), progress=lambda msg: None).reused


def test_infonce_trains_in_process_and_reports_every_epoch(phantoms):
    cfg = _config(phantoms, "infonce", global_batch_size=8,  # one micro-batch of 8 a step in one process
                  **{"loss.kind": "infonce", "optim.lr": 1e-3, "schedule.warmup_steps": 10})
    records, _, counts = read_records(cfg.data, progress=lambda msg: None)
    assert records.num_rows == counts["records"] == TRAIN_STUDIES - 3
    reported = []
    fit = fit_in_process(cfg, records, epochs=4, report=reported.append)
    assert [m["epoch"] for m in reported] == [1, 2, 3, 4] and reported == fit.history
    assert reported[-1]["step"] == 4 * (records.num_rows // 8)
    assert abs(reported[0]["loss"] - np.log(8)) < 0.1  # chance: 8 pairs contrasted within a micro-batch
    assert reported[-1]["loss"] < reported[0]["loss"] - 0.1, reported


@pytest.mark.parametrize("change, key", [
    ({"data.pairs": ""}, "data.pairs"),
    ({"data.pairs": "/nowhere/phantoms"}, "data.pairs"),
    ({"data.mining.tau_min": 0.6}, "data.mining.tau_min"),
    ({"global_batch_size": 10}, "global_batch_size"),
    ({"loss.alpha": 3.0}, "loss.alpha"),
    ({"backend.kind": "deepspeed"}, "backend.kind"),
])
def test_bad_config_names_the_key_before_any_worker_starts(phantoms, tmp_path, change, key):
    cfg = _config(phantoms, "bad", **change)
    cfg.checkpoint.storage_path = str(tmp_path / "runs")
    with pytest.raises(ConfigError) as err:
        train_medtrim(cfg)
    assert err.value.key == key
    assert not (tmp_path / "runs").exists()


def test_a_pool_smaller_than_the_mining_batch_fails_before_training_naming_the_sizes(ray_local, phantoms, tmp_path):
    cfg = _config(phantoms, "small", **{"data.mining.batch_size": 500})
    cfg.checkpoint.storage_path = str(tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"157 usable records .* fewer than data.mining.batch_size=500") as err:
        train_medtrim(cfg)
    assert err.value.key == "data.mining.batch_size"
    rejects = pq.read_table(tmp_path / "runs" / "small" / "rejects" / "rejects.parquet").to_pylist()
    assert sum(r["reason"] == "pool_too_small" for r in rejects) == TRAIN_STUDIES - 3
    assert not glob.glob(str(tmp_path / "runs" / "small" / "checkpoint*")) and not glob.glob(
        str(tmp_path / "runs" / "small" / "step_*"))


def test_the_tiny_config_loads_and_checks():
    cfg = load_config(MedTrimTrainConfig, "medtrim/train_tiny", ["loss.kind=infonce"])
    cfg.check_training()  # all but the phantom folder, which `medray mm phantom` makes
    assert (cfg.scaling.num_workers, cfg.scaling.cpus_per_worker, cfg.grad_accum) == (2, 0.5, 1)
    assert cfg.loss.kind == "infonce" and cfg.data.epochs_of_triplets == 3
    assert cfg.medtrim_model.text.path is None and cfg.medtrim_model.image.image_size == 224
