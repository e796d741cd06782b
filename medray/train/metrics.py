"""Throughput and model FLOPs utilisation (MFU), the two numbers that say whether a run is healthy.

MFU = achieved model FLOPs / the devices' peak: `flops_per_token` (6N plus attention, see
`medray.models.flops`) times tokens per second, over the dense bf16 peak of the device. The peak
comes from config (`scaling.peak_tflops`) or from a table of known GPUs; on CPU there is no
meaningful peak, so MFU is reported as None rather than a made-up figure.
"""

from __future__ import annotations

import time

import torch

from medray.models.flops import flops_per_token

# dense bf16 tensor-core peak per device, TFLOP/s (vendor data sheets)
KNOWN_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
                     "L4": 121.0, "A10G": 70.0, "A10": 125.0, "B200": 2250.0, "GH200": 989.0}


def peak_flops_per_device(scaling, device: torch.device) -> float | None:
    """Peak FLOP/s of one device: the configured figure, else the GPU's from the table, else None."""
    if scaling.peak_tflops:
        return scaling.peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(KNOWN_PEAK_TFLOPS, key=len, reverse=True):  # "GH200" before "H200"
        if key in name:
            return KNOWN_PEAK_TFLOPS[key] * 1e12
    return None


class StepTimer:
    """Tokens per second (all workers and per worker) and MFU since the last `rates()` call."""

    def __init__(self, seq_len: int, model, peak_flops: float | None, world: int):
        config = getattr(model, "config", None)
        self.flops_per_token = flops_per_token(config, seq_len) if config is not None else None
        self.peak, self.world = peak_flops, world
        self._tokens, self._since = 0, time.perf_counter()

    def add(self, tokens: int) -> None:
        self._tokens += tokens

    def rates(self) -> dict:
        now = time.perf_counter()
        elapsed = max(now - self._since, 1e-9)
        per_s = self._tokens / elapsed
        self._tokens, self._since = 0, now
        mfu = None
        if self.peak and self.flops_per_token:
            mfu = per_s * self.flops_per_token / (self.peak * self.world)
        return {"tokens_per_s": per_s, "tokens_per_s_per_worker": per_s / self.world, "mfu": mfu}
