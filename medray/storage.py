"""Local paths and ``s3://`` URIs behind one small interface.

Every job takes URIs so that the same config runs on a laptop (local files)
and on a cluster (object storage). Callers never branch on the scheme: they
call these functions, which resolve a ``pyarrow.fs`` filesystem and the path
inside it.

S3 settings come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), with
``MEDRAY_S3_ENDPOINT`` (or the ``endpoint`` argument) on top for S3-compatible
stores such as MinIO, Ceph or a test server; ``http://`` endpoints work. They
are read at call time, so a worker whose environment differs from the
driver's resolves its own, and filesystems are cached per (endpoint,
credentials) so repeated calls do not rebuild AWS clients.

Writes are atomic: a reader sees the old file or the new one, never half of
one, which is what lets an interrupted job resume from its completed shards.
Locally that is a temp file beside the target and a rename; on S3 the data is
staged locally and uploaded in one go, since an object becomes visible only
when its upload completes.
"""

from __future__ import annotations

import functools
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from medray.errors import SourceError

S3_SCHEME = "s3://"
# Large enough that S3 reads are not one request per line.
_STREAM_BUFFER = 1 << 20
_COPY_CHUNK = 8 << 20


# --- resolving a URI -------------------------------------------------------


def is_remote(uri: str | os.PathLike) -> bool:
    """True for object-store URIs (``s3://``), False for local paths and ``file://``."""
    return str(uri).startswith(S3_SCHEME)


def _local_path(uri: str) -> str:
    if uri.startswith("file://"):
        uri = urlparse(uri).path
    return os.path.abspath(os.path.expanduser(uri))


def _s3_settings(endpoint: str | None) -> tuple:
    """The connection settings from the argument and the environment, as a cache key."""
    env = os.environ
    endpoint = (
        endpoint
        or env.get("MEDRAY_S3_ENDPOINT")
        or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL")
        or None
    )
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    if endpoint and not region:
        # S3-compatible stores rarely care, but without a region the AWS SDK
        # probes for one, which is slow and can fail against a custom endpoint.
        region = "us-east-1"
    return (
        endpoint,
        region,
        env.get("AWS_ACCESS_KEY_ID") or None,
        env.get("AWS_SECRET_ACCESS_KEY") or None,
        env.get("AWS_SESSION_TOKEN") or None,
    )


@functools.lru_cache(maxsize=16)
def _s3_filesystem(endpoint, region, access_key, secret_key, session_token) -> pafs.S3FileSystem:
    kwargs: dict = {"region": region}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    if access_key and secret_key:
        kwargs.update(access_key=access_key, secret_key=secret_key, session_token=session_token)
    # Otherwise pyarrow falls back to ~/.aws files and instance metadata.
    return pafs.S3FileSystem(**kwargs)


@functools.lru_cache(maxsize=1)
def _local_filesystem() -> pafs.LocalFileSystem:
    return pafs.LocalFileSystem()


def filesystem_for(
    uri: str | os.PathLike, endpoint: str | None = None
) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``uri`` and the path inside it.

    ``endpoint`` overrides ``MEDRAY_S3_ENDPOINT`` and the AWS endpoint variables
    for this call (for example ``http://127.0.0.1:9000``).
    """
    uri = str(uri)
    if is_remote(uri):
        path = uri[len(S3_SCHEME) :].strip("/")
        if not path:
            raise ValueError(f"{uri!r}: an S3 URI needs a bucket, as in s3://bucket/key")
        return _s3_filesystem(*_s3_settings(endpoint)), path
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"{uri!r}: unsupported scheme (use a local path, file:// or s3://)")
    return _local_filesystem(), _local_path(uri)


def join(uri: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a URI; S3 keys always use ``/``."""
    uri = str(uri)
    if is_remote(uri):
        cleaned = [p.strip("/") for p in parts if p and p.strip("/")]
        return posixpath.join(uri.rstrip("/"), *cleaned) if cleaned else uri
    return os.path.join(uri, *parts)


def _uri_of(uri: str, fs_path: str, base_path: str) -> str:
    """Rebuild the URI of ``fs_path`` in the caller's spelling of the base ``uri``."""
    rel = posixpath.relpath(fs_path, base_path) if fs_path != base_path else ""
    return join(uri, rel) if rel else uri


def _missing(uri: str) -> SourceError:
    return SourceError(str(uri), 0, "file not found")


# --- inspecting ------------------------------------------------------------


def exists(uri: str | os.PathLike) -> bool:
    """True when a file or directory (an S3 prefix with objects) exists at ``uri``."""
    fs, path = filesystem_for(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def makedirs(uri: str | os.PathLike) -> None:
    """Create a local directory and its parents; nothing to do on S3, which has no directories."""
    if not is_remote(uri):
        os.makedirs(_local_path(str(uri)), exist_ok=True)


def list_files(
    uri: str | os.PathLike,
    suffixes: tuple[str, ...] | None = None,
    recursive: bool = True,
) -> list[str]:
    """The files under ``uri`` (or ``uri`` itself if it is a file), sorted, as full URIs.

    Names starting with ``.`` are skipped: they are hidden files or atomic
    writes still in progress. ``suffixes`` keeps names ending with any of them
    (for example ``(".jsonl", ".jsonl.gz")``). Sorting makes shard order, and so
    every downstream result, independent of the filesystem's listing order.
    """
    uri = str(uri)
    fs, path = filesystem_for(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise _missing(uri)
    if info.type == pafs.FileType.File:
        infos, base = [info], path
    else:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
        base = path
    out = []
    for item in infos:
        if item.type != pafs.FileType.File or item.base_name.startswith("."):
            continue
        if suffixes and not item.base_name.endswith(tuple(suffixes)):
            continue
        out.append(_uri_of(uri, item.path, base))
    return sorted(out)


def delete(uri: str | os.PathLike) -> None:
    """Delete a file or a directory tree; a missing ``uri`` is not an error, so retries are safe."""
    fs, path = filesystem_for(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.File:
        fs.delete_file(path)
    elif kind == pafs.FileType.Directory:
        fs.delete_dir(path)


# --- reading ---------------------------------------------------------------


@contextmanager
def _translate_missing(uri: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as err:
        raise _missing(uri) from err
    except OSError as err:
        # pyarrow's S3 layer reports a missing key as a plain OSError.
        if not exists(uri):
            raise _missing(uri) from err
        raise


@contextmanager
def open_input_file(uri: str | os.PathLike) -> Iterator[pa.NativeFile]:
    """A random-access binary file (seekable; what ``pyarrow.parquet`` needs)."""
    uri = str(uri)
    fs, path = filesystem_for(uri)
    with _translate_missing(uri):
        f = fs.open_input_file(path)
    with f:
        yield f


@contextmanager
def open_input_stream(uri: str | os.PathLike, decompress: bool = True) -> Iterator[pa.NativeFile]:
    """A sequential binary stream, gunzipped / un-zstd'ed by extension unless ``decompress=False``.

    Streams suit line-oriented corpora: nothing is held beyond the read buffer.
    """
    uri = str(uri)
    fs, path = filesystem_for(uri)
    with _translate_missing(uri):
        f = fs.open_input_stream(
            path, compression="detect" if decompress else None, buffer_size=_STREAM_BUFFER
        )
    with f:
        yield f


def read_bytes(uri: str | os.PathLike) -> bytes:
    """The whole file, as stored (no decompression)."""
    with open_input_stream(uri, decompress=False) as f:
        return f.read()


def read_text(uri: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


def read_parquet(uri: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file (or a directory of them) as one table."""
    uri = str(uri)
    fs, path = filesystem_for(uri)
    with _translate_missing(uri):
        return pq.read_table(path, filesystem=fs, columns=columns)


# --- writing ---------------------------------------------------------------


@contextmanager
def atomic_output_stream(uri: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``uri`` only if the ``with`` block succeeds.

    Locally: a hidden temp file beside the target (same filesystem, so the
    final ``os.replace`` is atomic), removed on failure. On S3: a local temp
    file, uploaded when the block ends, so a failed write never replaces an
    existing object with a partial one.
    """
    uri = str(uri)
    if is_remote(uri):
        with tempfile.TemporaryFile(prefix="medray-upload-") as staged:
            yield staged
            staged.flush()
            staged.seek(0)
            fs, path = filesystem_for(uri)
            # compression=None: pyarrow would otherwise gzip a ".gz" name again.
            with fs.open_output_stream(path, compression=None) as out:
                shutil.copyfileobj(staged, out, _COPY_CHUNK)
        return
    target = _local_path(uri)
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``uri`` atomically, creating local parent directories."""
    uri = str(uri)
    if is_remote(uri):
        # A single PUT is already atomic; no need to stage.
        fs, path = filesystem_for(uri)
        with fs.open_output_stream(path, compression=None) as out:
            out.write(data)
        return
    with atomic_output_stream(uri) as f:
        f.write(data)


def write_text(uri: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(uri, text.encode(encoding))


def write_parquet(table: pa.Table, uri: str | os.PathLike, **write_options) -> None:
    """Write ``table`` as one Parquet file, atomically; options go to ``pq.write_table``."""
    with atomic_output_stream(uri) as f:
        pq.write_table(table, f, **write_options)


def listing_digest(root: str | os.PathLike, digest) -> None:
    """Feed every file under `root` (a file or a folder; relative name, size, mtime) to a hashlib digest:
    what a job's reusable outputs depend on, without reading the files."""
    fs, path = filesystem_for(str(root))
    info = fs.get_file_info(path)
    infos = [info] if info.type == pafs.FileType.File else fs.get_file_info(pafs.FileSelector(path, recursive=True))
    for item in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        digest.update(f"{item.path[len(path):]}\t{item.size}\t{item.mtime_ns}\n".encode())


def strip_suffix(uri: str, suffix: str = ".parquet") -> str:
    """`out/met/tree.parquet` -> `out/met/tree`: the stem that files written beside an output share."""
    uri = str(uri)
    return uri[: -len(suffix)] if uri.endswith(suffix) else uri
