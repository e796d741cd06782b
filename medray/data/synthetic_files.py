"""The generated corpus's files: chunks made in worker processes, streamed into plain, gzip and zstd JSONL.

Why apart: making chunks is CPU-bound and each chunk depends only on
(seed, chunk number) (`synthetic_chunk`), so worker processes make them
while this process compresses and writes them in order; gzip headers carry
no name and mtime 0, so the bytes do not depend on the number of workers
or the time of the run.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import multiprocessing
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor

import pyarrow as pa

from medray import storage
from medray.data.synthetic_chunk import Chunk, ChunkMaker, blank_count, even_split

EXTENSIONS = (".jsonl", ".jsonl.gz", ".jsonl.zst")


def file_names(files: int) -> list[str]:
    return [f"part-{i:03d}{EXTENSIONS[i % len(EXTENSIONS)]}" for i in range(files)]


# ---- worker processes ----------------------------------------------------------------------------

_WORKER_MAKER: ChunkMaker | None = None


def _init_worker(maker_pickle: bytes | None) -> None:
    global _WORKER_MAKER
    if maker_pickle is not None:  # spawned: forked workers inherit the maker
        _WORKER_MAKER = pickle.loads(maker_pickle)


def _make_in_worker(index: int, n: int, first_lines: list[int]) -> Chunk:
    return _WORKER_MAKER.make(index, n, first_lines)


def _inside_ray() -> bool:
    """A Ray driver or worker holds threads a fork must not copy: generate in-process there."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def make_chunks(maker: ChunkMaker, sizes, workers: int):
    """Chunks in order, made here or by `workers` processes with a bounded number in flight.

    Workers fork where the platform can (nothing to re-import or pickle, and
    no `__main__` guard needed in the caller's script); else they spawn.
    Inside a Ray process chunks are made in-process.
    """
    global _WORKER_MAKER
    files = len(maker.names)
    lines = [0] * files

    def jobs():
        for index, n in enumerate(sizes):
            yield index, n, list(lines)
            for f, size in enumerate(even_split(n + blank_count(n, maker.plant), files)):
                lines[f] += size

    if workers <= 1 or _inside_ray():
        for index, n, first in jobs():
            yield maker.make(index, n, first)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    _WORKER_MAKER = maker
    init = None if method == "fork" else pickle.dumps(maker)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                               initializer=_init_worker, initargs=(init,))
    pending = []
    try:
        for job in jobs():
            pending.append(pool.submit(_make_in_worker, *job))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()
    finally:  # also when the caller stops early (target size reached): drop what is still queued
        pool.shutdown(wait=True, cancel_futures=True)
        _WORKER_MAKER = None


# ---- the files -----------------------------------------------------------------------------------


class _KeepOpen(io.RawIOBase):
    """Lets the zstd stream close without closing the atomic file beneath it."""

    def __init__(self, raw):
        self.raw = raw

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self.raw.write(b)


class CorpusFiles:
    """The corpus's files, open for writing: each chunk's parts appended in order, lines and bytes tallied.

    Opened on `stack`: the files appear (atomically) when it closes.
    """

    def __init__(self, out_dir: str, names: list[str], stack: contextlib.ExitStack):
        self.names = names
        self.streams = []
        for name in names:
            raw = stack.enter_context(storage.atomic_output_stream(storage.join(out_dir, name)))
            if name.endswith(".gz"):
                stream = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6))
            elif name.endswith(".zst"):
                stream = stack.enter_context(pa.CompressedOutputStream(pa.PythonFile(_KeepOpen(raw), mode="w"), "zstd"))
            else:
                stream = raw
            self.streams.append(stream)
        n = len(names)
        self.lines, self.records, self.blank, self.written = [0] * n, [0] * n, [0] * n, [0] * n

    def write(self, chunk: Chunk) -> None:
        for f, part in enumerate(chunk.parts):
            self.streams[f].write(part)
            self.written[f] += len(part)
            self.lines[f] += part.count(b"\n")
            self.records[f] += chunk.records[f]
            self.blank[f] += chunk.blank[f]

    def table(self) -> list[dict]:
        """Per file: path, compression, lines, records, blank lines and uncompressed bytes."""
        return [{"path": name, "compression": {".gz": "gzip", ".zst": "zstd"}.get(name[name.rfind("."):]),
                 "lines": self.lines[i], "records": self.records[i], "blank_lines": self.blank[i],
                 "bytes": self.written[i]}
                for i, name in enumerate(self.names)]
