"""MedTrim configuration: one dataclass per part, each with a `check()` that names the dotted key.

Checks run on the driver before any scoring, so a bad weight or threshold costs a second, not a
Ray job. `prefix` is where the section sits in the job's config tree (`score`, `mining`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from medray.errors import ConfigError

SEMI_HARD_PICKS = ("lowest", "highest")


@dataclass
class ScoreConfig:
    """Weights of MedTrim's score S; divided by their sum, so S stays in [0, 1] and S(a, a) = 1
    whatever a sweep draws, and the mining thresholds keep their meaning."""

    g0: float = 0.85  # Jaccard of the finding classes
    g1: float = 0.10  # mean IoU of the adjectives (severity, size) per class
    g2: float = 0.05  # mean IoU of the directions (side) per class

    def check(self, prefix: str = "score") -> None:
        for name in ("g0", "g1", "g2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value or value < 0:
                raise ConfigError(f"{prefix}.{name}", f"{value!r}: a weight must be a number >= 0")
        if self.g0 + self.g1 + self.g2 <= 0:
            raise ConfigError(f"{prefix}.g0", "g0 + g1 + g2 must be > 0 (all three weights are 0)")

    def weights(self) -> tuple[float, float, float]:
        """(g0, g1, g2) divided by their sum; checks first."""
        self.check()
        total = float(self.g0 + self.g1 + self.g2)
        return float(self.g0) / total, float(self.g1) / total, float(self.g2) / total


@dataclass
class MiningConfig:
    """Triplet mining over seeded mini-batches of the pool (see medray/medtrim/mine.py)."""

    batch_size: int = 32  # records per mini-batch (the reference mines in mini-batches of 32)
    tau_min: float = 0.25  # semi-hard negatives score in [tau_min, tau_max)
    tau_max: float = 0.6
    seed: int = 0  # the shuffle that deals records into mini-batches
    semi_hard_pick: str = "lowest"  # among several semi-hard negatives: lowest S (as the reference) | highest (hardest)

    def check(self, prefix: str = "mining") -> None:
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 3:
            raise ConfigError(f"{prefix}.batch_size", f"{self.batch_size!r}: a mini-batch needs at least 3 records "
                                                      "(anchor, positive, negative)")
        for name in ("tau_min", "tau_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{prefix}.{name}", f"{value!r}: must be a number in [0, 1]")
        if self.tau_min >= self.tau_max:
            raise ConfigError(f"{prefix}.tau_min", f"{self.tau_min} must be below tau_max ({self.tau_max})")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"{prefix}.seed", f"{self.seed!r}: must be an integer")
        if self.semi_hard_pick not in SEMI_HARD_PICKS:
            raise ConfigError(f"{prefix}.semi_hard_pick",
                              f"{self.semi_hard_pick!r}: expected one of {', '.join(SEMI_HARD_PICKS)}")
