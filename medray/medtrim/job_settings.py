"""The MedTrim training job's configuration: the shared training settings plus data, towers and loss.

`conf/medtrim/*.yaml` plus `key=value` overrides load into `MedTrimTrainConfig`. `check()` runs on
the driver before any data is read or worker started, and every error names the dotted key.

`TrainConfig.model` is the causal language model of the other jobs; MedTrim's two towers sit
under `medtrim_model` instead, and `model` is ignored (its check is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medray import storage
from medray.errors import ConfigError
from medray.medtrim.loss import LossConfig
from medray.medtrim.model import MedTrimModelConfig
from medray.medtrim.ober import OberConfig
from medray.medtrim.settings import MiningConfig, ScoreConfig
from medray.met.settings import TrackingConfig
from medray.train.settings import TrainConfig

TEXT_COLUMNS = ("findings", "report")
IMAGE_CHECKS = ("decode", "verify", "none")


@dataclass
class MedTrimDataConfig:
    pairs: str = ""  # root of a MIMIC-CXR-style folder (local or s3://), read by medray.mm.pairs.read_pairs
    split: str = "train"  # pairs of this split (split.csv); "" for every pair
    text_column: str = "findings"  # findings (FINDINGS + IMPRESSION, what OBER reads) | report (the whole text)
    check_images: str = "decode"  # decode | verify | none: a bad image found here is a reject, not a crash mid-run
    ober: OberConfig = field(default_factory=OberConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    epochs_of_triplets: int = 1  # mining passes; pass k deals the pool with seed mining.seed + k
    ray_from_rows: int = 5000  # OBER and mining run on Ray Data from this many pairs, in the driver below
    ober_actors: int = 2  # most OBER actors on Ray Data

    def check(self, prefix: str = "data") -> None:
        """Everything but the files: the settings a trial of a sweep can check on its own."""
        if self.text_column not in TEXT_COLUMNS:
            raise ConfigError(f"{prefix}.text_column", f"{self.text_column!r}: expected one of {', '.join(TEXT_COLUMNS)}")
        if self.check_images not in IMAGE_CHECKS:
            raise ConfigError(f"{prefix}.check_images", f"{self.check_images!r}: expected one of {', '.join(IMAGE_CHECKS)}")
        self.ober.check(f"{prefix}.ober")
        self.mining.check(f"{prefix}.mining")
        self.score.check(f"{prefix}.score")
        for name in ("epochs_of_triplets", "ray_from_rows", "ober_actors"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{prefix}.{name}", f"must be at least 1, got {getattr(self, name)}")

    def check_pairs(self, prefix: str = "data") -> None:
        if not self.pairs:
            raise ConfigError(f"{prefix}.pairs", "no pairs root: give a MIMIC-CXR-style folder "
                                                 "(files/pXX/pNNNNNNNN/sNNNNNNNN/<image> with reports beside)")
        if not storage.exists(storage.join(self.pairs, "files")):
            raise ConfigError(f"{prefix}.pairs", f"{self.pairs!r}: no files/ folder (make phantoms with "
                                                 "`medray mm phantom --n 600 out/phantom`)")


@dataclass
class MedTrimTrainConfig(TrainConfig):
    """MedTrim on Ray Train: `micro_batch_size` and `global_batch_size` count triplets."""

    data: MedTrimDataConfig = field(default_factory=MedTrimDataConfig)
    medtrim_model: MedTrimModelConfig = field(default_factory=MedTrimModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="medray-medtrim"))

    def check(self) -> None:
        """Fail before any worker starts, naming the key."""
        self.check_training()
        self.data.check_pairs("data")

    def check_training(self) -> None:
        """All but the pairs folder: what an in-process trial (`fit_in_process`) needs."""
        self.check_harness()  # the causal-LM `model` key is not used
        if self.backend.kind != "ddp":
            raise ConfigError("backend.kind", f"{self.backend.kind!r}: MedTrim's towers train with ddp")
        self.data.check("data")
        self.medtrim_model.check("medtrim_model")
        self.loss.check("loss")
        if self.loss.kind == "infonce" and self.micro_batch_size < 2:
            raise ConfigError("micro_batch_size", "InfoNCE contrasts the pairs of one micro-batch: it needs at least 2")
