"""Near-duplicate removal: its settings, the stored `minhash` column, and the pipeline's stages.

Why this shape: exact dedup misses documents that differ by a few words
(a re-posted note, a template with one field changed). MinHash turns each
document's set of word n-grams into `num_perm` minima whose agreement rate
estimates Jaccard similarity; splitting the signature into `bands` of
`rows` values and bucketing on a hash of each band makes pairs above about
(1/bands)^(1/rows) collide in at least one band, without comparing all
pairs. Candidates are then checked against the full signatures (`verify`)
so that pairs that only share one band do not merge clusters, and the
connected components of the verified pairs are the clusters; the smallest
id of each is kept, so the result does not depend on input order or on how
records were split into batches.

Where the parts live: signatures and band keys in `minhash`, pairs and
clusters (and the local run, `find_near_duplicates`) in `near_dup_pairs`,
the distributed run (`near_duplicates_ray`) in `near_dup_ray`. The clean
phase adds the `minhash` column with `MinHashStage`; `NearDupFilter` drops
the ids a near-dup pass chose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from medray.data.minhash import minhash_with_word_counts
from medray.data.stage import Stage, StageResult
from medray.errors import ConfigError

REASON = "near_duplicate"
SIGNATURE_COLUMN = "minhash"
SIGNATURE_META = b"medray.minhash"  # field metadata: the settings a stored signature was made with


@dataclass
class NearDupConfig:
    """MinHash/LSH settings. With 128 permutations in 16 bands of 8 rows, pairs collide
    in some band from about Jaccard 0.7 (95% of pairs at 0.8, 99.7% at 0.86)."""

    ngram: int = 5  # words per shingle; shorter documents use all the words they have
    num_perm: int = 128
    bands: int = 16  # rows per band = num_perm / bands
    threshold: float = 0.8  # estimated Jaccard a verified pair must reach
    seed: int = 0
    max_bucket: int = 100  # larger buckets pair every member with their smallest id only (linear, not quadratic)
    verify: bool = True  # check candidates against the full signatures

    def __post_init__(self) -> None:
        self.validate()

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    def validate(self, prefix: str = "") -> NearDupConfig:
        """Raise ConfigError naming the first bad key (`prefix` is the section's dotted path)."""
        checks = [
            ("ngram", self.ngram >= 1, "must be at least 1"),
            ("num_perm", self.num_perm >= 1, "must be at least 1"),
            ("bands", self.bands >= 1, "must be at least 1"),
            ("bands", self.bands >= 1 and self.num_perm % self.bands == 0,
             f"must divide num_perm ({self.num_perm}) into bands of equal rows"),
            ("threshold", 0.0 < self.threshold <= 1.0, "must be in (0, 1]"),
            ("seed", self.seed >= 0, "must be >= 0"),
            ("max_bucket", self.max_bucket >= 2, "must be at least 2"),
        ]
        for key, ok, message in checks:
            if not ok:
                raise ConfigError(f"{prefix}{key}", f"{message}, got {getattr(self, key)!r}")
        return self

    def signature_tag(self) -> bytes:
        return f"ngram={self.ngram},num_perm={self.num_perm},seed={self.seed}".encode()


# ---- the stored signature column ---------------------------------------------------------------------


def signature_field(cfg: NearDupConfig) -> pa.Field:
    """The `minhash` column's field, tagged with the settings that made it (checked when read back)."""
    return pa.field(SIGNATURE_COLUMN, pa.list_(pa.uint32(), cfg.num_perm), metadata={SIGNATURE_META: cfg.signature_tag()})


def signature_array(signatures: np.ndarray, cfg: NearDupConfig) -> tuple[pa.Field, pa.Array]:
    """The signatures as a fixed-size-list column, with its field."""
    values = pa.array(np.ascontiguousarray(signatures, dtype=np.uint32).ravel())
    return signature_field(cfg), pa.FixedSizeListArray.from_arrays(values, cfg.num_perm)


def signatures_of(column: pa.ChunkedArray | pa.Array, cfg: NearDupConfig) -> np.ndarray:
    """A stored `minhash` column back to (n, num_perm) uint32, checked against the config."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_fixed_size_list(array.type) or array.type.list_size != cfg.num_perm:
        raise ConfigError("num_perm", f"the '{SIGNATURE_COLUMN}' column is {array.type}, "
                                      f"expected fixed_size_list<uint32>[{cfg.num_perm}]")
    values = array.values.slice(array.offset * cfg.num_perm, len(array) * cfg.num_perm)
    return values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False).reshape(-1, cfg.num_perm)


def check_signature_field(schema: pa.Schema, cfg: NearDupConfig) -> None:
    """A stored `minhash` column made with other settings cannot be compared: fail naming the key."""
    if SIGNATURE_COLUMN not in schema.names:
        return
    tag = (schema.field(SIGNATURE_COLUMN).metadata or {}).get(SIGNATURE_META)
    if tag is not None and tag != cfg.signature_tag():
        stored = dict(item.split("=") for item in tag.decode().split(","))
        key = next((k for k, v in stored.items() if str(getattr(cfg, k, v)) != v), "num_perm")
        raise ConfigError(key, f"the stored '{SIGNATURE_COLUMN}' column was made with {tag.decode()}, "
                               f"the config asks for {cfg.signature_tag().decode()}")


# ---- stages -------------------------------------------------------------------------------------------


class MinHashStage(Stage):
    """Adds the `minhash` column and keeps every record: signatures are made while the
    corpus streams, and the grouping runs later as a barrier over the stored shards."""

    name = "minhash"

    def __init__(self, cfg: NearDupConfig | None = None, text_column: str = "text"):
        self.cfg = (cfg or NearDupConfig()).validate()
        self.text_column = text_column

    def process(self, batch: pa.Table) -> StageResult:
        sig, words = minhash_with_word_counts(batch.column(self.text_column), self.cfg)
        field, array = signature_array(sig, self.cfg)
        if SIGNATURE_COLUMN in batch.column_names:
            batch = batch.drop_columns([SIGNATURE_COLUMN])
        counts = {"minhash_docs": batch.num_rows, "minhash_no_words": int((words == 0).sum())}
        return StageResult.keep_all(batch.append_column(field, array), counts)


class NearDupFilter(Stage):
    """Drops the ids a near-dup pass chose (reason `near_duplicate`, with `dup_of`), and the
    signature column from what it keeps (training shards do not need it)."""

    name = "near_dup"

    def __init__(self, dropped: pa.Table, drop_columns: tuple[str, ...] = (SIGNATURE_COLUMN,)):
        self.dropped = dropped.select(["id", "dup_of"])
        self.drop_columns = drop_columns
        self.lookup: dict | None = None

    def setup(self) -> None:
        self.lookup = dict(zip(self.dropped["id"].to_pylist(), self.dropped["dup_of"].to_pylist()))

    def process(self, batch: pa.Table) -> StageResult:
        if self.lookup is None:
            self.setup()
        batch = batch.drop_columns([c for c in self.drop_columns if c in batch.column_names])
        dup_of = [self.lookup.get(i) for i in batch.column("id").to_pylist()]
        result = StageResult.from_reasons(batch, [REASON if d is not None else None for d in dup_of])
        result.dropped = result.dropped.append_column("dup_of", pa.array([d for d in dup_of if d is not None], pa.string()))
        return result
