"""One interface over the two distributed backends: DDP, and DeepSpeed ZeRO.

The loop calls `backward` per micro-batch and `step` at the end of each optimizer step; the engine
owns gradient sync (DDP's `no_sync` between micro-batches, DeepSpeed's accumulation boundary),
clipping, the learning rate and what a checkpoint holds. Loss scaling is the loop's business: it
hands in a loss already normalised to the whole global batch, and each engine undoes its own
implicit averaging (DDP over ranks; DeepSpeed over ranks and accumulation steps) so both compute
the same gradient.
"""

from __future__ import annotations

import contextlib
import os

import torch

from medray.train.settings import TrainConfig

NO_DECAY_HINTS = ("bias", "norm", "embed")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, norms and embeddings are left alone."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (plain if p.ndim < 2 or any(h in name.lower() for h in NO_DECAY_HINTS) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def _adamw(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    return torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


class DDPEngine:
    """torch DistributedDataParallel with AdamW; bf16 by autocast, master weights in fp32."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: torch.device, world: int):
        self.cfg, self.device, self.world = cfg, device, world
        model.to(device)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized() and world > 1
        self.model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None) if distributed else model
        self.module = model
        self.optimizer = _adamw(model, cfg)
        self._accumulating = 0

    def forward_context(self):
        if self.cfg.backend.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        """`loss` is this rank's share of the global-batch mean; DDP averages over ranks, so scale up."""
        sync = last_micro_batch or not isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
        with contextlib.nullcontext() if sync else self.model.no_sync():
            (loss * self.world).backward()

    def step(self, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip = self.cfg.optim.grad_clip
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def save(self, folder: str, rank: int) -> None:
        if rank == 0:
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()},
                       os.path.join(folder, "ddp_state.pt"))

    def load(self, folder: str) -> None:
        state = torch.load(os.path.join(folder, "ddp_state.pt"), map_location=self.device, weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def full_state_dict(self) -> dict:
        return self.module.state_dict()


def deepspeed_config(cfg: TrainConfig) -> dict:
    """The DeepSpeed JSON config implied by ours (one source of truth for batch sizes and clipping)."""
    b = cfg.backend
    zero: dict = {"stage": b.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if b.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.scaling.use_gpu}
    if b.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.global_batch_size,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": b.precision == "bf16"},
        "zero_allow_untested_optimizer": True,  # torch AdamW: the same update as the DDP path
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def keep_collectives_on_torch() -> None:
    """Stop DeepSpeed from JIT-building its CPU shared-memory allreduce kernel; gloo does the work.

    DeepSpeed compiles that kernel into the torch extensions cache on first use, under a file lock.
    A worker killed mid-build (a lost node, a timeout) leaves the lock behind, and every later
    DeepSpeed run on that machine then waits on it forever; the build also costs minutes per fresh
    node and the kernel faults on CPUs without the vector extensions it needs. It only speeds up
    CPU allreduce, which is not where training time goes.
    """
    import deepspeed.ops
    from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder

    deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False


class DeepSpeedEngine:
    """DeepSpeed ZeRO 0-3 around the same AdamW; gloo on CPU, NCCL on GPU (Ray Train's process group)."""

    TAG = "state"

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: torch.device, world: int):
        import deepspeed

        keep_collectives_on_torch()
        self.cfg, self.device, self.world = cfg, device, world
        if cfg.backend.precision == "bf16":
            model.to(torch.bfloat16)
        model.to(device)
        self.model, self.optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=_adamw(model, cfg), config=deepspeed_config(cfg), dist_init_required=False)
        self.module = self.model.module

    def forward_context(self):
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        """DeepSpeed divides by the accumulation steps and averages over ranks: undo both."""
        self.model.backward(loss * self.world * self.cfg.grad_accum)
        if not last_micro_batch:
            self.model.step()  # DeepSpeed counts micro-batches; only the boundary one updates

    def step(self, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.step()
        norm = self.model.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def save(self, folder: str, rank: int) -> None:
        self.model.save_checkpoint(folder, tag=self.TAG)  # every rank writes its ZeRO shard

    def load(self, folder: str) -> None:
        self.model.load_checkpoint(folder, tag=self.TAG, load_optimizer_states=True, load_lr_scheduler_states=False)

    def full_state_dict(self) -> dict:
        if self.cfg.backend.zero_stage == 3:
            return self.model._zero3_consolidated_16bit_state_dict()  # collective: every rank calls it
        return self.module.state_dict()


def make_engine(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, world: int):
    return (DeepSpeedEngine if cfg.backend.kind == "deepspeed" else DDPEngine)(model, cfg, device, world)
