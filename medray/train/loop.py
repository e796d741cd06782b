"""The shared training harness: one short loop, run by Ray Train's `TorchTrainer` on every worker.

Read it top to bottom: build the model, wrap it in the configured engine (DDP or DeepSpeed ZeRO),
restore the last checkpoint if there is one, then for each optimizer step take `grad_accum`
micro-batches from this rank's Ray Data shard, normalise the loss by the token count of the
whole global batch (so the gradient does not depend on how tokens fall across ranks and
micro-batches), step, log from rank zero and checkpoint every N steps.

A job is a `Task` (continual pretraining in `cpt.py`, SFT in `sft.py`): it checks its data on the
driver, builds the Ray Datasets, yields one rank's micro-batches for an epoch and computes the
summed loss of a micro-batch. Everything else lives here, once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Protocol

import torch

from medray.train.engines import make_engine
from medray.train.metrics import StepTimer, peak_flops_per_device
from medray.train.schedule import lr_multiplier
from medray.train.settings import TrainConfig
from medray.train.state import TrainerState, seed_everything

DRILL_MARKER = ".fail_drill_done"


class Task(Protocol):
    name: str

    def check(self, cfg: Any) -> None: ...
    def datasets(self, cfg: Any) -> dict: ...
    def build_model(self, cfg: Any, device: torch.device): ...
    def micro_batches(self, cfg: Any, start_step: int) -> Iterator[dict]: ...
    def loss(self, model, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]: ...
    def loss_tokens(self, batch: dict) -> int: ...
    def input_tokens(self, batch: dict) -> int: ...
    def seq_len(self, cfg: Any) -> int: ...
    def save_model(self, model, tokenizer, out: str) -> None: ...


def _all_reduce_sum(values: list[float] | torch.Tensor, device: torch.device) -> list[float]:
    if isinstance(values, torch.Tensor):
        t = values.detach().to(device=device, dtype=torch.float64).reshape(-1)
    else:
        t = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t.tolist()


def train_step(engine, task: Task, micro: list[dict], lr: float, device: torch.device) -> tuple[float, float, int]:
    """One optimizer step over this rank's micro-batches: (global mean loss, grad norm, input tokens of all ranks).

    Each micro-batch's summed loss is divided by the loss-token count of the whole global batch,
    so the update is the mean over every target token whatever the split across ranks and
    micro-batches. Needs no Ray: `medray bench train` runs it in a plain process.
    """
    counts = [float(sum(task.loss_tokens(b) for b in micro)), float(sum(task.input_tokens(b) for b in micro))]
    total_loss_tokens, total_input = _all_reduce_sum(counts, device)
    local_loss = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync per micro-batch
    for i, batch in enumerate(micro):
        with engine.forward_context():
            loss_sum, _ = task.loss(engine.model, batch, device)
        engine.backward(loss_sum / max(total_loss_tokens, 1.0), last_micro_batch=i == len(micro) - 1)
        local_loss += loss_sum.detach().to(torch.float64)
    grad_norm = engine.step(lr)
    (global_loss,) = _all_reduce_sum(local_loss, device)
    return global_loss / max(total_loss_tokens, 1.0), grad_norm, int(total_input)


def _checkpoint(engine, state: TrainerState, rank: int, metrics: dict) -> None:
    import ray.train

    with tempfile.TemporaryDirectory(prefix="medray-ckpt-") as folder:
        engine.save(folder, rank)
        state.save(folder, rank)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder),
                         checkpoint_dir_name=f"step_{state.step:08d}")


def _restore(engine, rank: int) -> TrainerState:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return TrainerState()
    with checkpoint.as_directory() as folder:
        engine.load(folder)
        return TrainerState.load(folder, rank)


def _fault_drill(cfg: TrainConfig, rank: int, step: int, run_dir: str) -> None:
    """`fail_at_step`: rank 1 (or 0 alone) dies once, as a lost node would, to prove resume is exact."""
    from medray import storage

    if cfg.fail_at_step != step or rank != min(1, cfg.scaling.num_workers - 1):
        return
    marker = storage.join(run_dir, DRILL_MARKER)
    if storage.exists(marker):
        return
    storage.write_text(marker, f"worker {rank} exited at step {step}\n")
    os._exit(1)


def _quiet_ray_train_reports() -> None:
    """Ray Train logs every report at INFO from a logger named by its file path, out of reach of
    `LoggingConfig`; medray logs the same metrics itself."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_worker(config: dict) -> None:
    """The per-worker loop (`train_loop_per_worker`)."""
    import ray.train
    import ray.train.torch

    _quiet_ray_train_reports()

    cfg: TrainConfig = config["cfg"]
    task: Task = config["task"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    seed_everything(cfg.seed)
    model, _ = task.build_model(cfg, device)
    engine = make_engine(model, cfg, device, world)
    seed_everything(cfg.seed + 1000 * rank)  # per-rank streams; a checkpoint's saved RNG state replaces them
    state = _restore(engine, rank)
    tracker = _tracker(config) if rank == 0 else None
    timer = StepTimer(task.seq_len(cfg), engine.module, peak_flops_per_device(cfg.scaling, device), world)
    batches = task.micro_batches(cfg, state.step)  # the data order is a function of the step: resume lands exactly
    engine.model.train()
    window_loss = window_steps = 0.0
    while state.step < cfg.max_steps:
        micro = [next(batches) for _ in range(cfg.grad_accum)]
        lr = cfg.optim.lr * lr_multiplier(state.step, cfg.max_steps, cfg.schedule)
        loss, grad_norm, total_input = train_step(engine, task, micro, lr, device)
        state.step += 1
        state.tokens += int(total_input)
        window_loss, window_steps = window_loss + loss, window_steps + 1
        timer.add(int(total_input))
        _fault_drill(cfg, rank, state.step, config["run_dir"])
        checkpoint_now = state.step % cfg.checkpoint.every_steps == 0 or state.step == cfg.max_steps
        if checkpoint_now or state.step % cfg.log_every == 0:
            metrics = {"step": state.step, "loss": window_loss / window_steps, "last_loss": loss, "lr": lr,
                       "grad_norm": grad_norm, "tokens": state.tokens, **timer.rates()}
            window_loss = window_steps = 0.0
            if tracker is not None:
                tracker.log_metrics({k: v for k, v in metrics.items() if v is not None and k != "step"}, step=state.step)
            if checkpoint_now:
                _checkpoint(engine, state, rank, metrics)
            else:
                ray.train.report(metrics)
    if cfg.checkpoint.export:
        _export(engine, task, cfg, rank, config["run_dir"])


def _tracker(config: dict):
    if not config.get("mlflow_run_id"):
        return None
    from medray.tracking import attach

    return attach(config["mlflow_run_id"], config["tracking_uri"])


def _export(engine, task: Task, cfg: TrainConfig, rank: int, run_dir: str) -> None:
    """The final weights in Hugging Face format (rank zero writes; ZeRO-3 gathers on every rank)."""
    from medray import storage

    state_dict = engine.full_state_dict()
    if rank != 0:
        return
    model, tokenizer = task.build_model(cfg, torch.device("cpu"))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state_dict.items()}, strict=False)
    task.save_model(model, tokenizer, storage.join(run_dir, "export"))


# ---- the driver --------------------------------------------------------------------------------


def run_training(cfg: TrainConfig, task: Task, progress=print) -> dict:
    """Check everything, then fit on the cluster; returns a summary (final loss, checkpoint, export, MLflow run)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from medray import storage, tracking
    from medray.runtime import init_ray

    cfg = with_absolute_paths(cfg)
    cfg.check()
    task.check(cfg)
    init_ray()
    run_dir = storage.join(cfg.checkpoint.storage_path, cfg.checkpoint.name)
    datasets = task.datasets(cfg)
    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = True  # a deterministic split across ranks: what exact resume rests on
    fs, storage_root = storage.filesystem_for(cfg.checkpoint.storage_path)
    scaling = cfg.scaling
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {})}
    uri = tracking.job_tracking_uri(cfg.tracking.uri, cfg.checkpoint.storage_path)
    start = time.perf_counter()
    with (tracking.run(cfg.tracking.experiment, run_name=f"{task.name}:{cfg.checkpoint.name}", uri=uri,
                       params=_params(cfg), tags={"task": task.name})
          if cfg.tracking.enabled else _no_run()) as run:
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"cfg": cfg, "task": task, "run_dir": run_dir,
                               "mlflow_run_id": getattr(run, "run_id", None), "tracking_uri": uri},
            torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo", timeout_s=cfg.backend.timeout_s),
            scaling_config=ray.train.ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(
                name=cfg.checkpoint.name, storage_path=storage_root, storage_filesystem=fs,
                failure_config=ray.train.FailureConfig(max_failures=cfg.checkpoint.max_failures),
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # medray logs the metrics itself
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep)),
            datasets=datasets,
            dataset_config=ray.train.DataConfig(execution_options=options),
        )
        progress(f"training {task.name}: {cfg.max_steps} steps on {scaling.num_workers} workers ({cfg.backend.kind})")
        result = trainer.fit()
        metrics = dict(result.metrics or {})
        summary = {"task": task.name, "steps": metrics.get("step"), "final_loss": metrics.get("last_loss"),
                   "loss": metrics.get("loss"), "tokens": metrics.get("tokens"),
                   "checkpoint": getattr(result.checkpoint, "path", None), "run_dir": run_dir,
                   "export": storage.join(run_dir, "export") if cfg.checkpoint.export else None,
                   "mlflow_run_id": getattr(run, "run_id", None), "tracking_uri": uri,
                   "seconds": round(time.perf_counter() - start, 1)}
        if cfg.tracking.enabled:
            run.log_dict(summary, "summary.json")
    return summary


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """A copy whose local paths are absolute: Ray Train workers run in their own working directory."""
    import copy

    from medray import storage

    cfg = copy.deepcopy(cfg)

    def fix(obj, attr: str) -> None:
        value = getattr(obj, attr, None) if obj is not None else None
        if isinstance(value, str) and value and not storage.is_remote(value) and "://" not in value:
            setattr(obj, attr, os.path.abspath(os.path.expanduser(value)))

    fix(cfg.model, "path")
    fix(cfg.model, "tokenizer")
    fix(cfg.checkpoint, "storage_path")
    vlm = getattr(cfg, "vlm", None)
    fix(vlm, "path")
    fix(getattr(vlm, "vision", None), "path")
    data = getattr(cfg, "data", None)
    for source in getattr(data, "sources", None) or []:
        fix(source, "path")
    fix(data, "image_root")
    return cfg


def _params(cfg: TrainConfig) -> dict:
    from medray.config import to_dict

    return to_dict(cfg)


class _no_run:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None
