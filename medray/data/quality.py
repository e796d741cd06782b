"""Stage 3 of cleaning: a fastText quality classifier and its scoring stage (training: `quality_bootstrap`).

Why fastText: it scores tens of thousands of documents (millions of words)
per second on one core, so a 640B-token corpus can be scored on CPUs. Why a bootstrap: a hand-labelled
set is small; the model trained on it labels the corpus, its confident
calls become training data, and the calls it is unsure of (scores near the
threshold) go to a judge, so a later LLM judge spends its budget only where
the classifier cannot decide. The classifier outputs P(good); the stage
keeps a record when that is at least the threshold.

The `fasttext` Python wrapper's `predict` on a string builds arrays with
`np.array(..., copy=False)`, which NumPy 2 refuses; scoring here calls the
compiled `multilinePredict` directly on a list of lines and builds the array
itself (top label only: in fasttext-wheel 0.9.2 its probabilities for k > 1
are wrong; with two labels P(bad) = 1 - P(good)).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray import storage
from medray.data.quality_seed import (
    BAD,
    GOOD,
    LABELS,
    LabelledText,
)
from medray.data.stage import Stage, StageResult
from medray.errors import ConfigError, MedrayError

LOW_QUALITY = "low_quality"
_PREFIX = "__label__"
_EMPTY, _NEWLINE = pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string())


@dataclass
class QualityConfig:
    model_path: str = "out/data/quality.bin"  # written by training, read by the stage (local or s3://)
    threshold: float = 0.5  # keep a record when P(good) >= threshold
    text_column: str = "text"
    corpus: list[str] = field(default_factory=list)  # training corpus: files or folders (.txt, .jsonl, .parquet)
    max_chars: int = 0  # score only the first max_chars characters (0: all)
    # seed set: a JSONL file, else generated (good text from the tree's terms when `tree` is set)
    seed_path: Optional[str] = None  # noqa: UP045 (OmegaConf needs Optional)
    tree: Optional[str] = None  # noqa: UP045
    seed_docs: int = 400  # generated documents per class
    holdout_fraction: float = 0.2  # of the seed set, never trained on: the accuracy in the report
    # bootstrap
    rounds: int = 2
    band: float = 0.1  # borderline: |P(good) - threshold| < band; these go to the judge
    good_quantile: float = 0.7  # pseudo-label good: score >= this corpus quantile and >= threshold + band
    bad_quantile: float = 0.3  # pseudo-label bad: score <= this corpus quantile and <= threshold - band
    max_pseudo_per_class: int = 50000  # most confident first
    max_judge_per_round: int = 1000  # closest to the threshold first
    judge: str = "heuristic"  # a registered judge name, or "none"
    # fastText
    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 32
    bucket: int = 200000
    min_count: int = 1
    minn: int = 0  # character n-grams (0: off; they cost scoring speed)
    maxn: int = 0
    seed: int = 0
    batch_size: int = 4096  # documents per scoring batch while training

    def __post_init__(self) -> None:
        quantiles = 0.0 <= self.bad_quantile <= self.good_quantile <= 1.0
        checks = {
            "threshold": (0.0 < self.threshold < 1.0, "between 0 and 1"),
            "band": (0.0 <= self.band < 0.5, "in [0, 0.5)"),
            "holdout_fraction": (0.0 <= self.holdout_fraction < 1.0, "in [0, 1)"),
            "good_quantile": (quantiles, "0 <= bad_quantile <= good_quantile <= 1"),
            "rounds": (self.rounds >= 0, ">= 0"), "max_chars": (self.max_chars >= 0, ">= 0"),
            "epoch": (self.epoch >= 1, ">= 1"), "dim": (self.dim >= 1, ">= 1"),
            "word_ngrams": (self.word_ngrams >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
            "seed_docs": (self.seed_docs >= 1, ">= 1"),
        }
        for key, (ok, rule) in checks.items():
            if not ok:
                raise ConfigError(key, f"{getattr(self, key)!r} is out of range: needs {rule}")


def as_config(value: QualityConfig | dict | None) -> QualityConfig:
    """A `QualityConfig` from itself, a plain dict (keys and types checked) or None (defaults)."""
    if value is None:
        return QualityConfig()
    if isinstance(value, QualityConfig):
        return value
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(QualityConfig), value))  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "<top level>"
        message = "unknown key" if isinstance(exc, ConfigKeyError) else f"wrong type or value ({str(exc).splitlines()[0]})"
        raise ConfigError(str(key), message) from None


# ---- text as the model sees it -------------------------------------------------------------


def _byte_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per byte: what it becomes, and whether it is punctuation to set apart from words."""
    mapped = np.arange(256, dtype=np.uint8)
    mapped[ord("0"): ord("9") + 1] = ord("0")
    mapped[ord("\n")] = ord(" ")  # fastText ends an input at a newline
    punct = np.zeros(256, np.bool_)
    punct[list(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")] = True
    return mapped, punct


_MAPPED, _PUNCT = _byte_tables()


@numba.njit(cache=True, nogil=True)
def _normalize_bytes(data, offsets, mapped, punct, out, out_offsets):
    """One pass over the UTF-8 bytes of all documents (ASCII bytes never occur inside a multi-byte character)."""
    j = 0
    for d in range(len(offsets) - 1):
        out_offsets[d] = j
        for i in range(offsets[d], offsets[d + 1]):
            b = data[i]
            if punct[b]:
                out[j] = 32
                out[j + 1] = b
                out[j + 2] = 32
                j += 3
            else:
                out[j] = mapped[b]
                j += 1
    out_offsets[len(offsets) - 1] = j
    return j


def normalize_texts(texts: Sequence[str] | pa.Array | pa.ChunkedArray, max_chars: int = 0) -> pa.Array:
    """One line per document, lower case, punctuation set apart from words, every digit a 0.

    One Arrow kernel (lower case) and one compiled pass over the batch's
    bytes; training and scoring share it, so the model sees the same tokens.
    """
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr.cast(pa.large_string()), "")
    if max_chars:
        arr = pc.utf8_slice_codeunits(arr, 0, max_chars)
    arr = pc.utf8_lower(arr)
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset: arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8) if offsets[-1] > 0 else np.zeros(1, np.uint8)
    out = np.empty(3 * int(offsets[-1] - offsets[0]) + 1, np.uint8)
    out_offsets = np.empty(n + 1, np.int64)
    size = _normalize_bytes(data, offsets, _MAPPED, _PUNCT, out, out_offsets)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(out_offsets), pa.py_buffer(out[:size]))


def _order_key(text: str, seed: int) -> bytes:
    """A hash that orders and splits records the same way whatever order they came in."""
    return hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest()


# ---- the model ------------------------------------------------------------------------------


def _fasttext():
    """The `fasttext` package and its compiled module (whose `fasttext` class loads and predicts)."""
    try:
        import fasttext
        import fasttext_pybind
    except ImportError:
        raise MedrayError("the quality classifier needs fastText: pip install fasttext-wheel") from None
    return fasttext, fasttext_pybind


class QualityModel:
    """A trained fastText classifier with two labels; `score` gives P(good) as float32."""

    def __init__(self, ft: Any, max_chars: int = 0):
        labels = [lab.removeprefix(_PREFIX) for lab in ft.getLabels("strict")[0]]
        if sorted(labels) != sorted(LABELS):
            raise MedrayError(f"a quality model needs the labels good and bad, this one has {labels}")
        self._ft, self.max_chars = ft, max_chars

    @classmethod
    def load(cls, uri: str, max_chars: int = 0) -> QualityModel:
        """From a local path, or from `s3://` through a temporary local copy (fastText reads files only)."""
        ft = _fasttext()[1].fasttext()
        if not storage.exists(uri):
            raise MedrayError(f"{uri}: quality model not found (train one with `medray data quality-train`)")
        with tempfile.TemporaryDirectory(prefix="medray-quality-") as tmp:
            local = os.path.join(tmp, "model.bin")
            if storage.is_remote(uri):
                with storage.open_input_stream(uri, decompress=False) as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, 8 << 20)
            try:
                ft.loadModel(local if storage.is_remote(uri) else storage.filesystem_for(uri)[1])
            except (ValueError, RuntimeError) as err:
                raise MedrayError(f"{uri}: not a fastText model ({err})") from None
        return cls(ft, max_chars)

    def save(self, uri: str) -> None:
        """Write the model to a local path or `s3://`, atomically."""
        with tempfile.TemporaryDirectory(prefix="medray-quality-") as tmp:
            local = os.path.join(tmp, "model.bin")
            self._ft.saveModel(local)
            with open(local, "rb") as src, storage.atomic_output_stream(uri) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)

    def score(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """P(good) per text, in one call into fastText for the whole batch."""
        lines = normalize_texts(texts, self.max_chars)
        if not len(lines):
            return np.zeros(0, np.float32)
        # The trailing newline is the end-of-line token fastText saw in training.
        lines = pc.binary_join_element_wise(lines, _EMPTY, _NEWLINE).to_pylist()
        labels, probs = self._ft.multilinePredict(lines, 1, 0.0, "replace")
        good = _PREFIX + GOOD
        top = np.array([p[0] if len(p) else 0.5 for p in probs], np.float32)
        is_good = np.fromiter((bool(lab) and lab[0] == good for lab in labels), bool, len(labels))
        return np.clip(np.where(is_good, top, 1.0 - top), 0.0, 1.0).astype(np.float32)

    def accuracy(self, records: Sequence[LabelledText], threshold: float) -> float | None:
        if not records:
            return None
        predicted = self.score([r.text for r in records]) >= threshold
        truth = np.array([r.label == GOOD for r in records])
        return float((predicted == truth).mean())


def train_model(records: Sequence[LabelledText], config: QualityConfig | dict | None = None) -> QualityModel:
    """Supervised fastText on `records`, one thread and a fixed seed so that it is reproducible."""
    fasttext = _fasttext()[0]
    config = as_config(config)
    counts = Counter(r.label for r in records)
    if counts[GOOD] == 0 or counts[BAD] == 0:
        raise MedrayError(f"training needs both labels, got {dict(counts)}")
    texts = normalize_texts([r.text for r in records], config.max_chars).to_pylist()
    order = sorted(range(len(records)), key=lambda i: (_order_key(texts[i], config.seed), records[i].label))
    with tempfile.TemporaryDirectory(prefix="medray-quality-") as tmp:
        path = os.path.join(tmp, "train.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{_PREFIX}{records[i].label} {texts[i]}\n" for i in order)
        model = fasttext.train_supervised(
            input=path, epoch=config.epoch, lr=config.lr, wordNgrams=config.word_ngrams, dim=config.dim,
            bucket=config.bucket, minCount=config.min_count, minn=config.minn, maxn=config.maxn,
            loss="softmax", thread=1, seed=config.seed, verbose=0,
        )
    return QualityModel(model.f, config.max_chars)


def split_seed(records: Sequence[LabelledText], holdout_fraction: float, seed: int = 0
               ) -> tuple[list[LabelledText], list[LabelledText]]:
    """Train and held-out parts, chosen by a hash of each text (stable under reordering)."""
    cut = int(holdout_fraction * 2**32)
    train, holdout = [], []
    for r in records:
        key = int.from_bytes(_order_key(r.text, seed + 1)[:4], "big")
        (holdout if key < cut else train).append(r)
    return train, holdout


# ---- the scoring stage ----------------------------------------------------------------------


class QualityStage(Stage):
    """Adds `quality` (float32 P(good)) and drops records below the threshold as `low_quality`."""

    name = "quality"
    stateful = True

    def __init__(self, config: QualityConfig | dict | None = None):
        self.config = as_config(config)
        self._model: QualityModel | None = None

    def setup(self) -> None:
        self._model = QualityModel.load(self.config.model_path, self.config.max_chars)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}  # workers load their own copy in setup

    def process(self, batch: pa.Table) -> StageResult:
        if self._model is None:
            self.setup()
        scores = pa.array(self._model.score(batch.column(self.config.text_column)), pa.float32())
        if "quality" in batch.column_names:
            batch = batch.drop_columns(["quality"])
        batch = batch.append_column("quality", scores)
        reasons = pc.if_else(pc.less(scores, self.config.threshold), pa.scalar(LOW_QUALITY),
                             pa.scalar(None, pa.string()))
        return StageResult.from_reasons(batch, reasons)
