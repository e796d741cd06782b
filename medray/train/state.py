"""What a checkpoint holds besides the weights: the step, the data position and every RNG.

Resuming is exact only if all three come back: the step drives the learning rate and, because every
job's data order is a deterministic function of the step (see `Task.micro_batches`), also the data
position; the RNG states
make dropout and any sampling repeat. Each rank keeps its own RNG file; the rest is rank zero's.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps done: the data position too
    tokens: int = 0  # input tokens seen, all ranks

    def save(self, folder: str, rank: int) -> None:
        if rank == 0:
            with open(os.path.join(folder, STATE_FILE), "w") as fh:
                json.dump(asdict(self), fh)
        torch.save(rng_state(), os.path.join(folder, f"rng_rank{rank}.pt"))

    @classmethod
    def load(cls, folder: str, rank: int) -> TrainerState:
        with open(os.path.join(folder, STATE_FILE)) as fh:
            state = cls(**json.load(fh))
        rng = os.path.join(folder, f"rng_rank{rank}.pt")
        if os.path.exists(rng):  # a run resumed on more ranks than it saved keeps fresh RNG on the new ones
            set_rng_state(torch.load(rng, weights_only=False))
        return state


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
