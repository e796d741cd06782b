"""Configuration of the text pipeline (`conf/data/*.yaml`), checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from medray import storage
from medray.data.clean import RulesConfig
from medray.data.dedup import NearDupConfig
from medray.data.pack import PackConfig
from medray.data.quality import QualityConfig
from medray.data.sample import SampleConfig
from medray.data.tag import TagConfig
from medray.errors import ConfigError
from medray.met.settings import TrackingConfig

# The stages a pipeline can chain, in the order they run. exact_dedup and
# near_dup are global (a barrier over the whole corpus); the others stream.
STAGES = ("exact_dedup", "rules", "quality", "near_dup", "tag", "sample", "pack")


@dataclass
class ExactDedupConfig:
    num_partitions: Optional[int] = None  # noqa: UP045  (hash partitions of the shuffle; default: sized so none holds over 64 MB, at least one per CPU)


@dataclass
class DataPipelineConfig:
    input: list[str] = field(default_factory=list)  # files or folders of .jsonl[.gz|.zst] / .parquet, local or s3://
    out: str = "out/data"
    text_field: str = "text"
    chunk_lines: int = 5000  # input lines per shard: the unit of output and of resume
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    workers: Optional[int] = None  # noqa: UP045  (actors per phase; default: CPUs - 1, at least 1)
    resume: bool = True  # skip units whose outputs are complete; false starts over
    keep_work: bool = True  # keep intermediate shards under OUT/work after success
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    near_dup: NearDupConfig = field(default_factory=NearDupConfig)
    tag: TagConfig = field(default_factory=TagConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="medray-data"))

    def enabled(self, stage: str) -> bool:
        return stage in self.stages

    def check(self) -> None:
        """Fail before any work starts, naming the key."""
        if not self.input:
            raise ConfigError("input", "give at least one input file or folder")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ConfigError("stages", f"unknown stage {unknown[0]!r}: expected some of {', '.join(STAGES)}")
        if self.chunk_lines < 1:
            raise ConfigError("chunk_lines", "must be at least 1")
        if self.enabled("rules"):
            self.rules.check()
        if self.enabled("pack"):
            self.pack.validate()
        if self.enabled("sample") and not self.enabled("tag"):
            raise ConfigError("stages", "sample needs tag (it reweights by the nodes tagging finds)")
        if self.enabled("quality") and not storage.exists(self.quality.model_path):
            raise ConfigError("quality.model_path", f"no model at {self.quality.model_path}: train one with `medray data quality-train`")
        if self.enabled("pack") and not storage.exists(self.pack.tokenizer):
            raise ConfigError("pack.tokenizer", f"no tokenizer at {self.pack.tokenizer}: train one with `medray tokenizer train`")
        if self.enabled("tag") and not storage.exists(self.tag.tree):
            raise ConfigError("tag.tree", f"no tree at {self.tag.tree}: build one with `medray met build`")
