"""Writing a phantom set to disk or S3 in the MIMIC-CXR layout, in parallel when it is large.

Output is byte-identical for a (seed, n, size, splits): PNGs carry no timestamps, labels and the
split file are written in study order whatever the number of workers. `labels.jsonl` and
`split.csv` are written last, so their presence means the image and report files are complete.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import io
import json
import multiprocessing
import os
import time

import numpy as np
from PIL import Image

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.mm.layout import LABELS_FILE, SPLIT_COLUMNS, image_path, report_path
from medray.mm.phantom import FINDING_CLASSES, sample_study

SPLIT_NAMES = ("train", "validate", "test")  # MIMIC-CXR's names
PARALLEL_FROM = 1000  # below this, starting worker processes costs more than it saves


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def assign_splits(n: int, seed: int, fractions: tuple[float, ...]) -> list[str]:
    """Exact split sizes (largest remainder), studies ranked by a hash of (seed, index)."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError("splits", f"three non-negative fractions (train, validate, test) summing to 1, got {fractions}")
    exact = [f * n for f in fractions]
    counts = [int(x) for x in exact]
    for i in sorted(range(3), key=lambda k: counts[k] - exact[k])[: n - sum(counts)]:
        counts[i] += 1
    rank = sorted(range(n), key=lambda i: hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest())
    out = [""] * n
    start = 0
    for name, count in zip(SPLIT_NAMES, counts):
        for i in rank[start:start + count]:
            out[i] = name
        start += count
    return out


def _put(uri: str, data: bytes) -> None:
    """Many small files: locally a plain write (the label files, written last, mark completion)."""
    if storage.is_remote(uri):
        storage.atomic_write_bytes(uri, data)
        return
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    with open(uri, "wb") as f:
        f.write(data)


def _write_chunk(out: str, seed: int, size: int, items: list[tuple[int, str]]) -> list[dict]:
    records = []
    for index, split in items:
        study = sample_study(seed, index, size)
        _put(image_path(out, study.subject_id, study.study_id, study.image_id), encode_png(study.image))
        _put(report_path(out, study.subject_id, study.study_id), study.report.encode("utf-8"))
        records.append({**study.labels(), "split": split})
    return records


def _write_parallel(out: str, seed: int, size: int, chunks: list, workers: int) -> list[dict]:
    """Chunks on spawned processes (no fork: the parent may hold S3 client threads).

    A pool that cannot start its workers (a parent run from stdin cannot be re-imported by
    spawn) falls back to one process: every write is idempotent, so nothing is lost or doubled.
    """
    ctx = multiprocessing.get_context("spawn")
    n = len(chunks)
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            parts = list(pool.map(_write_chunk, [out] * n, [seed] * n, [size] * n, chunks))
    except concurrent.futures.process.BrokenProcessPool:
        parts = [_write_chunk(out, seed, size, chunk) for chunk in chunks]
    return [r for part in parts for r in part]


def _default_workers(n: int) -> int:
    return 1 if n < PARALLEL_FROM else max(1, min(os.cpu_count() or 1, 4))


def write_phantoms(n: int, out: str, seed: int = 0, size: int = 224,
                   splits: tuple[float, float, float] = (0.8, 0.1, 0.1), workers: int | None = None,
                   overwrite: bool = False) -> dict:
    """Write `n` studies (images, reports, labels.jsonl, split.csv) under `out`; return a summary."""
    if n < 1:
        raise ConfigError("n", f"need at least one study, got {n}")
    if size < 64:
        raise ConfigError("size", f"images need at least 64 pixels a side, got {size}")
    split_of = assign_splits(n, seed, splits)
    files = storage.join(out, "files")
    if storage.exists(files):
        if not overwrite:
            raise MedrayError(f"{files} already exists: choose another folder or overwrite it")
        storage.delete(files)
    workers = workers or _default_workers(n)
    started = time.perf_counter()
    items = list(enumerate(split_of))
    if workers <= 1:
        records = _write_chunk(out, seed, size, items)
    else:
        step = max(25, -(-n // (workers * 8)))
        chunks = [items[i:i + step] for i in range(0, n, step)]
        records = _write_parallel(out, seed, size, chunks, workers)
    storage.write_text(storage.join(out, LABELS_FILE),
                       "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    rows = [",".join(SPLIT_COLUMNS)] + [f"{r['image_id']},{r['study_id']},{r['subject_id']},{r['split']}" for r in records]
    storage.write_text(storage.join(out, "split.csv"), "\n".join(rows) + "\n")
    return _summary(records, out, seed, size, workers, time.perf_counter() - started)


def _summary(records: list[dict], out: str, seed: int, size: int, workers: int, seconds: float) -> dict:
    classes = collections.Counter(f["name"] for r in records for f in r["findings"])
    return {
        "out": out,
        "studies": len(records),
        "images": len(records),
        "normal": sum(not r["findings"] for r in records),
        "findings": sum(len(r["findings"]) for r in records),
        "uncertain": sum(f["certainty"] == "uncertain" for r in records for f in r["findings"]),
        "classes": {name: classes.get(name, 0) for name in FINDING_CLASSES},
        "splits": {name: count for name in SPLIT_NAMES
                   if (count := sum(r["split"] == name for r in records))},
        "seed": seed,
        "size": size,
        "workers": workers,
        "seconds": round(seconds, 2),
    }
