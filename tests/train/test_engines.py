"""DeepSpeed on CPU never waits on a JIT kernel build.

A worker killed while DeepSpeed compiled its shared-memory allreduce kernel leaves a lock file in
the torch extensions cache; before the fix every later DeepSpeed run on that machine hung on it.
The check runs in a child process (one gloo rank) so that a regression fails on a timeout instead
of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys

STEP_ONE_RANK = """
import sys
import torch, torch.distributed as dist
from medray.train.engines import DeepSpeedEngine
from medray.train.settings import TrainConfig

dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
cfg = TrainConfig(micro_batch_size=2, global_batch_size=2)
cfg.scaling.num_workers = 1
cfg.backend.kind = "deepspeed"
engine = DeepSpeedEngine(model, cfg, torch.device("cpu"), world=1)
before = model.weight.detach().clone()
loss = engine.model(torch.ones(2, 4)).sum()
engine.backward(loss, last_micro_batch=True)
engine.step(1e-2)
print("moved", float((engine.module.weight - before).abs().sum()))
"""


def test_a_stale_kernel_build_lock_does_not_block_deepspeed(tmp_path):
    extensions = tmp_path / "torch_extensions"
    (extensions / "deepspeed_shm_comm").mkdir(parents=True)
    (extensions / "deepspeed_shm_comm" / "lock").write_text("")  # left by a killed build
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    store = str(tmp_path / "store")
    done = subprocess.run([sys.executable, "-c", STEP_ONE_RANK, store], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    moved = float(done.stdout.strip().splitlines()[-1].split()[1])
    assert moved > 0  # the optimizer really stepped
    assert not any(p.suffix == ".so" for p in extensions.rglob("*"))  # and nothing was compiled
