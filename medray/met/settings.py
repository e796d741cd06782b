"""Config schemas of the tree jobs (`conf/met/*.yaml`); validated before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from medray.errors import ConfigError
from medray.met.tree import AXES


@dataclass
class SourceOptions:
    enabled: bool = True
    path: Optional[str] = None  # noqa: UP045 (OmegaConf needs Optional)
    icd_xrefs_path: Optional[str] = None  # noqa: UP045


@dataclass
class SourcesConfig:
    """Applied in this order: the first source to name a concept owns its node."""

    icd10cm: SourceOptions = field(default_factory=SourceOptions)
    disease_ontology: SourceOptions = field(default_factory=lambda: SourceOptions(enabled=False))
    hpo: SourceOptions = field(default_factory=SourceOptions)
    symptom_ontology: SourceOptions = field(default_factory=lambda: SourceOptions(enabled=False))
    radiology_lexicon: SourceOptions = field(default_factory=SourceOptions)
    dicom: SourceOptions = field(default_factory=SourceOptions)

    def enabled(self) -> list[tuple[str, dict]]:
        out = []
        for name in ("icd10cm", "disease_ontology", "hpo", "symptom_ontology", "radiology_lexicon", "dicom"):
            opts: SourceOptions = getattr(self, name)
            if opts.enabled:
                kwargs = {k: v for k, v in (("path", opts.path), ("icd_xrefs_path", opts.icd_xrefs_path)) if v}
                out.append((name, kwargs))
        if not out:
            raise ConfigError("sources", "no source is enabled")
        return out


@dataclass
class TrackingConfig:
    enabled: bool = True
    experiment: str = "medray-met"
    uri: Optional[str] = None  # noqa: UP045  (default: sqlite beside the outputs)


@dataclass
class MetBuildConfig:
    out: str = "out/met/tree.parquet"
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    merge_by_name: bool = True
    render: bool = True  # HTML and PNG views beside the tree
    render_max_nodes: int = 60000
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def _check_axes(axes: list[str], key: str) -> None:
    for axis in axes:
        if axis not in AXES:
            raise ConfigError(key, f"unknown axis {axis!r}: expected one of {', '.join(AXES)}")


@dataclass
class MetGrowConfig:
    tree: str = "out/met/tree.parquet"
    out: str = "out/met/tree_grown.parquet"
    corpus: Optional[str] = None  # noqa: UP045  (.txt/.jsonl/.parquet file or folder; default: ontology definitions and ICD notes)
    text_column: str = "text"
    hpo_path: Optional[str] = None  # noqa: UP045
    symp_path: Optional[str] = None  # noqa: UP045
    min_count: int = 10
    attach_threshold: float = 0.55
    ambiguity_margin: float = 0.03
    require_shared_word: bool = True
    lexical: bool = True  # prefer parents whose words the candidate extends ("c3 glomerulopathy" -> "glomerulopathy")
    fragment_share: float = 0.75  # drop candidates that are this often the tail of a longer one ("use disorder")
    drop_generic: bool = True  # drop vague modifier + generic head ("structural anomaly")
    parent_max_level: Optional[int] = None  # noqa: UP045  (attach only under nodes this shallow: faster, coarser)
    axes: list[str] = field(default_factory=lambda: ["disease", "symptom"])
    arbiter: str = "rule"
    embedding_cache: Optional[str] = None  # noqa: UP045  (.npz of name vectors; default beside `out` when local)
    ray_address: Optional[str] = None  # noqa: UP045
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        _check_axes(self.axes, "axes")
        if self.min_count < 1:
            raise ConfigError("min_count", "must be at least 1")
        if not 0.0 < self.attach_threshold <= 1.0:
            raise ConfigError("attach_threshold", "must be in (0, 1]")
