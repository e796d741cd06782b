"""Tokenise documents and pack them into fixed-length rows: the shards continual pretraining reads.

Layout of a packed shard (one row per training sequence, `seq_len` tokens):

- `input_ids`: fixed_size_list<int32>[seq_len]. Documents in input order,
  each followed by `<|endoftext|>` (`add_eos`), concatenated and cut every
  `seq_len` tokens, so a document may continue into the next row.
- `position_ids`: fixed_size_list<int32>[seq_len], 0 at every document start
  and at every row start, counting up within each segment. This is what
  document-masked attention needs: flash-attn varlen and Hugging Face's
  packed-sequence path take segment boundaries from `position_ids == 0`, so
  no token attends across a document boundary. A document cut at a row end
  therefore restarts at 0 in the next row (attention never crosses rows
  anyway; a row that began mid-count would hide its first segment from the
  varlen boundaries).
- `num_tokens`: int32, the real tokens in the row (EOS included): `seq_len`
  except in a shard's last row, padded with `<|pad|>`, whose pad tokens
  form their own segment (positions from 0) and must be kept out of the
  loss (`loss_mask` adds that as a per-token column when asked).

Each shard is packed on its own (its last row padded or dropped), so a
shard's bytes depend only on its records and the config: a resumed job
rewrites a lost shard identically. Packing is NumPy over whole arrays
(boundaries from cumulative sums); tokenisation is an exact compiled pre-tokenizer and word cache
in front of the fast tokenizer (`fast_bpe`), or the tokenizer's batch encoder where that cannot
be exact.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medray import storage
from medray.data.fast_bpe import FastByteLevelBPE
from medray.data.stage import Stage, StageResult
from medray.data.tokenizer import load_tokenizer
from medray.errors import ConfigError, MedrayError

REMAINDER_MODES = ("pad", "drop")
ROW_GROUP_BYTES = 64 << 20  # a Ray Data read task per row group: large enough, but not a whole shard


@dataclass
class PackConfig:
    tokenizer: str = "out/tokenizer"  # a folder written by `medray tokenizer train` (local or s3://)
    seq_len: int = 2048
    add_eos: bool = True  # EOS after every document (the separator the model learns)
    split_long_docs: bool = True  # False: cap each document at seq_len tokens (EOS included) and count the rest as truncated
    remainder: str = "pad"  # a shard's last partial row: "pad" (pad id, num_tokens < seq_len) or "drop"
    batch_size: int = 1024  # documents per encode call
    text_column: str = "text"
    literal_special_tokens: bool = True  # "<|endoftext|>" typed in a document is text, not an EOS
    threads: int = 1  # tokenizer threads per worker; 0 = the library's default (every core)
    fast_encoder: bool = True  # exact Numba pre-tokenizer + word cache in front of the HF tokenizer; falls back to HF where it cannot be exact
    loss_mask: bool = False  # also write a per-token int8 loss_mask column (0 on pad)
    compression: str = "zstd"
    row_group_rows: int = 0  # rows per parquet row group (a Ray Data read unit); 0 = about 64 MB of rows

    def validate(self) -> PackConfig:
        if self.seq_len < 2:
            raise ConfigError("pack.seq_len", f"must be at least 2, got {self.seq_len}")
        if self.remainder not in REMAINDER_MODES:
            raise ConfigError("pack.remainder", f"{self.remainder!r}: expected one of {', '.join(REMAINDER_MODES)}")
        if self.batch_size < 1:
            raise ConfigError("pack.batch_size", f"must be at least 1, got {self.batch_size}")
        if self.row_group_rows < 0:
            raise ConfigError("pack.row_group_rows", f"must be 0 or more, got {self.row_group_rows}")
        if self.threads < 0:
            raise ConfigError("pack.threads", f"must be 0 or more, got {self.threads}")
        return self


def special_ids(tokenizer) -> tuple[int, int]:
    """(eos_id, pad_id) of a transformers tokenizer; pad falls back to EOS (pads never reach the loss)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise MedrayError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no eos_token: packing needs one")
    pad = tokenizer.pad_token_id
    return int(eos), int(eos if pad is None else pad)


# ---- tokenising -------------------------------------------------------------------------------------


def encode_texts(backend, texts: pa.Array | pa.ChunkedArray, batch_size: int = 1024) -> pa.ListArray:
    """Token ids of every text as list<int32>, through `tokenizers.Tokenizer.encode_batch_fast`."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts, "")
    lengths, parts = [], []
    for start in range(0, len(texts), batch_size):
        encodings = backend.encode_batch_fast(texts.slice(start, batch_size).to_pylist(), add_special_tokens=False)
        lengths.append(np.fromiter((len(e) for e in encodings), np.int32, len(encodings)))
        parts.extend(np.asarray(e.ids, np.int32) for e in encodings)
    lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, np.int32)
    offsets = np.zeros(len(lengths_all) + 1, np.int32)
    np.cumsum(lengths_all, out=offsets[1:])
    values = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32()))


class TokenizeStage(Stage):
    """Adds `input_ids` (list<int32>) and `n_tokens` (int32); a text with no tokens leaves as `no_tokens`."""

    name = "tokenize"
    stateful = True

    def __init__(self, config: PackConfig):
        self.config = config.validate()
        self.tokenizer = self.backend = self.encoder = None
        self.eos_id = self.pad_id = None  # from the tokenizer, in `setup`

    def __getstate__(self) -> dict:
        # Ship the config, not a loaded tokenizer: each worker loads its own in `setup`.
        return {**self.__dict__, "tokenizer": None, "backend": None, "encoder": None}

    def setup(self) -> None:
        if self.config.threads:
            # One worker per CPU is how the pipeline scales; a tokenizer that also
            # spawns a thread per core in each worker would oversubscribe the node.
            os.environ.setdefault("RAYON_NUM_THREADS", str(self.config.threads))
            os.environ["TOKENIZERS_PARALLELISM"] = "false" if self.config.threads == 1 else "true"
        self.tokenizer = load_tokenizer(self.config.tokenizer)
        self.eos_id, self.pad_id = special_ids(self.tokenizer)
        backend = self.tokenizer.backend_tokenizer
        backend.no_truncation()
        backend.no_padding()
        backend.encode_special_tokens = self.config.literal_special_tokens
        self.backend = backend
        # None when the tokenizer is not one the fast encoder reproduces exactly: HF encodes then.
        self.encoder = FastByteLevelBPE.from_backend(backend) if self.config.fast_encoder else None

    def process(self, batch: pa.Table) -> StageResult:
        if self.backend is None:
            self.setup()
        column = self.config.text_column
        if column not in batch.column_names:
            raise MedrayError(f"tokenize: no {column!r} column (columns: {', '.join(batch.column_names)})")
        texts = batch.column(column)
        if self.encoder is not None:
            ids = self.encoder.encode(texts)
        else:
            ids = encode_texts(self.backend, texts, self.config.batch_size)
        n_tokens = pc.list_value_length(ids).cast(pa.int32())
        table = batch.append_column("n_tokens", n_tokens).append_column("input_ids", ids)
        empty = pc.equal(n_tokens, 0)
        reasons = pc.if_else(empty, pa.scalar("no_tokens"), pa.scalar(None, pa.string()))
        kept_tokens = int(pc.sum(n_tokens).as_py() or 0)
        return StageResult.from_reasons(table, reasons, {"tokens": kept_tokens})


# ---- packing ----------------------------------------------------------------------------------------


def packed_schema(seq_len: int, loss_mask: bool = False) -> pa.Schema:
    fields = [
        pa.field("input_ids", pa.list_(pa.int32(), seq_len)),
        pa.field("position_ids", pa.list_(pa.int32(), seq_len)),
        pa.field("num_tokens", pa.int32()),
    ]
    if loss_mask:
        fields.append(pa.field("loss_mask", pa.list_(pa.int8(), seq_len)))
    return pa.schema(fields)


def _flat_ids(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(all token ids, tokens per document) of a list<int> column; a null list counts as empty."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.list_(pa.int32()))
    lengths = pc.fill_null(pc.list_value_length(ids), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = ids.flatten().to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return values, lengths


def _within_doc_index(lengths: np.ndarray) -> np.ndarray:
    """For every token, its index inside its document."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts


def segment_positions(starts: np.ndarray, seq_len: int) -> np.ndarray:
    """Positions restarting at every segment start and every row start, for whole rows of `seq_len`."""
    starts = starts.copy()
    starts[::seq_len] = True
    index = np.arange(len(starts), dtype=np.int64)
    last_start = np.maximum.accumulate(np.where(starts, index, 0))
    return (index - last_start).astype(np.int32)


class Packer:
    """Packs one shard's documents, fed in batches, into `seq_len` rows; `finish` closes the shard.

    The rows do not depend on how the shard's documents are split into
    batches: a partial row is carried over to the next `add`.
    """

    def __init__(self, seq_len: int, eos_id: int, pad_id: int, *, add_eos: bool = True,
                 split_long_docs: bool = True, remainder: str = "pad", loss_mask: bool = False):
        if remainder not in REMAINDER_MODES:
            raise ConfigError("pack.remainder", f"{remainder!r}: expected one of {', '.join(REMAINDER_MODES)}")
        self.seq_len, self.eos_id, self.pad_id = seq_len, eos_id, pad_id
        self.add_eos, self.split_long_docs, self.remainder, self.loss_mask = add_eos, split_long_docs, remainder, loss_mask
        self.schema = packed_schema(seq_len, loss_mask)
        self._ids = np.zeros(0, np.int32)
        self._starts = np.zeros(0, bool)
        self.stats = Counter(docs=0, doc_tokens=0, eos_tokens=0, truncated_tokens=0, rows=0, tokens=0,
                             pad_tokens=0, dropped_tokens=0)

    @classmethod
    def from_config(cls, config: PackConfig, eos_id: int, pad_id: int) -> Packer:
        config.validate()
        return cls(config.seq_len, eos_id, pad_id, add_eos=config.add_eos, split_long_docs=config.split_long_docs,
                   remainder=config.remainder, loss_mask=config.loss_mask)

    def add(self, batch: pa.Table | pa.Array | pa.ChunkedArray) -> pa.Table:
        """Documents in order (a table with `input_ids`, or the list column itself); returns the full rows."""
        ids = batch.column("input_ids") if isinstance(batch, pa.Table) else batch
        values, lengths = _flat_ids(ids)
        self.stats["docs"] += len(lengths)
        self.stats["doc_tokens"] += len(values)
        if not self.split_long_docs:
            cap = self.seq_len - int(self.add_eos)
            keep = _within_doc_index(lengths) < cap
            self.stats["truncated_tokens"] += int(len(values) - keep.sum())
            values, lengths = values[keep], np.minimum(lengths, cap)
        tokens, starts = self._with_separators(values, lengths)
        tokens = np.concatenate([self._ids, tokens])
        starts = np.concatenate([self._starts, starts])
        full = len(tokens) // self.seq_len * self.seq_len
        self._ids, self._starts = tokens[full:], starts[full:]
        return self._rows(tokens[:full], starts[:full], np.full(full // self.seq_len, self.seq_len, np.int32))

    def finish(self) -> pa.Table:
        """The shard's last, partial row (padded), or nothing (`remainder="drop"`, or no partial row)."""
        rest, rest_starts = self._ids, self._starts
        self._ids, self._starts = np.zeros(0, np.int32), np.zeros(0, bool)
        if not len(rest) or self.remainder == "drop":
            self.stats["dropped_tokens"] += len(rest)
            return self.schema.empty_table()
        pad = self.seq_len - len(rest)
        pad_starts = np.zeros(pad, bool)
        pad_starts[:1] = True  # the pad is a segment of its own: real tokens never attend to it
        tokens = np.concatenate([rest, np.full(pad, self.pad_id, np.int32)])
        starts = np.concatenate([rest_starts, pad_starts])
        self.stats["pad_tokens"] += pad
        return self._rows(tokens, starts, np.array([len(rest)], np.int32))

    def _with_separators(self, values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token stream with EOS after each document, and a flag on each document's first token."""
        spans = lengths + int(self.add_eos)
        ends = np.cumsum(spans)
        if self.add_eos:
            tokens = np.empty(int(ends[-1]) if len(ends) else 0, np.int32)
            is_eos = np.zeros(len(tokens), bool)
            is_eos[ends - 1] = True
            tokens[is_eos] = self.eos_id
            tokens[~is_eos] = values
            self.stats["eos_tokens"] += len(ends)
        else:
            tokens = values
        starts = np.zeros(len(tokens), bool)
        starts[(ends - spans)[spans > 0]] = True
        return tokens, starts

    def _rows(self, tokens: np.ndarray, starts: np.ndarray, num_tokens: np.ndarray) -> pa.Table:
        if not len(tokens):
            return self.schema.empty_table()
        seq_len = self.seq_len
        columns = [
            pa.FixedSizeListArray.from_arrays(pa.array(tokens, pa.int32()), seq_len),
            pa.FixedSizeListArray.from_arrays(pa.array(segment_positions(starts, seq_len), pa.int32()), seq_len),
            pa.array(num_tokens, pa.int32()),
        ]
        if self.loss_mask:
            mask = (np.arange(seq_len)[None, :] < num_tokens[:, None]).astype(np.int8).ravel()
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(mask, pa.int8()), seq_len))
        self.stats["rows"] += len(num_tokens)
        self.stats["tokens"] += int(num_tokens.sum())
        return pa.Table.from_arrays(columns, schema=self.schema)


def pack_table(batch: pa.Table | pa.Array, config: PackConfig, eos_id: int, pad_id: int) -> tuple[pa.Table, dict]:
    """One shard's tokenised documents as packed rows, with the packer's counts."""
    packer = Packer.from_config(config, eos_id, pad_id)
    table = pa.concat_tables([packer.add(batch), packer.finish()])
    return table, dict(packer.stats)


# ---- writing ----------------------------------------------------------------------------------------


class _HashingSink:
    """A write-only file that hashes and counts what passes through it (the parquet writer needs `tell`)."""

    def __init__(self, raw):
        self.raw, self.sha256, self.size, self.closed = raw, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.raw.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True  # the atomic stream underneath is closed (and published) by its owner


class PackedShardWriter:
    """Streams packed rows into one parquet shard, written atomically; `close` returns its manifest entry."""

    def __init__(self, uri: str, schema: pa.Schema, compression: str = "zstd", row_group_rows: int = 0):
        self.uri, self.schema = str(uri), schema
        self.seq_len = schema.field("input_ids").type.list_size
        self.rows_per_group = row_group_rows or max(1, ROW_GROUP_BYTES // (self.seq_len * 8))
        self._atomic = storage.atomic_output_stream(self.uri)
        self._sink = _HashingSink(self._atomic.__enter__())
        # Plain + zstd: smaller than dictionary pages for token ids, and position runs compress to little.
        self._writer = pq.ParquetWriter(self._sink, schema, compression=compression, use_dictionary=False)
        self.rows = self.tokens = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._closed = False

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.rows += table.num_rows
        self.tokens += int(pc.sum(table.column("num_tokens")).as_py())
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.rows_per_group:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write whole row groups of `rows_per_group` rows, each from one contiguous chunk.

        Row groups and pages then fall in the same places however the rows
        arrived, so the same rows always give the same file bytes.
        """
        pending = pa.concat_tables(self._pending).combine_chunks() if self._pending else None
        self._pending, self._pending_rows = [], 0
        if pending is None:
            return
        start = 0
        while pending.num_rows - start >= self.rows_per_group or (final and start < pending.num_rows):
            group = pending.slice(start, self.rows_per_group).combine_chunks()
            self._writer.write_table(group, row_group_size=self.rows_per_group)
            start += group.num_rows
        if start < pending.num_rows:
            self._pending, self._pending_rows = [pending.slice(start)], pending.num_rows - start

    def close(self) -> dict:
        self._closed = True
        try:
            self._flush(final=True)
            self._writer.close()
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)
        return {
            "uri": self.uri,
            "rows": self.rows,
            "tokens": self.tokens,  # real tokens, EOS included, pad excluded
            "pad_tokens": self.rows * self.seq_len - self.tokens,
            "seq_len": self.seq_len,
            "bytes": self._sink.size,
            "sha256": self._sink.sha256.hexdigest(),
        }

    def abort(self, err: BaseException) -> None:
        self._atomic.__exit__(type(err), err, err.__traceback__)

    def __enter__(self) -> PackedShardWriter:
        return self

    def __exit__(self, kind, err, tb) -> None:
        if err is not None and not self._closed:
            self._closed = True
            try:
                self._writer.close()
            finally:
                self.abort(err)


def write_packed_shard(table: pa.Table, uri: str, compression: str = "zstd", row_group_rows: int = 0) -> dict:
    """Write packed rows as one parquet file (local or s3://); returns the shard's manifest entry."""
    with PackedShardWriter(uri, table.schema, compression, row_group_rows) as writer:
        writer.write(table)
        return writer.close()


def pack_shard(batches: Iterable[pa.Table], tokenize: TokenizeStage, uri: str) -> dict:
    """Tokenise, pack and write one shard, streaming its batches; the manifest entry with pack counts.

    Records the tokenizer drops (`no_tokens`) are counted under `dropped`.
    """
    config = tokenize.config
    if tokenize.backend is None:
        tokenize.setup()
    packer = Packer.from_config(config, tokenize.eos_id, tokenize.pad_id)
    dropped: Counter = Counter()
    with PackedShardWriter(uri, packer.schema, config.compression, config.row_group_rows) as writer:
        for batch in batches:
            result = tokenize.process(batch)
            dropped.update(result.reason_counts())
            writer.write(packer.add(result.kept))
        writer.write(packer.finish())
        entry = writer.close()
    stats = dict(packer.stats)
    entry.update(docs=stats["docs"], doc_tokens=stats["doc_tokens"], eos_tokens=stats["eos_tokens"],
                 truncated_tokens=stats["truncated_tokens"], dropped_tokens=stats["dropped_tokens"],
                 dropped=dict(dropped))
    return entry
