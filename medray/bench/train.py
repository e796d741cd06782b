"""`medray bench train`: tokens per second and MFU of medray's training step, beside plain PyTorch.

The step measured is `medray.train.loop.train_step`, the one every Ray Train worker runs: in this
process with a `DDPEngine` (backend `none`, or `--no-ray`: this path never imports Ray, so it runs
on a GPU machine without it), or on N Ray Train workers with DDP or DeepSpeed. The baseline runs
first, in this process, on the same model (same seed, same weights) and the same synthetic packed
batches, with no medray code in its step: `model(input_ids, labels=...)`, backward, clipping, a
torch AdamW step. Both give the same loss on step one, so the ratio of their throughputs is the
cost (or gain) of medray's loop and nothing else.

MFU = tokens/s x flops_per_token (6N + 12LHT, `medray.models.flops`) / the device's peak
(`--peak-tflops`, else the GPU table in `medray.train.metrics`; none on CPU, so MFU is null).
Steps after the warm-up are timed, each closed by a device sync. Torch loads inside the functions:
the CLI imports this module to register the command, and `medray --help` should not pay for it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import typer

from medray.errors import ConfigError, MedrayError

PRESETS: dict[str, dict] = {
    "tiny": {"architecture": "llama", "hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
             "intermediate_size": 128, "vocab_size": 512},
    # Qwen2-0.5B's shape (tied embeddings, biases on q/k/v), random weights
    "qwen2-0.5b": {"architecture": "qwen2", "hidden_size": 896, "num_layers": 24, "num_heads": 14,
                   "num_kv_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "rope_theta": 1e6},
    # Llama-3.2-1B's shape, random weights
    "llama-1b": {"architecture": "llama", "hidden_size": 2048, "num_layers": 16, "num_heads": 32,
                 "num_kv_heads": 8, "intermediate_size": 8192, "vocab_size": 128256, "rope_theta": 5e5},
}
DEFAULT_SHAPE = {"tiny": (64, 4)}  # (seq_len, micro_batch_size); models of real size: (2048, 4)
BACKENDS = ("none", "ddp", "deepspeed")
PRECISIONS = ("fp32", "bf16")
ATTNS = ("sdpa", "eager", "flash_attention_2", "auto")
FIRST_ID = 5  # ids below are the tokenizer's special tokens
TARGET_MFU = 0.40
TARGET_NOTE = "40% MFU: qwen2-0.5b in bf16 on one H100 (medray's step); null elsewhere"
IGNORE = -100


@dataclass
class TrainBenchConfig:
    model: Any = "tiny"  # a preset (tiny, qwen2-0.5b, llama-1b), a HF folder (local or s3://), or a ModelConfig
    backend: str = "none"  # none: this process, no Ray | ddp | deepspeed: Ray Train workers
    workers: int = 1
    no_ray: bool = False  # ddp with one worker, in this process
    steps: int = 10  # all steps, warm-up included
    warmup: int = 2  # first steps, not timed
    seq_len: Optional[int] = None  # noqa: UP045  (default: 64 for tiny, else 2048)
    micro_batch_size: Optional[int] = None  # noqa: UP045  (default: 4)
    grad_accum: int = 1
    precision: str = "fp32"  # fp32 | bf16 (autocast, fp32 master weights; DeepSpeed: bf16 weights)
    device: str = "auto"  # auto | cpu | cuda
    attn: str = "sdpa"  # sdpa | eager | flash_attention_2 | auto (flash_attention_2 when importable on CUDA bf16)
    peak_tflops: Optional[float] = None  # noqa: UP045  (per device; default: known GPUs, none on CPU)
    cpus_per_worker: float = 1.0
    lr: float = 1e-4
    seed: int = 0
    baseline: bool = True

    @property
    def use_ray(self) -> bool:
        return self.backend != "none" and not self.no_ray

    def check(self) -> None:
        """Everything a user can get wrong, before a model is built or Ray starts."""
        for key, value, allowed in (("backend", self.backend, BACKENDS), ("precision", self.precision, PRECISIONS),
                                    ("attn", self.attn, ATTNS), ("device", self.device, ("auto", "cpu", "cuda"))):
            if value not in allowed:
                raise ConfigError(key, f"{value!r}: expected one of {', '.join(allowed)}")
        for key, ok in (("steps", self.steps >= 1),
                        ("workers", self.workers >= 1), ("grad_accum", self.grad_accum >= 1),
                        ("seq_len", self.seq_len is None or self.seq_len >= 2),
                        ("micro_batch_size", self.micro_batch_size is None or self.micro_batch_size >= 1),
                        ("cpus_per_worker", self.cpus_per_worker > 0), ("lr", self.lr > 0),
                        ("peak_tflops", self.peak_tflops is None or self.peak_tflops > 0)):
            if not ok:
                raise ConfigError(key, f"{getattr(self, key)!r} is out of range")
        if not 0 <= self.warmup < self.steps:
            raise ConfigError("warmup", f"{self.warmup}: must be at least 0 and below steps ({self.steps})")
        if not self.use_ray and self.workers != 1:
            raise ConfigError("workers", f"{self.workers} workers need Ray: backend ddp or deepspeed, without --no-ray")
        if self.no_ray and self.backend == "deepspeed":
            raise ConfigError("backend", "deepspeed runs on Ray Train workers; --no-ray measures the DDP engine")
        if self.use_ray and importlib.util.find_spec("ray") is None:
            raise ConfigError("backend", f"{self.backend} runs on Ray, which is not installed: pass --no-ray")
        if self.backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("backend", "deepspeed is not installed")


def resolve(cfg: TrainBenchConfig) -> tuple[TrainBenchConfig, Any, str]:
    """`cfg` with device, attention and shape filled in, the `ModelConfig` to build, and its name."""
    import torch

    from medray.models.causal_lm import ModelConfig
    from medray.models.hf_io import has_model

    cfg.check()
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available() and not cfg.use_ray:
        raise ConfigError("device", "cuda asked for, but torch sees no CUDA device in this process")
    attn = cfg.attn
    has_flash = importlib.util.find_spec("flash_attn") is not None
    if attn == "auto":
        attn = "flash_attention_2" if has_flash and device == "cuda" and cfg.precision == "bf16" else "sdpa"
    if attn == "flash_attention_2" and not (has_flash and device == "cuda"):
        raise ConfigError("attn", "flash_attention_2 needs the flash_attn package and a CUDA device")
    name = cfg.model if isinstance(cfg.model, str) else "custom"
    seq_default, micro_default = DEFAULT_SHAPE.get(name, (2048, 4))
    cfg = dataclasses.replace(cfg, device=device, attn=attn, seq_len=cfg.seq_len or seq_default,
                              micro_batch_size=cfg.micro_batch_size or micro_default)
    if isinstance(cfg.model, ModelConfig):
        model = dataclasses.replace(cfg.model, attn_implementation=attn)
    elif name in PRESETS:
        model = ModelConfig(**PRESETS[name], attn_implementation=attn,
                            max_position_embeddings=max(cfg.seq_len, 2048))
    elif has_model(name):
        model = ModelConfig(path=name, attn_implementation=attn)
    else:
        raise ConfigError("model", f"{name!r} is neither a preset ({', '.join(PRESETS)}) nor a model folder with "
                          "config.json")
    model.check("model")
    return cfg, model, name


def synthetic_batch(seed: int, index: int, rows: int, seq_len: int, vocab: int) -> dict:
    """Micro-batch `index`, shaped like `medray.data.pack`'s rows: documents of random length back to
    back, position_ids restarting at 0 on each, so document masking does real work."""
    import numpy as np
    import torch

    rng = np.random.default_rng([seed, index])
    ids = rng.integers(min(FIRST_ID, vocab - 1), vocab, size=(rows, seq_len), dtype=np.int32)
    positions = np.empty((rows, seq_len), dtype=np.int32)
    shortest, longest = max(2, seq_len // 16), max(2, seq_len // 2)
    for r in range(rows):
        filled = 0
        while filled < seq_len:
            length = min(int(rng.integers(shortest, longest + 1)), seq_len - filled)
            positions[r, filled:filled + length] = np.arange(length)
            filled += length
    return {"input_ids": torch.from_numpy(ids), "position_ids": torch.from_numpy(positions),
            "num_tokens": torch.full((rows,), seq_len, dtype=torch.int32)}


def rank_steps(cfg: TrainBenchConfig, vocab: int, rank: int, world: int) -> list[list[dict]]:
    """Every step's micro-batches for `rank`, made before the clock starts (rank 0's are the baseline's)."""
    def index(step: int, j: int) -> int:
        return (step * world + rank) * cfg.grad_accum + j

    return [[synthetic_batch(cfg.seed, index(s, j), cfg.micro_batch_size, cfg.seq_len, vocab)
             for j in range(cfg.grad_accum)] for s in range(cfg.steps)]


def timed_steps(step, steps: list[list[dict]], warmup: int, device) -> dict:
    """Run `step(micro) -> (loss, tokens)` over `steps`; time those after `warmup`, each ended by a sync."""
    import numpy as np
    import psutil
    import torch

    proc, rss_peak = psutil.Process(), 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, times, tokens = [], [], 0
    for i, micro in enumerate(steps):
        start = time.perf_counter()
        loss, step_tokens = step(micro)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        losses.append(float(loss))
        rss_peak = max(rss_peak, proc.memory_info().rss)
        if i >= warmup:
            times.append(seconds)
            tokens += step_tokens
    on_gpu = device.type == "cuda"
    memory = torch.cuda.max_memory_allocated(device) if on_gpu else rss_peak
    return {"tokens_per_s": tokens / sum(times), "timed_steps": len(times), "timed_tokens": tokens,
            "step_s": {"mean": float(np.mean(times)), "p50": float(np.percentile(times, 50)),
                       "p90": float(np.percentile(times, 90))},
            "losses": losses, "peak_memory_mb": round(memory / 2**20, 1),
            "memory": "cuda_max_allocated" if on_gpu else "process_rss"}


def _train_config(cfg: TrainBenchConfig, model_cfg, world: int):
    from medray.train.settings import TrainConfig

    train = TrainConfig(model=model_cfg, max_steps=cfg.steps, micro_batch_size=cfg.micro_batch_size,
                        global_batch_size=cfg.micro_batch_size * world * cfg.grad_accum, seed=cfg.seed)
    train.backend.kind = "deepspeed" if cfg.backend == "deepspeed" else "ddp"
    train.backend.precision = cfg.precision
    train.scaling.num_workers, train.scaling.use_gpu = world, cfg.device == "cuda"
    train.optim.lr = cfg.lr
    return train


def _free(device) -> None:
    """Give back what the last run held (its model and optimizer died with it) before the next one."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def medray_run(cfg: TrainBenchConfig, model_cfg, device, rank: int = 0, world: int = 1) -> dict:
    """medray's own step (`train_step`, the engine, the CPT task's loss) on this rank's batches."""
    from medray.models.causal_lm import load_causal_lm
    from medray.models.flops import count_params, flops_per_token, matmul_params
    from medray.train.cpt import CPTTask
    from medray.train.engines import make_engine
    from medray.train.loop import train_step
    from medray.train.state import seed_everything

    seed_everything(cfg.seed)
    model, _ = load_causal_lm(model_cfg, device=device)
    params = count_params(model)
    try:
        matmul, fpt = matmul_params(model.config), flops_per_token(model.config, cfg.seq_len)
    except MedrayError:  # an architecture the FLOPs formula does not know: throughput only, no MFU
        matmul = fpt = None
    engine = make_engine(model, _train_config(cfg, model_cfg, world), device, world)
    engine.model.train()
    task = CPTTask()  # document masking on, as in a CPT run
    steps = rank_steps(cfg, model.config.vocab_size, rank, world)

    def step(micro):
        loss, _, _ = train_step(engine, task, micro, cfg.lr, device)
        return loss, sum(task.input_tokens(b) for b in micro)

    return {"rank": rank, "architecture": model.config.model_type, "params": params, "matmul_params": matmul,
            "flops_per_token": fpt, **timed_steps(step, steps, cfg.warmup, device)}


def baseline_run(cfg: TrainBenchConfig, model_cfg, device) -> dict:
    """The plain loop: HF's own loss (summed over the step's targets), backward, clip, torch AdamW."""
    import torch

    from medray.models.causal_lm import load_causal_lm

    torch.manual_seed(cfg.seed)
    model, _ = load_causal_lm(model_cfg, device=device)  # the same seeded weights as medray's run
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    steps = rank_steps(cfg, model.config.vocab_size, 0, 1)

    def step(micro):
        inputs = []
        for batch in micro:
            ids = batch["input_ids"].to(device, torch.long)
            positions = batch["position_ids"].to(device, torch.long)
            padding = torch.arange(ids.shape[1], device=device) >= batch["num_tokens"].to(device).view(-1, 1)
            labels = ids.masked_fill((positions == 0) | padding, IGNORE)  # no target across a document start
            inputs.append((ids, positions, labels))
        targets = sum((labels[:, 1:] != IGNORE).sum() for _, _, labels in inputs)
        total = torch.zeros((), device=device)
        for ids, positions, labels in inputs:
            with autocast:
                loss = model(input_ids=ids, position_ids=positions, labels=labels, num_items_in_batch=targets,
                             use_cache=False).loss
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total, sum(int(b["num_tokens"].sum()) for b in micro)

    return timed_steps(step, steps, cfg.warmup, device)


def ray_worker(config: dict) -> None:
    """`train_loop_per_worker`: the same `medray_run`; rank zero hands every rank's figures to the driver.

    Through a queue, not `ray.train.report`: Train V2 keeps metrics only beside a checkpoint, and a
    benchmark has nothing to checkpoint.
    """
    import ray.train
    import ray.train.torch
    import torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    result = medray_run(config["cfg"], config["model"], ray.train.torch.get_device(), rank, world)
    gathered: list = [None] * world
    torch.distributed.all_gather_object(gathered, result)
    if rank == 0:
        config["results"].put(gathered)


def ray_runs(cfg: TrainBenchConfig, model_cfg) -> list[dict]:
    """Per-worker results of `cfg.workers` Ray Train workers (`TorchTrainer`, as `run_training` builds it)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    from medray.runtime import init_ray

    init_ray()
    results = Queue(maxsize=1, actor_options={"num_cpus": 0})
    use_gpu = cfg.device == "cuda"
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    with tempfile.TemporaryDirectory(prefix="medray-bench-train-") as storage:
        trainer = TorchTrainer(
            ray_worker, train_loop_config={"cfg": cfg, "model": model_cfg, "results": results},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(name=f"bench-train-{uuid.uuid4().hex[:8]}", storage_path=storage,
                                           failure_config=ray.train.FailureConfig(max_failures=0)))
        trainer.fit()
    gathered = results.get(timeout=60)
    results.shutdown()
    return gathered


def _rates(run: dict, fpt: float | None, peak: float | None) -> dict:
    achieved = run["tokens_per_s"] * fpt if fpt else None
    return {**run, "tflops": achieved / 1e12 if achieved else None,
            "mfu": achieved / peak if achieved and peak else None}


def _device_info(cfg: TrainBenchConfig) -> tuple[dict, float | None]:
    import platform

    import torch

    from medray.train.metrics import peak_flops_per_device
    from medray.train.settings import ScalingConfig

    on_gpu = cfg.device == "cuda" and torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    peak = peak_flops_per_device(ScalingConfig(peak_tflops=cfg.peak_tflops), device)
    source = "--peak-tflops" if cfg.peak_tflops else ("known GPU table" if peak else None)
    name = torch.cuda.get_device_name(device) if on_gpu else (platform.processor() or platform.machine())
    return {"type": cfg.device, "name": name, "torch_threads": torch.get_num_threads(),
            "peak_tflops": peak / 1e12 if peak else None, "peak_source": source}, peak


def _medray_summary(cfg: TrainBenchConfig, runs: list[dict], fpt: float | None, peak: float | None) -> dict:
    """Rank zero's step figures, with throughput and MFU over all workers (each worker one device)."""
    per_worker = [_rates(r, fpt, peak) for r in runs]
    total = sum(r["tokens_per_s"] for r in runs)
    return {"mode": "ray" if cfg.use_ray else "no-ray", "backend": cfg.backend, "workers": cfg.workers,
            **{k: v for k, v in per_worker[0].items() if k != "rank"},
            "tokens_per_s": total, "tokens_per_s_per_worker": total / cfg.workers,
            "tflops": total * fpt / 1e12 if fpt else None,
            "mfu": total * fpt / (peak * cfg.workers) if fpt and peak else None,
            "per_worker": per_worker if cfg.use_ray else None}


def run_bench(model: Any = "tiny", *, progress=print, **options) -> dict:
    """Time medray's step and the plain baseline; the benchmark's JSON as a dict.

    `options` are `TrainBenchConfig`'s fields (backend, steps, warmup, seq_len, micro_batch_size,
    grad_accum, precision, device, workers, no_ray, attn, peak_tflops, cpus_per_worker, lr, seed,
    baseline).
    """
    import torch

    cfg, model_cfg, name = resolve(TrainBenchConfig(model=model, **options))
    device_info, peak = _device_info(cfg)
    local = torch.device(cfg.device) if cfg.device == "cpu" or torch.cuda.is_available() else None
    base_run = None
    if cfg.baseline and local is not None:  # first: before Ray's own processes share the machine
        progress(f"baseline: {cfg.steps} steps of plain PyTorch on the same model and batches")
        base_run = baseline_run(cfg, model_cfg, local)
        _free(local)
    if cfg.use_ray:
        progress(f"medray: {cfg.steps} steps of {name} on {cfg.workers} Ray Train workers ({cfg.backend})")
        runs = ray_runs(cfg, model_cfg)
    else:
        progress(f"medray: {cfg.steps} steps of {name} in this process (DDP engine, no Ray)")
        runs = [medray_run(cfg, model_cfg, local)]
    model_keys = ("architecture", "params", "matmul_params", "flops_per_token")
    model_info = {k: runs[0][k] for k in model_keys}
    fpt = model_info["flops_per_token"]
    ours = _medray_summary(cfg, [{k: v for k, v in r.items() if k not in model_keys} for r in runs], fpt, peak)
    base = {"skipped": "--no-baseline" if not cfg.baseline else "no CUDA device in the driver"}
    ratio = ratio_p50 = None
    if base_run is not None:
        base = _rates(base_run, fpt, peak)
        ratio = ours["tokens_per_s_per_worker"] / base["tokens_per_s"]
        ratio_p50 = base["step_s"]["p50"] / ours["step_s"]["p50"]  # the same, robust to a few stalled steps
    applies = name == "qwen2-0.5b" and cfg.precision == "bf16" and cfg.device == "cuda"
    return {
        "benchmark": "train",
        "device": device_info,
        "model": {"name": name, **model_info, "seq_len": cfg.seq_len, "attn": cfg.attn, "precision": cfg.precision},
        "run": {"steps": cfg.steps, "warmup": cfg.warmup, "micro_batch_size": cfg.micro_batch_size,
                "grad_accum": cfg.grad_accum, "seed": cfg.seed, "lr": cfg.lr,
                "tokens_per_step_per_worker": cfg.micro_batch_size * cfg.grad_accum * cfg.seq_len},
        "medray": ours,
        "baseline": base,
        "ratio": ratio,  # medray's tokens/s per worker over the single-process baseline's
        "ratio_p50": ratio_p50,
        "targets": {"mfu": TARGET_MFU if applies else None,
                    "mfu_met": ours["mfu"] >= TARGET_MFU if applies and ours["mfu"] is not None else None,
                    "note": TARGET_NOTE},
    }


def bench_train_command(
        model: str = typer.Option("tiny", help="Preset (tiny, qwen2-0.5b, llama-1b) or a HF model folder (local or s3://)"),
        backend: str = typer.Option("none", help="none (this process, no Ray) | ddp | deepspeed (Ray Train workers)"),
        workers: int = typer.Option(1, help="Ray Train workers (one GPU each on CUDA)"),
        no_ray: bool = typer.Option(False, "--no-ray", help="Run the DDP engine in this process; Ray is never imported"),
        steps: int = typer.Option(10, help="Steps, warm-up included"),
        warmup: int = typer.Option(2, help="First steps left out of the timing"),
        seq_len: Optional[int] = typer.Option(None, help="Packed row length (default: 64 tiny, else 2048)"),  # noqa: UP045
        micro_batch_size: Optional[int] = typer.Option(None, help="Rows per forward pass (default: 4)"),  # noqa: UP045
        grad_accum: int = typer.Option(1, help="Micro-batches per optimizer step"),
        precision: str = typer.Option("fp32", help="fp32 | bf16"),
        device: str = typer.Option("auto", help="auto | cpu | cuda"),
        attn: str = typer.Option("sdpa", help="sdpa | eager | flash_attention_2 | auto"),
        peak_tflops: Optional[float] = typer.Option(None, help="Peak TFLOP/s per device for MFU (default: known GPUs)"),  # noqa: UP045
        cpus_per_worker: float = typer.Option(1.0, help="CPUs per Ray Train worker"),
        baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also time the plain PyTorch loop"),
        seed: int = typer.Option(0),
        out_path: Optional[str] = typer.Option(None, "--out", help="Also write the JSON here (local or s3://)"),  # noqa: UP045
) -> None:
    """Training tokens/s and MFU of medray's step (with or without Ray) beside a plain PyTorch loop."""
    from medray import console as out

    with out.stdout_to_stderr():  # Ray and its workers print to stdout: keep it for the JSON
        result = run_bench(model, backend=backend, steps=steps, warmup=warmup, seq_len=seq_len,
                           micro_batch_size=micro_batch_size, grad_accum=grad_accum, precision=precision,
                           device=device, workers=workers, no_ray=no_ray, attn=attn, peak_tflops=peak_tflops,
                           cpus_per_worker=cpus_per_worker, baseline=baseline, seed=seed, progress=out.status)
    if out_path:
        from medray import storage

        storage.write_text(out_path, json.dumps(result, indent=2) + "\n")
    out.print_json(result)
