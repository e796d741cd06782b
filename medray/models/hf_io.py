"""Hugging Face model folders on local disk or ``s3://``: fetch into a cache, save atomically.

Why a cache: `from_pretrained` reads local files only (nothing comes from a
hub), so an ``s3://`` model is copied to ``$MEDRAY_CACHE_DIR/models/<key>``
first. The key covers the URI, each file's size and mtime and the save
marker's id (when `save_hf` wrote the folder), so a re-upload gets a new copy
and an unchanged one is reused. Several workers on one node fetch under
a file lock, so a 15 GB model crosses the network once per node, and the copy
appears by one rename, so nobody reads half a folder.

Why a marker: a model folder is many files (config, shards, tokenizer) and no
store can replace them all at once. `save_hf` writes the files first and the
marker `medray_saved.json` (names and sizes) last; `is_saved` is true only
when the marker and every file it lists are present, which is what a reader
(resume, evaluation, serving) should wait for.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from medray import storage
from medray.data.tokenizer import cache_root
from medray.errors import MedrayError
from medray.remote_dir import fetch_remote_dir, local_dir

SAVE_MARKER = "medray_saved.json"
CONFIG_FILE = "config.json"
_COPY_CHUNK = 16 << 20


# ---- reading ----------------------------------------------------------------------------------


_EXPECTED = "a Hugging Face model folder"


def fetch_model_dir(uri: str) -> Path:
    """A local copy of the ``s3://`` model folder `uri`, reused while the remote files are unchanged."""
    return fetch_remote_dir(uri, cache_root() / "models", CONFIG_FILE, marker=SAVE_MARKER, expected=_EXPECTED)


def local_model_dir(path: str | os.PathLike) -> Path:
    """The local folder holding the model at `path`: itself, or a cached copy of an ``s3://`` folder."""
    return local_dir(path, cache_root() / "models", CONFIG_FILE, marker=SAVE_MARKER, expected=_EXPECTED)


def has_model(path: str | os.PathLike) -> bool:
    """True when `path` (local or s3://) holds a `config.json`: the cheap check configs run first."""
    try:
        return storage.exists(storage.join(str(path), CONFIG_FILE))
    except (OSError, ValueError):
        return False


# ---- writing ----------------------------------------------------------------------------------


def _read_marker(out: str) -> dict | None:
    try:
        return json.loads(storage.read_text(storage.join(out, SAVE_MARKER)))
    except (MedrayError, OSError, ValueError):
        return None


def is_saved(out: str | os.PathLike) -> bool:
    """True when `out` holds a complete `save_hf` folder: the marker and every file it lists, at its size."""
    out = str(out)
    marker = _read_marker(out)
    if not marker:
        return False
    for name, size in marker.get("files", {}).items():
        fs, path = storage.filesystem_for(storage.join(out, name))
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File or info.size != size:
            return False
    return True


def _local_files(folder: Path) -> dict[str, int]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in files}


def _publish(staging: Path, out: str, files: dict[str, int]) -> None:
    """Move the staged files to `out`, drop files an earlier save left that this one lacks, marker last."""
    previous = _read_marker(out)
    storage.delete(storage.join(out, SAVE_MARKER))  # readers see "incomplete" from here on
    storage.makedirs(out)
    for name in files:
        src, dest = staging / name, storage.join(out, name)
        if storage.is_remote(out):
            fs, path = storage.filesystem_for(dest)
            # One object appears only when its upload completes, so each file is atomic by itself.
            with open(src, "rb") as f, fs.open_output_stream(path, compression=None) as sink:
                shutil.copyfileobj(f, sink, _COPY_CHUNK)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(src, dest)
    for stale in set((previous or {}).get("files", {})) - set(files):
        storage.delete(storage.join(out, stale))
    storage.write_text(storage.join(out, SAVE_MARKER), json.dumps({"files": files, "save_id": uuid.uuid4().hex}, indent=2, sort_keys=True) + "\n")


def _staging_dir(out: str) -> Path:
    """Beside a local `out` (same filesystem: the final moves are renames), else in the temp dir."""
    if storage.is_remote(out):
        return Path(tempfile.mkdtemp(prefix="medray-save-"))
    parent, name = os.path.split(os.path.abspath(os.path.expanduser(out.removeprefix("file://"))))
    os.makedirs(parent, exist_ok=True)
    staging = Path(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    return staging


def save_hf(model, tokenizer, out: str | os.PathLike, *, processor=None, max_shard_size: str = "5GB") -> str:
    """Save `model` and its tokenizer (or `processor`, which holds one) as a Hugging Face folder at `out`.

    `out` is local or ``s3://``; the folder loads with `from_pretrained`.
    Gather a sharded (ZeRO-3, FSDP) model to one process before calling.
    """
    out = str(out)
    staging = _staging_dir(out)
    try:
        model.save_pretrained(str(staging), max_shard_size=max_shard_size)
        if processor is not None:
            processor.save_pretrained(str(staging))
        elif tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
        _publish(staging, out, _local_files(staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
