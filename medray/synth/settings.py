"""`medray synth run CONF`: the multimodal data engine and synthesis job's config, checked before work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from medray.errors import ConfigError
from medray.met.settings import TrackingConfig
from medray.mm.mm_settings import AlignConfig, RetrieveConfig
from medray.synth.engine_settings import EngineConfig, SamplingConfig
from medray.synth.graph import GraphConfig
from medray.synth.items import ItemConfig
from medray.synth.kgqa import KGQAConfig
from medray.synth.reject import RejectConfig
from medray.synth.validate import ValidateConfig

STAGES = ("retrieve", "align", "items", "kgqa")


def _sampled() -> EngineConfig:
    return EngineConfig(sampling=SamplingConfig(max_new_tokens=160, temperature=0.7, top_p=0.95))


@dataclass
class KGQAJobConfig:
    """Multi-hop questions from weakly covered nodes, answered by several experts, reject-sampled."""

    enabled: bool = True
    # Where the start nodes come from: a data pipeline `report.json` (its back-fill list), a parquet with a
    # node_id column, or null: the image pairs' anchored finding nodes, fewest pairs first.
    starts: Optional[str] = None  # noqa: UP045
    max_starts: int = 50
    expert_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one engine as several experts
    # More engines as experts beside the job's `engine`, each entry naming only what differs from it (a model,
    # a backend; sampling and the rest are the job's), each answering with every seed; experts are then named
    # MODEL/seed=N by model folder. []: the job's engine alone (experts seed=N).
    engines: list[dict[str, Any]] = field(default_factory=list)
    graph: GraphConfig = field(default_factory=GraphConfig)
    paths: KGQAConfig = field(default_factory=KGQAConfig)
    reject: RejectConfig = field(default_factory=RejectConfig)


@dataclass
class SynthConfig:
    tree: str = "out/met/tree.parquet"
    pairs: str = "out/phantom"  # image-report pairs in the MIMIC-CXR layout (`medray mm pairs`), local or s3://
    split: Optional[str] = None  # noqa: UP045  (a split of the pairs, e.g. train; null: all)
    max_pairs: int = 0  # 0: all
    out: str = "out/synth"
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    use_ray: bool = True  # Ray Data actor pools for anchoring, scoring and generation; false: in this process
    resume: bool = True  # a stage whose outputs exist for the same inputs and settings is not run again
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    items: ItemConfig = field(default_factory=ItemConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    engine: EngineConfig = field(default_factory=_sampled)
    kgqa: KGQAJobConfig = field(default_factory=KGQAJobConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="medray-synth"))

    def check(self) -> SynthConfig:
        """Everything but what needs the tree loaded; model folders included (no work before they exist)."""
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ConfigError("stages", f"{unknown[0] if unknown else 'empty'!r}: expected some of {', '.join(STAGES)}")
        if "items" in self.stages and "align" not in self.stages:
            raise ConfigError("stages", "items are built from the aligned pairs: add align (and retrieve)")
        if "align" in self.stages and "retrieve" not in self.stages:
            raise ConfigError("stages", "align filters retrieved pairs: add retrieve")
        for key in ("tree", "pairs", "out"):
            if not str(getattr(self, key) or "").strip():
                raise ConfigError(key, "must be a path (local or s3://)")
        if self.max_pairs < 0:
            raise ConfigError("max_pairs", f"must be >= 0, got {self.max_pairs}")
        self.retrieve.check("retrieve")
        self.align.check("align")
        self.validate.check("validate")
        if self.kgqa.max_starts < 0:
            raise ConfigError("kgqa.max_starts", f"must be >= 0, got {self.kgqa.max_starts}")
        if not self.kgqa.expert_seeds:
            raise ConfigError("kgqa.expert_seeds", "at least one expert seed")
        self.kgqa.graph.check("kgqa.graph")
        self.kgqa.paths.check("kgqa.paths")
        self.kgqa.reject.check("kgqa.reject")
        if self.generates:
            self.engine.check("engine")
        if self.answers_kgqa:
            for i, (_, engine) in enumerate(self.experts()[1:]):
                engine.check(f"kgqa.engines.{i}")
        return self

    def experts(self) -> list[tuple[str | None, EngineConfig]]:
        """(name, engine) per expert engine for multi-hop answers: the job's engine, then `kgqa.engines`.

        Alone, the job's engine is unnamed (experts `seed=N`); with others each
        is named by its model folder, a repeated folder getting `#2`, `#3`.
        """
        from medray.config import with_changes

        engines = [self.engine, *(with_changes(self.engine, changes, f"kgqa.engines.{i}")
                                  for i, changes in enumerate(self.kgqa.engines))]
        if len(engines) == 1:
            return [(None, self.engine)]
        names: list[str] = []
        for engine in engines:
            base = engine.model.rstrip("/").rsplit("/", 1)[-1] or "engine"
            name, n = base, 1
            while name in names:
                n += 1
                name = f"{base}#{n}"
            names.append(name)
        return list(zip(names, engines))

    @property
    def answers_kgqa(self) -> bool:
        return "kgqa" in self.stages and self.kgqa.enabled

    @property
    def generates(self) -> bool:
        return "items" in self.stages or self.answers_kgqa
