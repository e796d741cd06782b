"""A MedTrim sweep's configuration: the base training job, the search space, ASHA and the outputs.

`conf/medtrim/tune*.yaml` plus `key=value` overrides load into `MedTrimTuneConfig`. `check()` runs
on the driver before any data is read or trial started, and every error names the dotted key
(`search_space.alpha.low`, `train.data.pairs`, ...).

tau_max is not sampled on its own: a trial draws tau_min and a gap and takes
tau_max = tau_min + tau_gap, so every trial satisfies tau_min < tau_max, which mining requires,
without rejecting draws (a rejected draw would bias the search toward small tau_min).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from medray.errors import ConfigError
from medray.medtrim.job_settings import MedTrimTrainConfig
from medray.medtrim.metrics import DEFAULT_RANKS, MODES
from medray.met.settings import TrackingConfig

KINDS = ("uniform", "loguniform", "choice")
SEARCHED = ("alpha", "tau_min", "tau_gap", "g0", "g1", "g2", "eta")
SWEEP_MODES = ("max", "min")
VALIDATION_PREFIX = "val_"
# What a trial reports each epoch that a sweep can rank on: training losses and the validation
# split's scalars as `medray.medtrim.evaluate.flat_metrics` names them, prefixed `val_`.
RANKABLE = ("loss", "last_loss", *(f"{VALIDATION_PREFIX}{d}_{m}_p{r}" for d in ("i2t", "t2i") for m in MODES
                                   for r in DEFAULT_RANKS),
            *(f"{VALIDATION_PREFIX}zero_shot_{k}" for k in ("acc", "auc", "f1")))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Dim:
    """One searched value: `uniform` or `loguniform` over [low, high], or a `choice` among `values`."""

    kind: str = "uniform"
    low: float = 0.0
    high: float = 1.0
    values: list[float] = field(default_factory=list)  # choice only

    def check(self, key: str) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"{key}.kind", f"{self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.kind == "choice":
            if not self.values:
                raise ConfigError(f"{key}.values", "a choice needs at least one value")
            if not all(_is_number(v) for v in self.values):
                raise ConfigError(f"{key}.values", f"{list(self.values)!r}: every value must be a finite number")
            return
        for bound in ("low", "high"):
            if not _is_number(getattr(self, bound)):
                raise ConfigError(f"{key}.{bound}", f"{getattr(self, bound)!r}: must be a finite number")
        if self.low >= self.high:
            raise ConfigError(f"{key}.low", f"{self.low} must be below high ({self.high}); "
                                            "for one value use kind: choice, values: [v]")
        if self.kind == "loguniform" and self.low <= 0:
            raise ConfigError(f"{key}.low", f"{self.low}: a loguniform range must start above 0")

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value a trial can draw."""
        return (min(self.values), max(self.values)) if self.kind == "choice" else (self.low, self.high)

    def within(self, key: str, lowest: float, highest: float, what: str) -> None:
        """Every draw in [lowest, highest], else an error naming the bound that leaves it."""
        low, high = self.bounds()
        for value, bound in ((low, "low"), (high, "high")):
            if not lowest <= value <= highest:
                name = f"{key}.values" if self.kind == "choice" else f"{key}.{bound}"
                raise ConfigError(name, f"{value} is outside [{lowest}, {highest}] ({what})")

    def to_tune(self):
        from ray import tune

        if self.kind == "choice":
            return tune.choice([float(v) for v in self.values])
        return (tune.loguniform if self.kind == "loguniform" else tune.uniform)(float(self.low), float(self.high))


@dataclass
class SearchSpace:
    """The defaults centre on the paper's values (alpha 0.3, tau 0.25/0.6, g 0.85/0.10/0.05, eta 0.5)."""

    alpha: Dim = field(default_factory=lambda: Dim("uniform", 0.1, 0.5))  # triplet margin
    tau_min: Dim = field(default_factory=lambda: Dim("uniform", 0.15, 0.35))  # semi-hard negatives from here
    tau_gap: Dim = field(default_factory=lambda: Dim("uniform", 0.2, 0.45))  # tau_max = tau_min + tau_gap
    g0: Dim = field(default_factory=lambda: Dim("uniform", 0.6, 1.0))  # score weights: divided by their sum
    g1: Dim = field(default_factory=lambda: Dim("uniform", 0.0, 0.3))
    g2: Dim = field(default_factory=lambda: Dim("uniform", 0.0, 0.2))
    eta: Dim = field(default_factory=lambda: Dim("uniform", 0.2, 0.8))  # weight of the cross-modal terms

    def check(self, prefix: str = "search_space") -> None:
        for name in SEARCHED:
            getattr(self, name).check(f"{prefix}.{name}")
        self.alpha.within(f"{prefix}.alpha", 0.0, 2.0, "a margin on d = 1 - cos")
        self.eta.within(f"{prefix}.eta", 0.0, 1.0, "a weight between the two kinds of terms")
        self.tau_min.within(f"{prefix}.tau_min", 0.0, 1.0, "a score threshold")
        self.tau_gap.within(f"{prefix}.tau_gap", 0.0, 1.0, "tau_max - tau_min")
        if self.tau_gap.bounds()[0] <= 0:
            raise ConfigError(f"{prefix}.tau_gap.{'values' if self.tau_gap.kind == 'choice' else 'low'}",
                              "must be above 0: tau_max = tau_min + tau_gap has to exceed tau_min")
        top = self.tau_min.bounds()[1] + self.tau_gap.bounds()[1]
        if top > 1.0 + 1e-12:
            raise ConfigError(f"{prefix}.tau_gap.{'values' if self.tau_gap.kind == 'choice' else 'high'}",
                              f"tau_min up to {self.tau_min.bounds()[1]} plus tau_gap up to "
                              f"{self.tau_gap.bounds()[1]} reaches tau_max = {top}, above 1 (scores lie in [0, 1])")
        for name in ("g0", "g1", "g2"):
            getattr(self, name).within(f"{prefix}.{name}", 0.0, math.inf, "a score weight")
        if sum(getattr(self, g).bounds()[0] for g in ("g0", "g1", "g2")) <= 0:
            raise ConfigError(f"{prefix}.g0.{'values' if self.g0.kind == 'choice' else 'low'}",
                              "g0 + g1 + g2 can be 0 at the lowest draws: keep one weight's range above 0")

    def param_space(self) -> dict:
        """Ray Tune's param_space: one sampler per searched name."""
        return {name: getattr(self, name).to_tune() for name in SEARCHED}


@dataclass
class AshaConfig:
    grace_period: int = 1  # epochs every trial runs before ASHA may stop it
    reduction_factor: float = 2.0  # at each rung, the best 1/reduction_factor of trials go on


@dataclass
class MedTrimTuneConfig:
    """A sweep: `train` is the base MedTrim job; every trial is it with the sampled values set."""

    name: str = "medtrim-sweep"  # the MLflow parent run, the `sweep` tag and the Ray Tune experiment
    train: MedTrimTrainConfig = field(default_factory=MedTrimTrainConfig)
    search_space: SearchSpace = field(default_factory=SearchSpace)
    num_samples: int = 8
    max_epochs: int = 3
    asha: AshaConfig = field(default_factory=AshaConfig)
    metric: str = "val_i2t_fine_p10"  # what ASHA and the best trial are ranked on (see RANKABLE)
    mode: str = "max"  # max | min
    validation_split: str = "validate"  # evaluated after every epoch
    cpus_per_trial: float = 1.0  # 1 on a 2-core machine: two trials at once
    max_concurrent_trials: int = 0  # 0: as many as the CPUs allow
    seed: int = 0  # the draws of the search space (each trial trains with train.seed)
    out: str = "out/medtrim/sweep"  # best.yaml, results.json, rejects, ray_results/ (local or s3://)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="medray-medtrim-sweeps"))

    def check(self) -> None:
        """Fail before any data is read or trial started, naming the key."""
        self.check_sweep()
        try:
            self.train.check()
        except ConfigError as err:
            raise ConfigError(f"train.{err.key}", err.message, err.source) from None

    def check_sweep(self) -> None:
        """Everything but the base training job."""
        if not self.name.strip():
            raise ConfigError("name", "a sweep needs a name (it names the MLflow parent run)")
        self.search_space.check("search_space")
        for key in ("num_samples", "max_epochs", "asha.grace_period", "seed", "max_concurrent_trials"):
            value = self._get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(key, f"{value!r}: must be an integer")
        if self.num_samples < 1:
            raise ConfigError("num_samples", f"must be at least 1, got {self.num_samples}")
        if self.max_epochs < 1:
            raise ConfigError("max_epochs", f"must be at least 1, got {self.max_epochs}")
        if not 1 <= self.asha.grace_period <= self.max_epochs:
            raise ConfigError("asha.grace_period", f"must be between 1 and max_epochs ({self.max_epochs}), "
                                                   f"got {self.asha.grace_period}")
        if not self.asha.reduction_factor > 1:
            raise ConfigError("asha.reduction_factor", f"must be above 1, got {self.asha.reduction_factor}")
        if self.metric not in RANKABLE:
            raise ConfigError("metric", f"{self.metric!r}: a trial reports {', '.join(RANKABLE)}")
        if self.mode not in SWEEP_MODES:
            raise ConfigError("mode", f"{self.mode!r}: expected one of {', '.join(SWEEP_MODES)}")
        if not self.validation_split.strip():
            raise ConfigError("validation_split", "name the split evaluated after each epoch (e.g. validate)")
        if not self.cpus_per_trial > 0:
            raise ConfigError("cpus_per_trial", f"must be above 0, got {self.cpus_per_trial}")
        if self.max_concurrent_trials < 0:
            raise ConfigError("max_concurrent_trials", f"must be 0 (no limit) or more, got {self.max_concurrent_trials}")
        if not self.out:
            raise ConfigError("out", "a sweep needs an output folder (local or s3://)")

    def _get(self, dotted: str):
        value = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value
