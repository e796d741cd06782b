"""MinHash signatures and LSH band keys: the compiled kernels behind near-duplicate removal.

Why a module of its own: hashing text into signatures is the hot, compiled
part of near-dup removal and has no notion of pairs, clusters or Ray; the
local and distributed paths and the `minhash` stage all share it.

Signatures are computed in one compiled pass over the Arrow string buffer:
characters are decoded from UTF-8 and normalised through the matcher's
table (lower case, punctuation to spaces), words hashed with FNV-1a,
n-grams of word hashes mixed into 64-bit shingle hashes, and each
permutation is a multiply-add on the 64-bit hash whose top 32 bits are
kept (a Dietzfelbinger multiply-add-shift family; odd multipliers make it a
bijection before the shift). Band keys hash each band's `rows` values into
one 64-bit key. Everything derives from `seed`, never from a global random
state.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.errors import MedrayError
from medray.met.normalize import LUT, SENTENCE_MARK

if TYPE_CHECKING:
    from medray.data.dedup import NearDupConfig

EMPTY = np.uint32(0xFFFFFFFF)  # every value of a document without words
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_S33, _S32 = np.uint64(33), np.uint64(32)
_SPACE, _NEWLINE, _MARK = 32, 10, ord(SENTENCE_MARK)


@numba.njit(cache=True, nogil=True, inline="always")
def _fmix64(h):
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    return h ^ (h >> _S33)


def _splitmix(seed: int, count: int) -> np.ndarray:
    """`count` well-mixed 64-bit values from a seed (SplitMix64): the same on every machine and NumPy version."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) + np.arange(1, count + 1, dtype=np.uint64)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    values = _splitmix(seed, 2 * num_perm)
    return values[:num_perm] | np.uint64(1), values[num_perm:]


@numba.njit(cache=True, nogil=True)
def _minhash(data, offsets, lut, ngram, mul, add, out, words_out, shingles):
    """Signatures of documents data[offsets[d]:offsets[d+1]] (UTF-8) into out[d]; word counts into words_out."""
    num_perm = len(mul)
    ring = np.zeros(ngram, np.uint64)
    sig = np.empty(num_perm, np.uint32)
    lut_size = len(lut)
    for d in range(len(offsets) - 1):
        i, end = offsets[d], offsets[d + 1]
        words = 0
        n_sh = 0
        in_word = False
        h = _FNV_OFFSET
        while i <= end:
            if i == end:
                c = _SPACE
                i += 1
            else:
                b0 = np.int64(data[i])
                if b0 < 0x80:
                    c = b0
                    i += 1
                elif b0 < 0xE0:
                    c = ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
                    i += 2
                elif b0 < 0xF0:
                    c = ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
                    i += 3
                else:
                    c = (((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
                         | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F))
                    i += 4
                if c < lut_size:
                    c = np.int64(lut[c])
            if c == _SPACE or c == _NEWLINE or c == _MARK:
                if in_word:
                    ring[words % ngram] = h
                    words += 1
                    in_word = False
                    if words >= ngram:
                        s = _FNV_OFFSET
                        for j in range(words - ngram, words):
                            s = _fmix64(s ^ ring[j % ngram])
                        shingles[n_sh] = s
                        n_sh += 1
                continue
            if not in_word:
                in_word = True
                h = _FNV_OFFSET
            h = (h ^ np.uint64(c)) * _FNV_PRIME
        if 0 < words < ngram:  # a short document is one shingle of all its words
            s = _FNV_OFFSET
            for j in range(words):
                s = _fmix64(s ^ ring[j])
            shingles[0] = s
            n_sh = 1
        sig[:] = EMPTY
        for k in range(n_sh):
            x = shingles[k]
            for p in range(num_perm):
                v = np.uint32((mul[p] * x + add[p]) >> _S32)
                if v < sig[p]:
                    sig[p] = v
        out[d, :] = sig
        words_out[d] = words


def _string_buffers(texts) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and int64 offsets of a string array (nulls as empty strings), without copying the text."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), pa.large_string())
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise MedrayError(f"near-dup: text must be strings, got {texts.type}")
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    _, offset_buf, data_buf = texts.buffers()
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(offset_buf, dtype=width)[texts.offset:texts.offset + len(texts) + 1].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
    return data, offsets


def minhash_with_word_counts(texts, cfg: NearDupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(signatures uint32 (n, num_perm), words per document); texts: Arrow strings or a list of str."""
    data, offsets = _string_buffers(texts)
    n = len(offsets) - 1
    out = np.empty((n, cfg.num_perm), dtype=np.uint32)
    words = np.zeros(n, dtype=np.int64)
    longest = int(np.diff(offsets).max()) if n else 0
    mul, add = _permutations(cfg.num_perm, cfg.seed)
    _minhash(data, offsets, LUT, cfg.ngram, mul, add, out, words, np.empty(longest // 2 + 2, np.uint64))
    return out, words


def minhash_signatures(texts, cfg: NearDupConfig) -> np.ndarray:
    """MinHash signatures, uint32 (n, num_perm); a document without words is all `EMPTY`."""
    return minhash_with_word_counts(texts, cfg)[0]


@numba.njit(cache=True, nogil=True)
def _band_keys(sig, rows, band_seeds, out):
    for d in range(sig.shape[0]):
        for b in range(len(band_seeds)):
            h = band_seeds[b]
            for r in range(b * rows, (b + 1) * rows):
                h = _fmix64(h ^ np.uint64(sig[d, r]))
            out[d, b] = h


def band_keys(signatures: np.ndarray, cfg: NearDupConfig) -> np.ndarray:
    """One 64-bit hash per band, uint64 (n, bands); equal keys = the band's rows all agree."""
    sig = np.ascontiguousarray(signatures, dtype=np.uint32)
    if sig.ndim != 2 or sig.shape[1] != cfg.num_perm:
        raise MedrayError(f"near-dup: signatures must be (n, {cfg.num_perm}), got {sig.shape}")
    out = np.empty((sig.shape[0], cfg.bands), dtype=np.uint64)
    _band_keys(sig, cfg.rows, _splitmix(cfg.seed ^ 0x5BD1E995, cfg.bands), out)
    return out


def has_words(signatures: np.ndarray) -> np.ndarray:
    """Per document: whether it had any word (a wordless document's signature is all `EMPTY`)."""
    return (signatures != EMPTY).any(axis=1)
