"""Whitespace word counts of a text column, straight from Arrow's UTF-8 buffers.

Stage throughput is quoted in tokens (whitespace words) per second, so
every shard needs its word count; counting in Python would cost more than
some stages themselves.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa


@numba.njit(cache=True, nogil=True)
def _count(offsets, data, out):
    for k in range(len(out)):
        words = 0
        inside = False
        for i in range(offsets[k], offsets[k + 1]):
            c = data[i]
            space = c == 32 or (9 <= c <= 13)
            if not space and not inside:
                words += 1
            inside = not space
        out[k] = words


def word_counts(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Words per text (ASCII whitespace separates words; nulls count 0)."""
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    parts = []
    for chunk in chunks:
        chunk = chunk.cast(pa.large_string())
        out = np.zeros(len(chunk), dtype=np.int64)
        if len(chunk):
            validity, offsets, data = chunk.buffers()
            offs = np.frombuffer(offsets, dtype=np.int64)[chunk.offset:chunk.offset + len(chunk) + 1]
            _count(offs, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8), out)
            if chunk.null_count:
                out[np.asarray(chunk.is_null())] = 0
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
