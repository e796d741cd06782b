"""Configuration of node-guided retrieval and of the two-stage filter, checked before any work starts.

Both load from YAML with `medray.config.load_config`; `check(prefix)` names the dotted key at fault
so a job that nests them (`retrieve.embedding.threshold`, `align.score.model_path`) reports its own path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from medray.errors import ConfigError
from medray.met.tree import AXES

UNCERTAIN_POLICIES = ("keep", "drop")
HASH_KINDS = ("dct", "dhash")
SCORE_MODELS = ("medtrim", "clip", "none")
THRESHOLD_MODES = ("global", "per_node", "none")


def _one_of(value: str, options: tuple[str, ...], key: str) -> None:
    if value not in options:
        raise ConfigError(key, f"{value!r}: expected one of {', '.join(options)}")


def _axes(axes: list[str], key: str) -> None:
    for axis in axes:
        _one_of(axis, AXES, key)


def _at_least(obj, names: tuple[str, ...], low: float, prefix: str) -> None:
    for name in names:
        if getattr(obj, name) < low:
            raise ConfigError(f"{prefix}.{name}", f"must be at least {low}, got {getattr(obj, name)}")


@dataclass
class EmbeddingRetrieveConfig:
    """Nearest node names for texts the matcher finds nothing present in."""

    enabled: bool = True
    model_path: Optional[str] = None  # noqa: UP045  (None: the packaged all-MiniLM-L6-v2)
    threshold: float = 0.6  # cosine of a sentence and a node name or synonym
    top_k: int = 2  # anchors per pair at most
    axes: list[str] = field(default_factory=lambda: ["symptom", "disease"])  # candidate nodes; [] = every axis
    # Candidate nodes from these tree sources only (e.g. [radiology_lexicon, hpo]); [] = every source. The
    # full tree's ~150k disease and symptom terms take minutes to embed on a CPU: narrow them, or cache them.
    sources: list[str] = field(default_factory=list)
    cache: Optional[str] = None  # noqa: UP045  (an .npz of term vectors, local or s3://, read and written: later runs embed only new terms)
    batch_size: int = 128

    def check(self, prefix: str = "embedding") -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"{prefix}.threshold", f"a cosine in [-1, 1], got {self.threshold}")
        _at_least(self, ("top_k", "batch_size"), 1, prefix)
        _axes(self.axes, f"{prefix}.axes")


@dataclass
class RetrieveConfig:
    id_column: str = "id"
    text_columns: list[str] = field(default_factory=lambda: ["findings"])  # captions, reports, DICOM metadata text
    uncertain: str = "keep"  # keep | drop: whether an uncertain mention ("possible effusion") anchors
    matcher_axes: list[str] = field(default_factory=list)  # [] = every axis
    embedding: EmbeddingRetrieveConfig = field(default_factory=EmbeddingRetrieveConfig)
    actors: Optional[int] = None  # noqa: UP045  (Ray path: actors holding matcher and embedder; default CPUs - 1)
    batch_size: int = 256  # Ray path: pairs per batch

    def check(self, prefix: str = "retrieve") -> None:
        if not self.text_columns:
            raise ConfigError(f"{prefix}.text_columns", "name at least one text column")
        _one_of(self.uncertain, UNCERTAIN_POLICIES, f"{prefix}.uncertain")
        _axes(self.matcher_axes, f"{prefix}.matcher_axes")
        self.embedding.check(f"{prefix}.embedding")
        _at_least(self, ("batch_size",), 1, prefix)
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"{prefix}.actors", f"must be at least 1, got {self.actors}")

    def check_columns(self, columns: list[str], prefix: str = "retrieve") -> None:
        if self.id_column not in columns:
            raise ConfigError(f"{prefix}.id_column", f"{self.id_column!r} is not a column of the pairs ({', '.join(columns)})")
        for name in self.text_columns:
            if name not in columns:
                raise ConfigError(f"{prefix}.text_columns", f"{name!r} is not a column of the pairs ({', '.join(columns)})")


@dataclass
class ImageRulesConfig:
    min_width: int = 64
    min_height: int = 64
    min_aspect: float = 0.5  # width / height
    max_aspect: float = 2.0
    hash: str = "dct"  # dct (pHash) | dhash
    hash_size: int = 16  # bits per side: 256-bit hashes (64 bits cannot tell one chest radiograph from another)
    max_distance: int = 10  # Hamming distance at or below which two images are near duplicates; -1: no dedup
    threads: int = 4  # image reads at once (the work waits on storage)

    def check(self, prefix: str = "image") -> None:
        _at_least(self, ("min_width", "min_height", "threads"), 1, prefix)
        _at_least(self, ("hash_size",), 2, prefix)
        if not 0 < self.min_aspect <= self.max_aspect:
            raise ConfigError(f"{prefix}.min_aspect", f"need 0 < min_aspect <= max_aspect, got {self.min_aspect} and {self.max_aspect}")
        _one_of(self.hash, HASH_KINDS, f"{prefix}.hash")
        if self.max_distance < -1 or self.max_distance >= self.hash_size ** 2:
            raise ConfigError(f"{prefix}.max_distance", f"-1 (off) or below the {self.hash_size ** 2} hash bits, got {self.max_distance}")


@dataclass
class TextRulesConfig:
    min_chars: int = 20
    max_chars: int = 5000
    min_words: int = 0
    max_words: int = 0  # 0: no limit

    def check(self, prefix: str = "text") -> None:
        _at_least(self, ("min_chars", "min_words", "max_words"), 0, prefix)
        if self.max_chars < max(1, self.min_chars):
            raise ConfigError(f"{prefix}.max_chars", f"must be at least min_chars ({self.min_chars}), got {self.max_chars}")
        if self.max_words and self.max_words < self.min_words:
            raise ConfigError(f"{prefix}.max_words", f"must be 0 or at least min_words ({self.min_words}), got {self.max_words}")


@dataclass
class ScoreConfig:
    """Stage 2: cosine of image and text embeddings from a vision-text model, then a threshold."""

    model: str = "none"  # medtrim (a folder MedTrimModel.save wrote) | clip (a CLIP-style HF folder) | none
    model_path: Optional[str] = None  # noqa: UP045  (local or s3://)
    threshold: str = "global"  # global (min_score) | per_node (drop the bottom percent of each node) | none
    min_score: float = 0.0
    drop_percent: float = 20.0  # per_node: share of each node's pairs dropped, lowest scores first
    batch_size: int = 32
    device: str = "cpu"
    actors: int = 1  # Ray path: model replicas

    def enabled(self) -> bool:
        return self.model != "none"

    def check(self, prefix: str = "score") -> None:
        _one_of(self.model, SCORE_MODELS, f"{prefix}.model")
        _one_of(self.threshold, THRESHOLD_MODES, f"{prefix}.threshold")
        if self.enabled() and not self.model_path:
            raise ConfigError(f"{prefix}.model_path", f"a {self.model} model needs a folder (local or s3://)")
        if not -1.0 <= self.min_score <= 1.0:
            raise ConfigError(f"{prefix}.min_score", f"a cosine in [-1, 1], got {self.min_score}")
        if not 0.0 <= self.drop_percent < 100.0:
            raise ConfigError(f"{prefix}.drop_percent", f"a percent in [0, 100), got {self.drop_percent}")
        _at_least(self, ("batch_size", "actors"), 1, prefix)

    def check_files(self, prefix: str = "score") -> None:
        from medray import storage

        if not self.enabled():
            return
        marker = "medtrim.json" if self.model == "medtrim" else "config.json"
        if not storage.exists(storage.join(self.model_path, marker)):
            raise ConfigError(f"{prefix}.model_path", f"no {marker} under {self.model_path}: not a {self.model} model folder")


@dataclass
class AlignConfig:
    id_column: str = "id"
    text_column: str = "findings"
    image_column: str = "image_path"
    require_entity: bool = True  # at least one anchor of `entity_axes` (from retrieval)
    entity_axes: list[str] = field(default_factory=lambda: ["symptom", "disease"])  # [] = any axis
    image: ImageRulesConfig = field(default_factory=ImageRulesConfig)
    text: TextRulesConfig = field(default_factory=TextRulesConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def check(self, prefix: str = "align") -> None:
        _axes(self.entity_axes, f"{prefix}.entity_axes")
        self.image.check(f"{prefix}.image")
        self.text.check(f"{prefix}.text")
        self.score.check(f"{prefix}.score")

    def check_columns(self, columns: list[str], prefix: str = "align") -> None:
        for name in ("id_column", "text_column", "image_column"):
            if getattr(self, name) not in columns:
                raise ConfigError(f"{prefix}.{name}", f"{getattr(self, name)!r} is not a column of the pairs ({', '.join(columns)})")
