"""Remote folders fetched into the local cache, against a real S3 endpoint (the session's moto server)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from medray import storage
from medray.errors import MedrayError
from medray.remote_dir import (
    LOCKS_DIR,
    RemoteFile,
    cache_key,
    fetch_remote_dir,
    list_remote_dir,
    local_dir,
)

FOLDER = {
    "config.json": b'{"model_type": "llama"}\n',
    "weights/shard-00001.bin": bytes(range(256)) * 4096,  # 1 MiB, several copy chunks' worth of requests
    "weights/index.json": b'{"shards": 1}\n',
}


def upload(uri: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        storage.atomic_write_bytes(storage.join(uri, rel), data)


def tree_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fetches(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "medray.remote_dir" and r.getMessage().startswith("fetched")]


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache" / "things"


def test_fetch_copies_the_nested_folder_and_skips_hidden_entries(s3_prefix, cache, caplog):
    caplog.set_level(logging.INFO, logger="medray.remote_dir")
    uri = storage.join(s3_prefix, "model")
    upload(uri, {**FOLDER, ".DS_Store": b"x", ".cache/partial.bin": b"half"})

    listing = list_remote_dir(uri)
    assert [f.rel for f in listing] == ["config.json", "weights/index.json", "weights/shard-00001.bin"]
    assert [f.size for f in listing] == [len(FOLDER[f.rel]) for f in listing]

    local = fetch_remote_dir(uri, cache, "config.json")
    assert local.parent == cache and local.name == cache_key(uri, listing)
    assert tree_of(local) == FOLDER
    assert sorted(p.name for p in cache.iterdir()) == [local.name]  # no staging left, locks kept elsewhere
    assert len(list((cache.parent / LOCKS_DIR).iterdir())) == 1
    assert len(fetches(caplog)) == 1


def test_unchanged_folder_is_reused_and_a_reupload_gets_a_new_copy(s3_prefix, cache, caplog):
    caplog.set_level(logging.INFO, logger="medray.remote_dir")
    uri = storage.join(s3_prefix, "model")
    upload(uri, FOLDER)
    first = fetch_remote_dir(uri, cache, "config.json")
    assert fetch_remote_dir(uri + "/", cache, "config.json") == first  # a trailing slash is the same folder
    assert len(fetches(caplog)) == 1

    upload(uri, {"weights/index.json": b'{"shards": 12}\n'})  # one file changes size
    second = fetch_remote_dir(uri, cache, "config.json")
    assert second != first and (second / "weights/index.json").read_bytes() == b'{"shards": 12}\n'
    assert (first / "weights/index.json").read_bytes() == FOLDER["weights/index.json"]  # old copy untouched
    assert len(fetches(caplog)) == 2


def test_marker_content_is_part_of_the_key(s3_prefix, cache):
    """Two saves can match in every size and (coarse) mtime: the marker's fresh id tells them apart."""
    uri = storage.join(s3_prefix, "model")
    listing = [RemoteFile("config.json", 10, 1_000_000_000), RemoteFile("saved.json", 20, 1_000_000_000)]
    assert cache_key(uri, listing, '{"save_id": "a"}') != cache_key(uri, listing, '{"save_id": "b"}')
    assert cache_key(uri, listing, "x") == cache_key(uri + "/", listing, "x")
    assert cache_key(uri, listing) != cache_key(storage.join(s3_prefix, "other"), listing)

    upload(uri, {**FOLDER, "saved.json": b'{"save_id": "aaaa"}'})
    with_marker = fetch_remote_dir(uri, cache, "config.json", marker="saved.json")
    without = fetch_remote_dir(uri, cache, "config.json")
    assert with_marker != without
    assert with_marker.name == cache_key(uri, list_remote_dir(uri), '{"save_id": "aaaa"}')
    absent_marker = fetch_remote_dir(uri, cache, "config.json", marker="not-there.json")
    assert absent_marker == without  # a folder without the marker keys on its listing alone


def test_missing_required_file_names_the_uri_and_writes_nothing(s3_prefix, cache):
    uri = storage.join(s3_prefix, "no-config")
    upload(uri, {"weights/index.json": b"{}"})
    with pytest.raises(MedrayError, match=rf"{uri}: no config.json \(expected a model folder\)"):
        fetch_remote_dir(uri, cache, "config.json", expected="a model folder")
    empty = storage.join(s3_prefix, "nothing-here")
    with pytest.raises(MedrayError, match=rf"{empty}: no tokenizer.json"):
        fetch_remote_dir(empty, cache, "tokenizer.json")
    assert not cache.exists()


def test_concurrent_workers_fetch_once(s3_prefix, cache, caplog):
    """flock holds between separate opens even within one process, so threads stand in for workers."""
    caplog.set_level(logging.INFO, logger="medray.remote_dir")
    uri = storage.join(s3_prefix, "model")
    upload(uri, FOLDER)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(fetch_remote_dir(uri, cache, "config.json"))
        except BaseException as err:  # reported below, with the others
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 6 and len(set(results)) == 1
    assert len(fetches(caplog)) == 1
    assert tree_of(results[0]) == FOLDER
    assert [p.name for p in cache.iterdir()] == [results[0].name]


def test_local_dir_passes_local_folders_through_and_fetches_s3(s3_prefix, cache, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert local_dir(folder, cache, "config.json") == folder
    assert local_dir(f"file://{folder}", cache, "config.json") == folder
    with pytest.raises(MedrayError, match=rf"{tmp_path / 'absent'}: no config.json \(expected a model\)"):
        local_dir(tmp_path / "absent", cache, "config.json", expected="a model")
    assert not cache.exists()  # local paths never touch the cache

    uri = storage.join(s3_prefix, "model")
    upload(uri, FOLDER)
    fetched = local_dir(uri, cache, "config.json")
    assert fetched.parent == cache and tree_of(fetched) == FOLDER
