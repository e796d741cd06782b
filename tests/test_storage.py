"""medray.storage against a local directory and a real S3 endpoint (moto over HTTP)."""

from __future__ import annotations

import gzip
import os

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from medray import storage
from medray.errors import SourceError


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    """The same tests on both backends: a temp dir, or a fresh prefix in the test bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_prefix")


def _table() -> pa.Table:
    return pa.table({"id": [3, 1, 2], "text": ["fever", "cough", "rash"]})


def test_bytes_and_text_round_trip(root):
    raw = bytes(range(256)) * 3
    storage.atomic_write_bytes(storage.join(root, "a", "blob.bin"), raw)
    storage.write_text(storage.join(root, "note.txt"), "pneumonie\nœdème\n")

    assert storage.read_bytes(storage.join(root, "a", "blob.bin")) == raw
    assert storage.read_text(storage.join(root, "note.txt")) == "pneumonie\nœdème\n"
    assert storage.exists(storage.join(root, "note.txt"))
    assert storage.exists(storage.join(root, "a"))  # a directory / S3 prefix
    assert not storage.exists(storage.join(root, "nope.txt"))


def test_overwrite_replaces_content(root):
    uri = storage.join(root, "x.txt")
    storage.write_text(uri, "old")
    storage.write_text(uri, "new")
    assert storage.read_text(uri) == "new"


def test_parquet_round_trip(root):
    uri = storage.join(root, "shards", "part-0.parquet")
    storage.write_parquet(_table(), uri, compression="zstd")

    back = storage.read_parquet(uri)
    assert back.equals(_table())
    assert storage.read_parquet(uri, columns=["text"]).column("text").to_pylist() == [
        "fever",
        "cough",
        "rash",
    ]
    with storage.open_input_file(uri) as f:
        assert f.seekable()
        meta = pq.read_metadata(f)
        assert meta.num_rows == 3
        assert meta.row_group(0).column(0).compression == "ZSTD"


def test_list_files_sorted_filtered_and_recursive(root):
    for name in ["b.jsonl", "a.jsonl", "sub/c.jsonl.gz", "sub/deep/d.jsonl", "notes.md"]:
        storage.write_text(storage.join(root, name), name)

    everything = storage.list_files(root)
    assert everything == sorted(everything)
    assert everything == [
        storage.join(root, n)
        for n in ["a.jsonl", "b.jsonl", "notes.md", "sub/c.jsonl.gz", "sub/deep/d.jsonl"]
    ]
    assert storage.list_files(root, suffixes=(".jsonl", ".jsonl.gz")) == [
        storage.join(root, n) for n in ["a.jsonl", "b.jsonl", "sub/c.jsonl.gz", "sub/deep/d.jsonl"]
    ]
    assert storage.list_files(root, recursive=False) == [
        storage.join(root, n) for n in ["a.jsonl", "b.jsonl", "notes.md"]
    ]
    # A file lists as itself; listed URIs read back.
    single = storage.join(root, "a.jsonl")
    assert storage.list_files(single) == [single]
    assert [storage.read_text(u) for u in storage.list_files(root, suffixes=(".md",))] == [
        "notes.md"
    ]


def test_delete_file_and_tree(root):
    storage.write_text(storage.join(root, "keep.txt"), "k")
    storage.write_text(storage.join(root, "tree", "a.txt"), "a")
    storage.write_text(storage.join(root, "tree", "b", "c.txt"), "c")

    storage.delete(storage.join(root, "tree"))
    storage.delete(storage.join(root, "tree"))  # idempotent
    storage.delete(storage.join(root, "keep.txt"))
    storage.write_text(storage.join(root, "other.txt"), "o")

    assert storage.list_files(root) == [storage.join(root, "other.txt")]


def test_missing_file_error_names_the_path(root):
    missing = storage.join(root, "no", "such.parquet")
    for call in (
        storage.read_bytes,
        storage.read_text,
        storage.read_parquet,
        storage.list_files,
    ):
        with pytest.raises(SourceError) as err:
            call(missing)
        assert err.value.path == missing
        assert str(err.value) == f"{missing}: file not found"
    with pytest.raises(SourceError, match="file not found"), storage.open_input_file(missing):
        pass
    with pytest.raises(SourceError, match="file not found"), storage.open_input_stream(missing):
        pass


def test_compressed_input_stream_decompresses_by_extension(root):
    lines = "".join(f'{{"id": {i}}}\n' for i in range(1000)).encode()
    storage.atomic_write_bytes(storage.join(root, "c.jsonl.gz"), gzip.compress(lines))
    zst = pa.BufferOutputStream()
    with pa.CompressedOutputStream(zst, "zstd") as out:
        out.write(lines)
    storage.atomic_write_bytes(storage.join(root, "c.jsonl.zst"), zst.getvalue().to_pybytes())
    storage.atomic_write_bytes(storage.join(root, "c.jsonl"), lines)

    for name in ("c.jsonl.gz", "c.jsonl.zst", "c.jsonl"):
        with storage.open_input_stream(storage.join(root, name)) as f:
            assert f.read() == lines, name
    with storage.open_input_stream(storage.join(root, "c.jsonl.gz"), decompress=False) as f:
        assert f.read()[:2] == b"\x1f\x8b"  # gzip magic: the stored bytes
    assert gzip.decompress(storage.read_bytes(storage.join(root, "c.jsonl.gz"))) == lines


def test_failed_write_keeps_old_content_and_leaves_nothing_behind(root):
    uri = storage.join(root, "out", "table.parquet")
    storage.write_parquet(_table(), uri)
    before = storage.list_files(root)

    with pytest.raises(RuntimeError, match="boom"), storage.atomic_output_stream(uri) as f:
        f.write(b"PAR1 half a file")
        raise RuntimeError("boom")

    assert storage.read_parquet(uri).equals(_table())
    assert storage.list_files(root) == before == [uri]


def test_atomic_local_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "d" / "x.bin"
    storage.atomic_write_bytes(str(target), b"abc")
    storage.write_parquet(_table(), str(tmp_path / "d" / "t.parquet"))
    assert sorted(os.listdir(tmp_path / "d")) == ["t.parquet", "x.bin"]
    assert target.read_bytes() == b"abc"


def test_local_uris_and_helpers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage.write_text("rel/a.txt", "relative")
    assert (tmp_path / "rel" / "a.txt").read_text() == "relative"
    assert storage.list_files("rel") == [os.path.join("rel", "a.txt")]
    assert storage.read_text(f"file://{tmp_path}/rel/a.txt") == "relative"

    fs, path = storage.filesystem_for("rel/a.txt")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "rel" / "a.txt")
    assert not storage.is_remote("rel/a.txt") and storage.is_remote("s3://b/k")
    storage.makedirs(tmp_path / "made" / "deep")
    assert (tmp_path / "made" / "deep").is_dir()
    with pytest.raises(ValueError, match="unsupported scheme"):
        storage.filesystem_for("gs://bucket/key")


def test_s3_uris_resolve_to_the_configured_endpoint(s3_server):
    assert storage.join("s3://bkt/", "/a/", "b.txt") == "s3://bkt/a/b.txt"
    assert storage.join("s3://bkt/a") == "s3://bkt/a"
    fs, path = storage.filesystem_for("s3://bkt/a/b.txt")
    assert isinstance(fs, pafs.S3FileSystem) and path == "bkt/a/b.txt"
    # Cached per (endpoint, credentials); a different endpoint is a different filesystem.
    assert storage.filesystem_for("s3://bkt/x")[0] is fs
    other, _ = storage.filesystem_for("s3://bkt/x", endpoint="http://127.0.0.1:1")
    assert other is not fs
    with pytest.raises(ValueError, match="needs a bucket"):
        storage.filesystem_for("s3://")


def test_s3_objects_are_real_objects(s3_server, s3_prefix):
    """What storage writes, boto3 reads from the bucket, and the other way round."""
    client = s3_server.client()
    key_prefix = s3_prefix[len(f"s3://{s3_server.bucket}/") :]

    storage.write_text(f"{s3_prefix}/from-medray.txt", "hello")
    got = client.get_object(Bucket=s3_server.bucket, Key=f"{key_prefix}/from-medray.txt")
    assert got["Body"].read() == b"hello"

    client.put_object(Bucket=s3_server.bucket, Key=f"{key_prefix}/from-boto.txt", Body=b"world")
    assert storage.read_text(f"{s3_prefix}/from-boto.txt") == "world"
    assert storage.list_files(s3_prefix) == [
        f"{s3_prefix}/from-boto.txt",
        f"{s3_prefix}/from-medray.txt",
    ]
