"""Learning-rate multipliers by step: linear warm-up, then cosine decay or warm-up/stable/decay (WSD).

WSD keeps the peak rate for most of training and decays only at the end, so a continual-pretraining
run can be extended from any checkpoint taken before the decay without a restart of the schedule.
"""

from __future__ import annotations

import math

from medray.train.settings import ScheduleConfig


def lr_multiplier(step: int, max_steps: int, cfg: ScheduleConfig) -> float:
    """The factor on the peak learning rate for optimizer step `step` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    if cfg.kind == "constant":
        return 1.0
    if cfg.kind == "cosine":
        span = max(1, max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    decay_steps = max(1, round(cfg.decay_fraction * max_steps))
    decay_start = max(cfg.warmup_steps, max_steps - decay_steps)
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start + 1) / max(1, max_steps - decay_start))
    return 1.0 - (1.0 - floor) * progress


def lr_lambda(max_steps: int, cfg: ScheduleConfig):
    """For `torch.optim.lr_scheduler.LambdaLR` (picklable: a closure over plain values)."""
    return lambda step: lr_multiplier(step, max_steps, cfg)
