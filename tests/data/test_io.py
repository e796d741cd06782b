"""Readers and writers: every line becomes a record or a reject with its file, line and reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medray import storage
from medray.data.io import (
    ORDER_BITS,
    discover_inputs,
    read_chunks,
    read_shard,
    shard_name,
    write_shard,
)
from medray.errors import MedrayError

LINES = [
    json.dumps({"text": "Small left pleural effusion.", "url": "a"}).encode(),
    b"{not json",
    b"",  # blank: skipped and counted, not a record
    json.dumps({"title": "no text here"}).encode(),
    json.dumps({"text": 42}).encode(),
    b'{"text": "caf\xe9 latte"}',  # latin-1 byte: not UTF-8
    json.dumps({"text": "Heart size normal.", "id": "orig-7"}).encode(),
    b"[1, 2]",
    json.dumps({"text": None}).encode(),
]
EXPECTED_REJECTS = {2: "bad_json", 4: "missing_text", 5: "text_not_string", 6: "bad_encoding", 8: "bad_json", 9: "missing_text"}


def write_corpus(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.jsonl").write_bytes(b"\n".join(LINES) + b"\n")
    with gzip.open(root / "sub" / "b.jsonl.gz", "wb") as fh:
        fh.write(b"\n".join(LINES))  # no final newline: the last line still counts
    with pa.CompressedOutputStream(str(root / "c.jsonl.zst"), "zstd") as out:
        out.write(b"\n".join(LINES) + b"\n")
    pq.write_table(pa.table({"text": ["Possible pneumonia.", None, "No effusion."], "lang": ["en", "en", "en"]}), root / "d.parquet")
    (root / "notes.txt").write_text("ignored: not a corpus format\n")


def test_every_line_is_a_record_or_a_reject(tmp_path: Path):
    write_corpus(tmp_path)
    files = discover_inputs(str(tmp_path))
    assert [f.name for f in files] == ["a.jsonl", "c.jsonl.zst", "d.parquet", "sub/b.jsonl.gz"]
    for f in files[:2] + files[3:]:
        chunks = list(read_chunks(f, chunk_lines=4))
        assert [c.lines for c in chunks] == [4, 4, 1]
        records = pa.concat_tables([c.records for c in chunks])
        rejects = pa.concat_tables([c.rejects for c in chunks])
        assert records.column("id").to_pylist() == [f"{f.name}:1", f"{f.name}:7"]
        assert records.column("text").to_pylist() == ["Small left pleural effusion.", "Heart size normal."]
        assert [json.loads(m) for m in records.column("meta").to_pylist()] == [{"url": "a"}, {"id": "orig-7"}]
        assert records.column("source").to_pylist() == [f.name, f.name]
        assert records.column("_order").to_pylist() == [(f.index << ORDER_BITS) | 1, (f.index << ORDER_BITS) | 7]
        got = dict(zip(rejects.column("line").to_pylist(), rejects.column("reason").to_pylist()))
        assert got == EXPECTED_REJECTS
        assert set(rejects.column("file").to_pylist()) == {f.name}
        assert rejects.column("raw").to_pylist()[0] == b"{not json"
        assert sum(c.blank_lines for c in chunks) == 1
        # in = kept + rejected, blank lines apart
        assert sum(c.lines - c.blank_lines for c in chunks) == records.num_rows + rejects.num_rows


def test_parquet_input_rejects_null_text(tmp_path: Path):
    write_corpus(tmp_path)
    parquet = [f for f in discover_inputs(str(tmp_path)) if f.is_parquet][0]
    (chunk,) = list(read_chunks(parquet, chunk_lines=10))
    assert chunk.records.column("id").to_pylist() == ["d.parquet:1", "d.parquet:3"]
    assert chunk.rejects.column("reason").to_pylist() == ["missing_text"]
    assert json.loads(chunk.records.column("meta")[0].as_py()) == {"lang": "en"}


def test_skipped_chunks_are_counted_not_parsed(tmp_path: Path):
    write_corpus(tmp_path)
    (f,) = [f for f in discover_inputs(str(tmp_path)) if f.name == "a.jsonl"]
    chunks = list(read_chunks(f, chunk_lines=4, skip_chunks=frozenset({0})))
    assert chunks[0].records.num_rows == 0 and chunks[0].lines == 4
    assert chunks[1].records.column("id").to_pylist() == ["a.jsonl:7"]


def test_missing_input_and_empty_folder_are_named(tmp_path: Path):
    with pytest.raises(MedrayError, match="nowhere"):
        discover_inputs(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(MedrayError, match="no .jsonl"):
        discover_inputs(str(tmp_path / "empty"))


def test_truncated_gzip_names_the_file(tmp_path: Path):
    data = gzip.compress(b"\n".join(LINES) * 2000)
    (tmp_path / "broken.jsonl.gz").write_bytes(data[: len(data) // 2])
    (f,) = discover_inputs(str(tmp_path))
    with pytest.raises(MedrayError, match="broken.jsonl.gz"):
        list(read_chunks(f, chunk_lines=1000))


def test_shards_round_trip_on_s3(s3_prefix: str, tmp_path: Path):
    write_corpus(tmp_path)
    for path in sorted(tmp_path.rglob("*.*")):
        storage.atomic_write_bytes(f"{s3_prefix}/in/{path.relative_to(tmp_path)}", path.read_bytes())
    files = discover_inputs(f"{s3_prefix}/in")
    assert [f.name for f in files] == ["a.jsonl", "c.jsonl.zst", "d.parquet", "sub/b.jsonl.gz"]
    chunk = next(read_chunks(files[3], chunk_lines=100))
    assert chunk.records.column("id").to_pylist() == ["sub/b.jsonl.gz:1", "sub/b.jsonl.gz:7"]
    entry = write_shard(chunk.records, f"{s3_prefix}/out", shard_name(3, 0))
    assert entry["uri"].endswith("/out/part-00003-00000.parquet") and entry["rows"] == 2
    assert read_shard(f"{s3_prefix}/out", "part-00003-00000").equals(chunk.records)
