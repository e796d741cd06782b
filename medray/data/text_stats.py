"""Per-text character statistics and the exact-dedup hash, from one compiled pass over UTF-8.

Both walk Arrow's string buffers in numba (no Python per text), classifying code points through
tables built once from Python's Unicode data, so the rules stage can judge every text by symbol,
digit and repeated-line shares and the dedup shuffle can partition on a stable 64-bit hash.
"""

from __future__ import annotations

import unicodedata

import numba
import numpy as np
import pyarrow as pa

from medray.data.text_normalize import nfc

# ---- character tables (the Basic Multilingual Plane; code points above it keep themselves) -------

_SPACE, _NEWLINE, _LETTER, _DIGIT, _PUNCT, _SYMBOL = range(6)
# Punctuation of ordinary prose, papers and clinical notation ("BP 120/80", "SpO2 95%", "2+ edema",
# "37 °C", "[12]"); every other non-alphanumeric character counts toward the symbol ratio.
PROSE_PUNCTUATION = ".,;:!?'\"()[]-/%+°\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00b7\u00b1\u00d7"
_BMP = 0x10000


def _char_class(ch: str) -> int:
    if ch == "\n":
        return _NEWLINE
    if ch.isspace():
        return _SPACE
    if ch.isdigit():
        return _DIGIT
    if ch.isalpha() or unicodedata.category(ch).startswith("M"):
        return _LETTER
    return _PUNCT if ch in PROSE_PUNCTUATION else _SYMBOL


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    lower = np.arange(_BMP, dtype=np.int64)
    classes = np.empty(_BMP, dtype=np.uint8)
    for code in range(_BMP):
        ch = chr(code)
        low = ch.lower()
        if len(low) == 1:
            lower[code] = ord(low)
        classes[code] = _char_class(ch)
    return lower, classes


_LOWER, _CLASS = _build_tables()

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_SPACE_CP = np.uint64(32)
STAT_CHARS, STAT_NONSPACE, STAT_LETTERS, STAT_DIGITS, STAT_SYMBOLS, STAT_WORDS, STAT_REPEATED = range(7)
N_STATS = 7


@numba.njit(cache=True, nogil=True, inline="always")
def decode_utf8(data, i):
    """One code point of valid UTF-8 at byte i: (code point, next byte)."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, i + 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), i + 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), i + 3
    return (((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
            | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)), i + 4


@numba.njit(cache=True, nogil=True, inline="always")
def _classify(cp, classes):
    if cp < _BMP:
        return np.int64(classes[cp])
    if 0x1F000 <= cp < 0x20000:  # emoji and pictographs
        return _SYMBOL
    return _LETTER


@numba.njit(cache=True, nogil=True, inline="always")
def _fmix(h):
    """MurmurHash3's finaliser: FNV's low bits are weak, and the dedup shuffle partitions on them."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@numba.njit(cache=True, nogil=True, inline="always")
def _fold_char(h, cp, pending, lower):
    """FNV-1a step for one non-space code point, lower-cased, after one space if a space run is pending."""
    if pending:
        h = (h ^ _SPACE_CP) * _FNV_PRIME
    if cp < _BMP:
        cp = lower[cp]
    return (h ^ np.uint64(cp)) * _FNV_PRIME


@numba.njit(cache=True, nogil=True)
def _hash_texts(offsets, data, lower, classes, out):
    """FNV-1a over lower-cased code points, whitespace runs as one space, ends stripped."""
    for k in range(len(out)):
        h = _FNV_OFFSET
        pending, started = False, False
        i, end = offsets[k], offsets[k + 1]
        while i < end:
            cp, i = decode_utf8(data, i)
            c = _classify(cp, classes)
            if c == _SPACE or c == _NEWLINE:
                pending = started
                continue
            h = _fold_char(h, cp, pending, lower)
            pending = False
            started = True
        out[k] = _fmix(h)


@numba.njit(cache=True, nogil=True)
def _text_stats(offsets, data, lower, classes, out, line_hash, line_len):
    """Per text: the `STAT_*` counts. A line repeats when its case/space-folded form occurred before."""
    for k in range(len(out)):
        i, end = offsets[k], offsets[k + 1]
        chars = nonspace = letters = digits = symbols = words = 0
        n_lines = 0
        h = _FNV_OFFSET
        line_chars = 0
        in_word = pending = False
        while True:
            at_end = i >= end
            c = _NEWLINE
            cp = 0
            if not at_end:
                cp, i = decode_utf8(data, i)
                c = _classify(cp, classes)
                chars += 1
            if c == _NEWLINE:
                if line_chars > 0:
                    line_hash[n_lines] = h
                    line_len[n_lines] = line_chars
                    n_lines += 1
                h, line_chars, in_word, pending = _FNV_OFFSET, 0, False, False
                if at_end:
                    break
                continue
            if c == _SPACE:
                in_word = False
                pending = line_chars > 0
                continue
            if not in_word:
                words += 1
                in_word = True
            nonspace += 1
            if c == _LETTER:
                letters += 1
            elif c == _DIGIT:
                digits += 1
            elif c == _SYMBOL:
                symbols += 1
            h = _fold_char(h, cp, pending, lower)
            pending = False
            line_chars += 1
        repeated = 0
        if n_lines > 1:
            hashes = line_hash[:n_lines]
            order = np.argsort(hashes, kind="mergesort")
            for j in range(1, n_lines):
                if hashes[order[j]] == hashes[order[j - 1]]:
                    repeated += line_len[order[j]]
        out[k, STAT_CHARS] = chars
        out[k, STAT_NONSPACE] = nonspace
        out[k, STAT_LETTERS] = letters
        out[k, STAT_DIGITS] = digits
        out[k, STAT_SYMBOLS] = symbols
        out[k, STAT_WORDS] = words
        out[k, STAT_REPEATED] = repeated


def _utf8_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64) and bytes of a string chunk, without copying the bytes."""
    chunk = chunk.cast(pa.large_string())
    _, offsets, data = chunk.buffers()
    offs = np.frombuffer(offsets, dtype=np.int64)[chunk.offset:chunk.offset + len(chunk) + 1]
    return offs, (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(4, np.uint8))


def _chunks(texts: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return [c for c in texts.chunks if len(c)] if isinstance(texts, pa.ChunkedArray) else [texts]


def normalized_text_hash(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 per text, equal for texts that differ only in case, whitespace or Unicode composition
    (NFC); nulls hash as "".

    Stable across processes and machines: FNV-1a and a fixed finaliser, no seeded hashing; case
    folding follows Python's Unicode tables, which only ever add characters between versions.
    """
    parts = []
    for chunk in _chunks(texts):
        out = np.zeros(len(chunk), dtype=np.uint64)
        if len(chunk):
            offs, data = _utf8_buffers(nfc(chunk.fill_null("")))
            _hash_texts(offs, data, _LOWER, _CLASS, out)
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def text_stats(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """int64 [n, 7]: chars, non-space chars, letters, digits, symbols, words, chars in repeated lines."""
    parts = []
    for chunk in _chunks(texts):
        out = np.zeros((len(chunk), N_STATS), dtype=np.int64)
        if len(chunk):
            offs, data = _utf8_buffers(chunk.fill_null(""))
            body = data[offs[0]:offs[-1]]
            max_lines = int(np.count_nonzero(body == 10)) + 1  # lines of the longest text, at most
            _text_stats(offs, data, _LOWER, _CLASS, out,
                        np.empty(max_lines, np.uint64), np.empty(max_lines, np.int64))
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros((0, N_STATS), dtype=np.int64)
