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

import fcntl
import hashlib
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

SAVE_MARKER = "medray_saved.json"
CONFIG_FILE = "config.json"
_COPY_CHUNK = 16 << 20


# ---- reading ----------------------------------------------------------------------------------


def _remote_files(uri: str) -> list[pafs.FileInfo]:
    fs, path = storage.filesystem_for(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as err:
        raise MedrayError(f"{uri}: cannot list the model folder ({err})") from None
    base = path.rstrip("/") + "/"
    files = [i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")]
    return sorted(files, key=lambda i: i.path[len(base):])


def _cache_key(uri: str, infos: list[pafs.FileInfo], rel: list[str]) -> str:
    # The marker carries a fresh id per save: a re-save within the store's mtime resolution still differs.
    marker = storage.read_text(storage.join(uri, SAVE_MARKER)) if SAVE_MARKER in rel else ""
    signature = [uri.rstrip("/"), marker, [(r, i.size, i.mtime_ns) for r, i in zip(rel, infos)]]
    return hashlib.sha256(json.dumps(signature).encode()).hexdigest()[:24]


def _copy_remote(uri: str, rel: list[str], staging: Path) -> None:
    for name in rel:
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open_input_stream(storage.join(uri, name), decompress=False) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)


def fetch_model_dir(uri: str) -> Path:
    """A local copy of the ``s3://`` model folder `uri`, reused while the remote files are unchanged."""
    infos = _remote_files(uri)
    fs_base = storage.filesystem_for(uri)[1].rstrip("/") + "/"
    rel = [i.path[len(fs_base):] for i in infos]
    if CONFIG_FILE not in rel:
        raise MedrayError(f"{uri}: no {CONFIG_FILE} (expected a Hugging Face model folder)")
    target = cache_root() / "models" / _cache_key(uri, infos, rel)
    if (target / CONFIG_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (target / CONFIG_FILE).is_file():  # another worker fetched it while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
        try:
            _copy_remote(uri, rel, staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def local_model_dir(path: str | os.PathLike) -> Path:
    """The local folder holding the model at `path`: itself, or a cached copy of an ``s3://`` folder."""
    path = str(path)
    if storage.is_remote(path):
        return fetch_model_dir(path)
    local = Path(path[len("file://"):] if path.startswith("file://") else path).expanduser()
    if not (local / CONFIG_FILE).is_file():
        raise MedrayError(f"{path}: no {CONFIG_FILE} (expected a Hugging Face model folder)")
    return local


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
