"""Continual pretraining on 2 Ray Train workers (CPU, gloo): DDP and DeepSpeed ZeRO-2.

Real components: a local Ray cluster, Ray Data shards, DeepSpeed on gloo, S3 on loopback, MLflow
on SQLite. Each run is 12 steps of a tiny Llama on packed HPO definitions. The fault drill
(`fail_at_step`) kills rank 1 with os._exit after step 6; Ray Train restarts the worker group
from the step-4 checkpoint, and the run must end at the uninterrupted run's loss.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medray import storage
from medray.errors import ConfigError
from medray.models.causal_lm import ModelConfig
from medray.tracking import metric_history
from medray.train.cpt import CPTConfig, CPTDataConfig, CPTTask
from medray.train.loop import DRILL_MARKER, run_training
from medray.train.mixture import MixtureSource

STEPS = 12


def _config(cpt_data, storage_path: str, name: str, backend: str = "ddp", fail_at_step: int | None = None) -> CPTConfig:
    cfg = CPTConfig(model=ModelConfig(tokenizer=cpt_data["tokenizer"], hidden_size=64, num_layers=2, num_heads=4,
                                      num_kv_heads=2, intermediate_size=128, max_position_embeddings=64),
                    data=CPTDataConfig(sources=[MixtureSource(name="hpo", path=cpt_data["shards"])]),
                    max_steps=STEPS, micro_batch_size=4, global_batch_size=16, log_every=2, fail_at_step=fail_at_step)
    cfg.optim.lr, cfg.schedule.warmup_steps = 3e-3, 2
    cfg.scaling.cpus_per_worker = 0.5  # 2 workers on 2 CPUs leave one CPU to Ray Data
    cfg.backend.kind = backend
    cfg.checkpoint.storage_path, cfg.checkpoint.name, cfg.checkpoint.every_steps = storage_path, name, 4
    cfg.tracking.uri = f"sqlite:///{cpt_data['root'] / 'mlflow.db'}"
    return cfg


def _loss_history(summary: dict) -> list[float]:
    return [value for _, value in metric_history(summary["mlflow_run_id"], summary["tracking_uri"], "loss")]


@pytest.fixture(scope="module")
def ddp_runs(ray_local, cpt_data):
    root = str(cpt_data["root"] / "runs")
    plain = run_training(_config(cpt_data, root, "ddp"), CPTTask())
    drilled = run_training(_config(cpt_data, root, "ddp-drill", fail_at_step=6), CPTTask())
    return plain, drilled


@pytest.fixture(scope="module")
def zero2_runs_on_s3(ray_local, s3_server, cpt_data):
    root = s3_server.uri("train")
    plain = run_training(_config(cpt_data, root, "zero2", backend="deepspeed"), CPTTask())
    drilled = run_training(_config(cpt_data, root, "zero2-drill", backend="deepspeed", fail_at_step=6), CPTTask())
    return plain, drilled


def test_ddp_loss_falls(ddp_runs):
    plain, _ = ddp_runs
    losses = _loss_history(plain)
    assert plain["steps"] == STEPS and len(losses) == STEPS // 2
    assert losses[-1] < losses[0] - 0.4, losses  # from ~ln(512) = 6.2 on real text


def test_ddp_killed_worker_resumes_to_the_same_loss(ddp_runs):
    plain, drilled = ddp_runs
    assert storage.exists(storage.join(drilled["run_dir"], DRILL_MARKER))  # the failure really happened
    assert drilled["final_loss"] == pytest.approx(plain["final_loss"], abs=1e-6)
    assert drilled["tokens"] == plain["tokens"]


def test_export_loads_with_transformers_and_generates(ddp_runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain, _ = ddp_runs
    model = AutoModelForCausalLM.from_pretrained(plain["export"])
    tokenizer = AutoTokenizer.from_pretrained(plain["export"])
    prompt = tokenizer("Abnormality of the", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 8 or tokenizer.eos_token_id in out[0].tolist()
    ckpt = torch.load(f"{plain['checkpoint']}/ddp_state.pt", weights_only=True)["model"]
    exported = model.state_dict()
    assert torch.equal(exported["model.embed_tokens.weight"], ckpt["model.embed_tokens.weight"])


def test_deepspeed_zero2_trains_and_resumes_through_s3(zero2_runs_on_s3, s3_server):
    plain, drilled = zero2_runs_on_s3
    losses = _loss_history(plain)
    assert losses[-1] < losses[0] - 0.4, losses
    assert plain["run_dir"].startswith("s3://")
    shards = storage.list_files(storage.join(plain["run_dir"], "step_00000012"))
    assert any("zero_pp_rank_0" in f for f in shards) and any("zero_pp_rank_1" in f for f in shards)
    assert storage.exists(storage.join(drilled["run_dir"], DRILL_MARKER))
    assert drilled["final_loss"] == pytest.approx(plain["final_loss"], abs=1e-5)


def test_deepspeed_export_on_s3_loads(zero2_runs_on_s3):
    from transformers import AutoModelForCausalLM

    from medray.models.hf_io import local_model_dir

    plain, _ = zero2_runs_on_s3
    model = AutoModelForCausalLM.from_pretrained(local_model_dir(plain["export"]))
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size >= 512


@pytest.mark.parametrize("change, key", [
    (lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, path="/nowhere/model")), "model.path"),
    (lambda c: dataclasses.replace(c, global_batch_size=10), "global_batch_size"),
    (lambda c: dataclasses.replace(c, data=CPTDataConfig(sources=[MixtureSource(name="x", path="/nowhere")])),
     "data.sources.0.path"),
])
def test_bad_config_fails_before_any_worker_starts(cpt_data, tmp_path, change, key):
    cfg = change(_config(cpt_data, str(tmp_path / "runs"), "bad"))
    with pytest.raises(ConfigError) as err:
        run_training(cfg, CPTTask())
    assert err.value.key == key
    assert not (tmp_path / "runs").exists()


def test_shards_without_token_columns_are_refused_naming_the_file(cpt_data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"text": ["not packed"] * 64}), tmp_path / "raw" / "part-0.parquet")
    cfg = _config(cpt_data, str(tmp_path / "runs"), "bad")
    cfg.data = CPTDataConfig(sources=[MixtureSource(name="raw", path=str(tmp_path / "raw"))])
    with pytest.raises(ConfigError, match="part-0.parquet: missing column"):
        run_training(cfg, CPTTask())
