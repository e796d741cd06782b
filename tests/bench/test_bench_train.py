"""`medray bench train`: medray's training step beside a plain PyTorch loop, with and without Ray.

Real components throughout: a tiny Llama built from config, medray's own `train_step` and DDP
engine, a local Ray cluster for the two-worker run. The no-Ray path runs in a child process where
`import ray` is made to fail, the way it would on a GPU machine without Ray. The `gpu` test times
Qwen2-0.5B's shape in bf16 on CUDA and prints its MFU.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from medray.bench.train import PRESETS, run_bench, synthetic_batch
from medray.errors import ConfigError
from medray.models.causal_lm import ModelConfig, hf_config
from medray.models.flops import flops_per_token

QUIET = {"progress": lambda message: None}


@pytest.fixture(scope="module")
def tiny_run() -> dict:
    return run_bench("tiny", backend="none", steps=3, warmup=1, **QUIET)


def test_medray_and_baseline_report_throughput(tiny_run):
    ours, base = tiny_run["medray"], tiny_run["baseline"]
    assert tiny_run["benchmark"] == "train" and ours["mode"] == "no-ray" and ours["per_worker"] is None
    for run in (ours, base):
        assert run["tokens_per_s"] > 0 and run["timed_steps"] == 2
        assert run["timed_tokens"] == 2 * 4 * 64  # two timed steps of 4 rows x 64 tokens
        assert len(run["losses"]) == 3 and all(math.isfinite(x) for x in run["losses"])
        assert run["step_s"]["p50"] > 0 and run["step_s"]["p90"] >= run["step_s"]["p50"]
        assert run["memory"] == "process_rss" and run["peak_memory_mb"] > 100
        assert run["mfu"] is None  # no peak on CPU unless --peak-tflops
    assert tiny_run["ratio"] == pytest.approx(ours["tokens_per_s"] / base["tokens_per_s"])
    assert tiny_run["ratio_p50"] == pytest.approx(base["step_s"]["p50"] / ours["step_s"]["p50"])
    assert tiny_run["targets"] == {"mfu": None, "mfu_met": None, "note": tiny_run["targets"]["note"]}
    json.loads(json.dumps(tiny_run))  # plain JSON all the way down


def test_model_flops_are_those_of_the_preset(tiny_run):
    config = hf_config(ModelConfig(**PRESETS["tiny"]), PRESETS["tiny"]["vocab_size"])
    model = tiny_run["model"]
    assert model["flops_per_token"] == flops_per_token(config, 64)
    assert model["params"] == 106_816  # tied embeddings counted once
    assert tiny_run["medray"]["tflops"] == pytest.approx(tiny_run["medray"]["tokens_per_s"] * model["flops_per_token"] / 1e12)


def test_baseline_does_the_same_work(tiny_run):
    """Same weights, same batch: step one's loss agrees, and the updates keep the runs together."""
    ours, base = tiny_run["medray"]["losses"], tiny_run["baseline"]["losses"]
    assert ours[0] == pytest.approx(base[0], rel=1e-6)
    assert ours[0] == pytest.approx(math.log(512), abs=0.2)  # random init on a 512-token vocabulary
    assert ours == pytest.approx(base, rel=1e-4)


def test_accumulation_and_peak_give_the_same_loss_and_an_mfu():
    result = run_bench("tiny", steps=2, warmup=1, grad_accum=2, peak_tflops=0.5, **QUIET)
    ours, base = result["medray"], result["baseline"]
    assert ours["timed_tokens"] == 2 * 4 * 64
    assert ours["losses"][0] == pytest.approx(base["losses"][0], rel=1e-6)  # normalised by the step's targets
    fpt = result["model"]["flops_per_token"]
    assert ours["mfu"] == pytest.approx(ours["tokens_per_s"] * fpt / 0.5e12)
    assert base["mfu"] == pytest.approx(base["tokens_per_s"] * fpt / 0.5e12)
    assert result["device"]["peak_source"] == "--peak-tflops"


def test_synthetic_batches_are_packed_documents():
    batch = synthetic_batch(seed=0, index=3, rows=4, seq_len=64, vocab=512)
    ids, positions = batch["input_ids"], batch["position_ids"]
    assert ids.shape == positions.shape == (4, 64) and ids.dtype == torch.int32
    assert int(ids.min()) >= 5 and int(ids.max()) < 512 and batch["num_tokens"].tolist() == [64] * 4
    for row in positions.tolist():
        starts = [i for i, p in enumerate(row) if p == 0]
        assert starts[0] == 0 and len(starts) >= 2  # at least two documents per row
        for a, b in zip(starts, starts[1:] + [64]):
            assert row[a:b] == list(range(b - a))
    again = synthetic_batch(seed=0, index=3, rows=4, seq_len=64, vocab=512)
    assert torch.equal(again["input_ids"], ids) and torch.equal(again["position_ids"], positions)
    assert not torch.equal(synthetic_batch(0, 4, 4, 64, 512)["input_ids"], ids)


@pytest.mark.parametrize(("options", "key"), [
    ({"backend": "fsdp"}, "backend"),
    ({"backend": "none", "workers": 2}, "workers"),
    ({"backend": "deepspeed", "no_ray": True}, "backend"),
    ({"steps": 2, "warmup": 2}, "warmup"),
    ({"precision": "fp8"}, "precision"),
    ({"device": "cpu", "attn": "flash_attention_2"}, "attn"),
    ({"model": "no/such/model"}, "model"),
])
def test_bad_options_fail_naming_the_key(options, key):
    with pytest.raises(ConfigError) as err:
        run_bench(**{"model": "tiny", **options}, **QUIET)
    assert err.value.key == key


NO_RAY_SCRIPT = """
import json, sys
sys.modules["ray"] = None  # as on a machine without Ray: any `import ray` now fails
import typer
from medray.bench.train import bench_train_command

app = typer.Typer()
app.command()(bench_train_command)
app(["--model", "tiny", "--backend", "ddp", "--no-ray", "--steps", "2", "--warmup", "1", "--out", sys.argv[1]],
    standalone_mode=False)
assert sys.modules["ray"] is None and not [m for m in sys.modules if m.startswith("ray.")]
"""


def test_no_ray_path_never_imports_ray(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(NO_RAY_SCRIPT), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text())
    assert printed["medray"]["mode"] == "no-ray" and printed["medray"]["backend"] == "ddp"
    assert printed["medray"]["tokens_per_s"] > 0 and printed["baseline"]["tokens_per_s"] > 0


def test_two_ray_train_workers(ray_local):
    result = run_bench("tiny", backend="ddp", workers=2, cpus_per_worker=0.5, steps=2, warmup=1, **QUIET)
    ours = result["medray"]
    assert ours["mode"] == "ray" and ours["workers"] == 2
    workers = ours["per_worker"]
    assert [w["rank"] for w in workers] == [0, 1] and all(w["tokens_per_s"] > 0 for w in workers)
    assert ours["tokens_per_s"] == pytest.approx(sum(w["tokens_per_s"] for w in workers))
    assert ours["tokens_per_s_per_worker"] == pytest.approx(ours["tokens_per_s"] / 2)
    assert workers[0]["losses"] == workers[1]["losses"]  # the all-reduced global loss
    assert all(math.isfinite(x) for x in workers[0]["losses"]) and len(workers[0]["losses"]) == 2
    assert result["baseline"]["tokens_per_s"] > 0
    assert result["ratio"] == pytest.approx(ours["tokens_per_s_per_worker"] / result["baseline"]["tokens_per_s"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qwen2_half_billion_bf16_mfu_on_cuda():
    result = run_bench("qwen2-0.5b", backend="none", precision="bf16", device="cuda", attn="auto",
                       steps=8, warmup=3, **QUIET)
    ours, base = result["medray"], result["baseline"]
    print(json.dumps({"device": result["device"]["name"], "attn": result["model"]["attn"],
                      "medray_mfu": ours["mfu"], "baseline_mfu": base["mfu"], "ratio": result["ratio"],
                      "medray_tokens_per_s": ours["tokens_per_s"], "peak_memory_mb": ours["peak_memory_mb"]}))
    assert ours["mfu"] is not None and 0 < ours["mfu"] < 1
    assert base["mfu"] is not None and 0 < base["mfu"] < 1
    assert ours["memory"] == "cuda_max_allocated" and ours["peak_memory_mb"] > 1000
    assert result["targets"]["mfu"] == 0.40 and isinstance(result["targets"]["mfu_met"], bool)
    assert ours["losses"][0] == pytest.approx(base["losses"][0], rel=2e-2)  # bf16 autocast on both
