"""A local copy of an ``s3://`` folder, cached by what the folder holds.

Why: tokenizers and models load with `from_pretrained`, which reads local
files only (nothing comes from a hub), so a remote folder is copied into a
cache first. One implementation serves both, so the guarantees are the same:

- The cache key covers the URI, each file's relative path, size and mtime,
  and the content of an optional marker file. A re-upload gets a new key, so
  a stale copy is never used; an unchanged folder is reused. The marker
  (e.g. `save_hf`'s, which carries a fresh id per save) tells apart two saves
  that land within the store's mtime resolution.
- Workers on one node fetch under a file lock, so a 15 GB model crosses the
  network once per node rather than once per worker.
- Files stream to disk in chunks (memory stays flat) into a staging folder
  that becomes the cache entry by one rename, so nobody reads half a folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from medray import storage
from medray.errors import MedrayError

log = logging.getLogger(__name__)

_COPY_CHUNK = 16 << 20  # large reads keep S3 at a few requests per file
LOCKS_DIR = ".locks"  # beside the cache folders, so a cache folder holds only fetched copies


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote folder: what the cache key is made of."""

    rel: str  # path below the folder, with "/" separators
    size: int
    mtime_ns: int | None


def list_remote_dir(uri: str) -> list[RemoteFile]:
    """Every file below `uri`, recursively, sorted by relative path; hidden entries are skipped.

    Hidden names (`.git`, `.cache`, editor and staging leftovers) are never
    part of a model or tokenizer, and copying them would only change the key.
    """
    fs, base = storage.filesystem_for(uri)
    base = base.rstrip("/") + "/"
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as err:
        raise MedrayError(f"{uri}: cannot list the folder ({err})") from None
    files = []
    for info in infos:
        rel = info.path[len(base):] if info.path.startswith(base) else info.base_name
        if info.type == pafs.FileType.File and not any(part.startswith(".") for part in rel.split("/")):
            files.append(RemoteFile(rel, info.size, info.mtime_ns))
    return sorted(files, key=lambda f: f.rel)


def cache_key(uri: str, files: list[RemoteFile], marker_text: str = "") -> str:
    """A short hash of the URI, the listing and the marker's content: equal exactly when nothing changed."""
    signature = [uri.rstrip("/"), marker_text, [(f.rel, f.size, f.mtime_ns) for f in files]]
    return hashlib.sha256(json.dumps(signature).encode()).hexdigest()[:24]


def _copy_files(uri: str, files: list[RemoteFile], staging: Path) -> int:
    copied = 0
    for f in files:
        target = staging / f.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open_input_stream(storage.join(uri, f.rel), decompress=False) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
        copied += f.size
    return copied


def _lock_path(cache_dir: Path, key: str) -> Path:
    locks = cache_dir.parent / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{cache_dir.name}-{key}.lock"


def fetch_remote_dir(uri: str, cache_dir: str | os.PathLike, required: str, *, marker: str | None = None,
                     expected: str = "a folder") -> Path:
    """The local copy of the folder `uri` under `cache_dir`, fetched when absent or changed.

    `required` must be among the files (it is also what marks a finished
    copy); when it is missing the error names the URI and what was
    `expected` there. `marker`, when the folder holds it, adds its content to
    the key.
    """
    uri = str(uri)
    files = list_remote_dir(uri)
    names = {f.rel for f in files}
    if required not in names:
        raise MedrayError(f"{uri}: no {required} (expected {expected})")
    marker_text = storage.read_text(storage.join(uri, marker)) if marker and marker in names else ""
    cache_dir = Path(cache_dir)
    target = cache_dir / cache_key(uri, files, marker_text)
    if (target / required).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(cache_dir, target.name), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (target / required).is_file():  # another worker fetched it while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache_dir))
        try:
            copied = _copy_files(uri, files, staging)
            try:
                staging.rename(target)
            except OSError:
                if not (target / required).is_file():  # not a node without working locks that raced us
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("fetched %s: %d files, %d bytes, into %s", uri, len(files), copied, target)
    return target


def local_dir(path: str | os.PathLike, cache_dir: str | os.PathLike, required: str, *, marker: str | None = None,
              expected: str = "a folder") -> Path:
    """The local folder for `path`: itself (a local path or ``file://``), or a cached copy of an ``s3://`` one.

    Either way it must hold `required`, so a wrong path fails here, naming
    itself, rather than deep inside `from_pretrained`.
    """
    path = str(path)
    if storage.is_remote(path):
        return fetch_remote_dir(path, cache_dir, required, marker=marker, expected=expected)
    local = Path(path.removeprefix("file://")).expanduser()
    if not (local / required).is_file():
        raise MedrayError(f"{path}: no {required} (expected {expected})")
    return local
