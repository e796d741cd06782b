"""Readers and writers of the text pipeline: JSONL (plain, .gz, .zst) and parquet in, parquet shards out.

Every record gets the normalised schema (`id`, `text`, `source`, `meta`)
plus `_order`, an integer that sorts records in input order (file, then
line), so "keep the first occurrence" means the same thing on every
cluster. Ids are `<file relative to the input root>:<line>`, stable from
run to run. A line that cannot become a record (bad JSON or encoding, no
text, text that is not a string) goes to the rejects with its file, line,
reason and raw bytes: one bad record never stops the job and is never lost.
Files are read as streams in chunks of `chunk_lines` lines; a chunk is the
unit of output (one shard) and of resume.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from medray import storage
from medray.data.stage import RECORD_SCHEMA
from medray.errors import MedrayError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".ndjson")
TEXT_SUFFIXES = (".txt", ".txt.gz", ".txt.zst")
PARQUET_SUFFIXES = (".parquet",)
ORDER_BITS = 36  # line number bits in `_order`; the file index sits above them

READ_SCHEMA = RECORD_SCHEMA.append(pa.field("_order", pa.int64()))
REJECT_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.binary()),
    ]
)


@dataclass(frozen=True)
class InputFile:
    index: int  # position in the sorted input list: part of every shard name and order key
    uri: str
    name: str  # relative to the input root: the `source` of its records and the prefix of their ids

    @property
    def is_parquet(self) -> bool:
        return self.uri.endswith(PARQUET_SUFFIXES)


def discover_inputs(roots: list[str] | str) -> list[InputFile]:
    """The corpus files under each root (a file or a folder, local or s3://), in a stable order."""
    roots = [roots] if isinstance(roots, str) else list(roots)
    if not roots:
        raise MedrayError("no input given")
    files: list[tuple[str, str]] = []
    for root in roots:
        found = storage.list_files(root, suffixes=JSONL_SUFFIXES + PARQUET_SUFFIXES)
        if not found:
            raise MedrayError(f"{root}: no .jsonl, .jsonl.gz, .jsonl.zst or .parquet files")
        base = root.rstrip("/")
        for uri in found:
            name = posixpath.basename(uri) if uri == base else uri[len(base):].lstrip("/")
            files.append((uri, name if len(roots) == 1 else posixpath.join(posixpath.basename(base), name)))
    if len({name for _, name in files}) != len(files):
        raise MedrayError("two input files would share a name; give folders with distinct names")
    return [InputFile(i, uri, name) for i, (uri, name) in enumerate(files)]


def order_key(file_index: int, line: int) -> int:
    return (file_index << ORDER_BITS) | line


@dataclass
class Chunk:
    index: int  # chunk number within the file
    records: pa.Table  # READ_SCHEMA
    rejects: pa.Table  # REJECT_SCHEMA
    lines: int  # lines (or parquet rows) this chunk covered, blank lines included
    blank_lines: int


class _ChunkBuilder:
    def __init__(self, file: InputFile, text_field: str):
        self.file, self.text_field = file, text_field
        self.reset()

    def reset(self) -> None:
        self.ids, self.texts, self.metas, self.orders = [], [], [], []
        self.rejects: list[tuple] = []
        self.lines = self.blank = 0

    def add_line(self, number: int, raw: bytes) -> None:
        self.lines += 1
        stripped = raw.strip()
        if not stripped:
            self.blank += 1
            return
        try:
            line = stripped.decode("utf-8")
        except UnicodeDecodeError as err:
            return self.reject(number, "bad_encoding", str(err), raw)
        try:
            record = json.loads(line)
        except ValueError as err:
            return self.reject(number, "bad_json", str(err), raw)
        if not isinstance(record, dict):
            return self.reject(number, "bad_json", f"a JSON {type(record).__name__}, not an object", raw)
        if self.text_field not in record or record[self.text_field] is None:
            return self.reject(number, "missing_text", f"no {self.text_field!r} field", raw)
        text = record.pop(self.text_field)
        if not isinstance(text, str):
            return self.reject(number, "text_not_string", f"{self.text_field!r} is a {type(text).__name__}", raw)
        self.add_record(number, text, json.dumps(record, sort_keys=True, ensure_ascii=False) if record else "{}")

    def add_record(self, number: int, text: str, meta: str) -> None:
        self.ids.append(f"{self.file.name}:{number}")
        self.texts.append(text)
        self.metas.append(meta)
        self.orders.append(order_key(self.file.index, number))

    def reject(self, number: int, reason: str, detail: str, raw: bytes) -> None:
        self.rejects.append((self.file.name, number, reason, detail[:500], bytes(raw)))

    def build(self, index: int) -> Chunk:
        n = len(self.ids)
        records = pa.table(
            [pa.array(self.ids, pa.string()), pa.array(self.texts, pa.string()),
             pa.array([self.file.name] * n, pa.string()), pa.array(self.metas, pa.string()),
             pa.array(self.orders, pa.int64())],
            schema=READ_SCHEMA,
        )
        columns = list(zip(*self.rejects)) if self.rejects else [[]] * 5
        rejects = pa.table([pa.array(col, field.type) for col, field in zip(columns, REJECT_SCHEMA)], schema=REJECT_SCHEMA)
        chunk = Chunk(index, records, rejects, self.lines, self.blank)
        self.reset()
        return chunk


def read_chunks(file: InputFile, chunk_lines: int, *, text_field: str = "text",
                skip_chunks: frozenset[int] = frozenset()) -> Iterator[Chunk]:
    """The file's records in chunks of `chunk_lines` lines; chunks in `skip_chunks` are counted, not parsed."""
    if chunk_lines < 1:
        raise MedrayError("chunk_lines must be at least 1")
    if file.is_parquet:
        yield from _parquet_chunks(file, chunk_lines, text_field, skip_chunks)
        return
    builder = _ChunkBuilder(file, text_field)
    index, number = 0, 0
    try:
        with storage.open_input_stream(file.uri) as stream:
            for raw in iter_lines(stream):
                number += 1
                if index in skip_chunks:
                    builder.lines += 1
                else:
                    builder.add_line(number, raw)
                if builder.lines == chunk_lines:
                    yield builder.build(index)
                    index += 1
    except (OSError, EOFError) as err:  # a truncated .gz / .zst, or a failing store
        raise MedrayError(f"{file.uri}: unreadable after line {number}: {err}") from err
    if builder.lines:
        yield builder.build(index)


def iter_lines(stream, block: int = 1 << 22) -> Iterator[bytes]:
    """Lines of a binary stream, read in large blocks (a final line without a newline included)."""
    rest = b""
    while True:
        data = stream.read(block)
        if not data:
            break
        data = rest + data
        lines = data.split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def iter_texts(paths: str | list[str] | tuple[str, ...], text_field: str = "text", skipped: Counter | None = None,
               chunk_lines: int = 10_000) -> Iterator[str]:
    """Documents of corpus files or folders, streamed, for training tokenizers and classifiers.

    .txt files hold a document per line; .jsonl / .parquet go through the
    pipeline's reader, so a malformed line is counted in `skipped` under its
    reject reason instead of stopping the run.
    """
    skipped = skipped if skipped is not None else Counter()
    roots = [paths] if isinstance(paths, str) else list(paths)
    for root in roots:
        found = storage.list_files(root, suffixes=TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)
        if not found:
            raise MedrayError(f"{root}: no .txt, .jsonl or .parquet files")
        for uri in found:
            if uri.endswith(TEXT_SUFFIXES):
                with storage.open_input_stream(uri) as stream:
                    for raw in iter_lines(stream):
                        line = raw.decode("utf-8", "replace").strip()
                        if line:
                            yield line
                continue
            file = InputFile(0, uri, posixpath.basename(uri))
            for chunk in read_chunks(file, chunk_lines, text_field=text_field):
                skipped.update(chunk.rejects.column("reason").to_pylist())
                yield from chunk.records.column("text").to_pylist()


def _parquet_chunks(file: InputFile, chunk_lines: int, text_field: str, skip_chunks: frozenset[int]) -> Iterator[Chunk]:
    with storage.open_input_file(file.uri) as handle:
        reader = pq.ParquetFile(handle)
        if text_field not in reader.schema_arrow.names:
            raise MedrayError(f"{file.uri}: no {text_field!r} column (columns: {', '.join(reader.schema_arrow.names)})")
        text_type = reader.schema_arrow.field(text_field).type
        row = 0
        for index, batch in enumerate(reader.iter_batches(batch_size=chunk_lines)):
            builder = _ChunkBuilder(file, text_field)
            if index in skip_chunks:
                builder.lines = batch.num_rows
                row += batch.num_rows
                yield builder.build(index)
                continue
            data = batch.to_pylist()
            for record in data:
                row += 1
                builder.lines += 1
                text = record.pop(text_field)
                if text is None:
                    builder.reject(row, "missing_text", f"{text_field!r} is null", _raw_json(record))
                elif not isinstance(text, str):
                    builder.reject(row, "text_not_string", f"{text_field!r} is {text_type}", _raw_json({text_field: text, **record}))
                else:
                    builder.add_record(row, text, json.dumps(record, sort_keys=True, ensure_ascii=False, default=str) if record else "{}")
            yield builder.build(index)


def _raw_json(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, default=str).encode()


# ---- shards out ------------------------------------------------------------------------------------


def shard_name(file_index: int, chunk: int) -> str:
    """Deterministic shard name: the same input and config give the same names on every run."""
    return f"part-{file_index:05d}-{chunk:05d}"


def write_shard(table: pa.Table, folder: str, shard: str) -> dict:
    """One parquet shard, written atomically; returns its manifest entry."""
    uri = storage.join(folder, f"{shard}.parquet")
    storage.write_parquet(table, uri, compression="zstd")
    return {"shard": shard, "uri": uri, "rows": table.num_rows}


def read_shard(folder: str, shard: str, columns: list[str] | None = None) -> pa.Table:
    return storage.read_parquet(storage.join(folder, f"{shard}.parquet"), columns=columns)
