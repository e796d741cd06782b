"""Configuration shared by every training job: optimiser, schedule, backend, scale, checkpoints.

One dataclass tree per job (`conf/train/*.yaml` plus `key=value` overrides). `check()` runs on the
driver before any worker starts, so a wrong key costs seconds, not a cluster allocation; every
error names the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from medray.errors import ConfigError
from medray.met.settings import TrackingConfig
from medray.models.causal_lm import ModelConfig
from medray.models.freeze import FreezeConfig

BACKENDS = ("ddp", "deepspeed")
SCHEDULES = ("cosine", "wsd", "constant")
PRECISIONS = ("fp32", "bf16")


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.1  # not applied to biases, norms and embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 turns clipping off


@dataclass
class ScheduleConfig:
    """Learning-rate shape over `max_steps`: warm-up, then cosine to `min_lr_ratio`, or WSD
    (warm-up, stable, then a linear decay over the last `decay_fraction` of training)."""

    kind: str = "cosine"
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2  # WSD only


@dataclass
class BackendConfig:
    kind: str = "ddp"  # ddp | deepspeed
    zero_stage: int = 2  # DeepSpeed ZeRO stage: 2 (optimizer + gradients sharded) or 3 (parameters too)
    precision: str = "fp32"  # fp32 | bf16 (bf16 autocast for DDP, bf16 weights for DeepSpeed)
    offload_optimizer: bool = False  # DeepSpeed: optimizer state in CPU memory
    timeout_s: int = 1800  # collective timeout before a hung worker is declared failed


@dataclass
class ScalingConfig:
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # leave CPUs for Ray Data: on a 2-CPU box 2 workers need 0.5 each
    gpus_per_worker: float = 1.0
    peak_tflops: Optional[float] = None  # noqa: UP045  (per device, for MFU; default: known GPUs, none on CPU)


@dataclass
class CheckpointConfig:
    storage_path: str = "out/train"  # local or s3://; a run's checkpoints live in storage_path/name
    name: str = "run"
    every_steps: int = 50
    keep: int = 3  # most recent checkpoints kept
    max_failures: int = 3  # worker-group restarts from the last checkpoint before the run fails
    export: bool = True  # save the final model in Hugging Face format under storage_path/name/export


@dataclass
class TrainConfig:
    """What every job shares; a job's own data section sits beside it (see cpt.py and sft.py)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="medray-train"))
    max_steps: int = 100
    micro_batch_size: int = 4  # sequences per worker per forward pass
    global_batch_size: int = 16  # sequences per optimizer step, all workers: micro x workers x accumulation
    seed: int = 0
    log_every: int = 10
    fail_at_step: Optional[int] = None  # noqa: UP045  (fault drill: rank 1 exits once at this step; resume must be exact)

    @property
    def grad_accum(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.scaling.num_workers)

    def check(self) -> None:
        """Fail before any worker starts, naming the key."""
        self.model.check("model")
        self.check_harness()

    def check_harness(self) -> None:
        """Everything but the causal-LM `model`: what any task on the shared loop needs."""
        if self.backend.kind not in BACKENDS:
            raise ConfigError("backend.kind", f"{self.backend.kind!r}: expected one of {', '.join(BACKENDS)}")
        if self.backend.kind == "deepspeed" and self.backend.zero_stage not in (0, 1, 2, 3):
            raise ConfigError("backend.zero_stage", f"{self.backend.zero_stage}: expected 0, 1, 2 or 3")
        if self.backend.precision not in PRECISIONS:
            raise ConfigError("backend.precision", f"{self.backend.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.schedule.kind not in SCHEDULES:
            raise ConfigError("schedule.kind", f"{self.schedule.kind!r}: expected one of {', '.join(SCHEDULES)}")
        for key, ok in (("max_steps", self.max_steps >= 1), ("micro_batch_size", self.micro_batch_size >= 1),
                        ("scaling.num_workers", self.scaling.num_workers >= 1),
                        ("checkpoint.every_steps", self.checkpoint.every_steps >= 1),
                        ("checkpoint.keep", self.checkpoint.keep >= 1),
                        ("checkpoint.max_failures", self.checkpoint.max_failures >= 0),
                        ("schedule.warmup_steps", self.schedule.warmup_steps >= 0),
                        ("schedule.min_lr_ratio", 0.0 <= self.schedule.min_lr_ratio <= 1.0),
                        ("schedule.decay_fraction", 0.0 < self.schedule.decay_fraction <= 1.0),
                        ("optim.lr", self.optim.lr > 0), ("optim.grad_clip", self.optim.grad_clip >= 0),
                        ("log_every", self.log_every >= 1)):
            if not ok:
                raise ConfigError(key, f"{_value(self, key)!r} is out of range")
        per_step = self.micro_batch_size * self.scaling.num_workers
        if self.global_batch_size < per_step or self.global_batch_size % per_step:
            raise ConfigError("global_batch_size", f"{self.global_batch_size} is not a multiple of micro_batch_size x "
                              f"scaling.num_workers = {self.micro_batch_size} x {self.scaling.num_workers} = {per_step}")
        if self.fail_at_step is not None and not 0 < self.fail_at_step < self.max_steps:
            raise ConfigError("fail_at_step", f"must be between 1 and max_steps - 1, got {self.fail_at_step}")


def _value(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg
