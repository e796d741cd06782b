"""Compiled word scanning and phrase matching: the matcher's hot loop.

Why compiled: the matcher must spend a few nanoseconds per word, and a
general character automaton (pyahocorasick) walking linked child lists
cannot (it capped the matcher at under 3M words/s/core). Here one pass over
the characters normalises them through a lookup table, splits words, hashes
each word (FNV-1a over code points) and looks it up in an open-addressing
table, and numbers sentences; a second pass walks a trie whose edges are
words, not characters, giving leftmost-longest non-overlapping phrase
matches that never cross a sentence end. Word boundaries are exact by
construction. Both passes are Numba functions over NumPy arrays, compiled
once per machine (`cache=True`).

A 64-bit hash makes a false hit between a corpus word and a vocabulary word
about 1e-9 likely over a million distinct words; collisions inside the
vocabulary are refused at build time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa

from medray.errors import MedrayError
from medray.met.normalize import LUT, SENTENCE_MARK

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_MIX = 0x9E3779B97F4A7C15
_MASK = 2**64 - 1
_MARK, _SPACE, _NEWLINE = ord(SENTENCE_MARK), ord(" "), ord("\n")
_LUT_SIZE = len(LUT)


def word_hash(word: str) -> int:
    """FNV-1a over the code points of a normalised word (the scanner computes the same)."""
    h = FNV_OFFSET
    for ch in word:
        h = ((h ^ ord(ch)) * FNV_PRIME) & _MASK
    return h


# ---- open-addressing hash table: uint64 key -> positive int64 value (0 = empty) -------------------


def table_bits(n: int) -> int:
    """Slots as a power of two, at most half full."""
    bits = 10
    while (1 << bits) < 2 * n:
        bits += 1
    return bits


@numba.njit(cache=True, nogil=True)
def _home(key, bits):
    return np.int64((key * np.uint64(_MIX)) >> np.uint64(64 - bits))


@numba.njit(cache=True, nogil=True)
def _fill_table(keys, values, slot_keys, slot_values, bits):
    """Insert every key; returns the index of the first duplicate key, or -1."""
    mask = (1 << bits) - 1
    for i in range(len(keys)):
        key = keys[i]
        slot = _home(key, bits)
        while slot_values[slot] != 0:
            if slot_keys[slot] == key:
                return i
            slot = (slot + 1) & mask
        slot_keys[slot] = key
        slot_values[slot] = values[i]
    return -1


@numba.njit(cache=True, nogil=True)
def _get(slot_keys, slot_values, bits, key):
    mask = (1 << bits) - 1
    slot = _home(key, bits)
    while slot_values[slot] != 0:
        if slot_keys[slot] == key:
            return slot_values[slot]
        slot = (slot + 1) & mask
    return 0


class HashTable:
    """The compiled table, built from whole arrays; keys must be unique."""

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        values = np.ascontiguousarray(values, dtype=np.int64)
        if len(values) and values.min() <= 0:
            raise MedrayError("HashTable values must be positive (0 marks an empty slot)")
        self.bits = table_bits(len(keys))
        self.keys = np.zeros(1 << self.bits, dtype=np.uint64)
        self.values = np.zeros(1 << self.bits, dtype=np.int64)
        duplicate = _fill_table(keys, values, self.keys, self.values, self.bits)
        if duplicate >= 0:
            raise MedrayError(f"HashTable keys must be unique (key #{duplicate} repeats)")

    def get(self, queries: np.ndarray) -> np.ndarray:
        """Values of many keys at once; 0 where absent."""
        return _get_many(self.keys, self.values, self.bits, np.ascontiguousarray(queries, dtype=np.uint64))


@numba.njit(cache=True, nogil=True)
def _get_many(slot_keys, slot_values, bits, queries):
    out = np.zeros(len(queries), dtype=np.int64)
    for i in range(len(queries)):
        out[i] = _get(slot_keys, slot_values, bits, queries[i])
    return out


# ---- scanning -----------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _norm(chars, lut, i):
    c = np.int64(chars[i])
    return np.int64(lut[c]) if c < len(lut) else c


@numba.njit(cache=True, nogil=True)
def _scan(chars, lut, slot_keys, slot_values, bits, starts, ends, ids, sentence):
    """Words of `chars` (code points, uint8 or uint32): spans, vocabulary ids (0 = unknown), sentences.

    A sentence ends at a sentence mark that is not between two digits ("2.5")
    and at a blank line (a newline whose next non-space is a newline).
    """
    n = len(chars)
    words = 0
    sent = 0
    after_newline = False
    in_word = False
    start = 0
    h = np.uint64(FNV_OFFSET)
    for i in range(n + 1):
        c = _norm(chars, lut, i) if i < n else _SPACE
        if c == _SPACE or c == _NEWLINE or c == _MARK:
            if in_word:
                starts[words] = start
                ends[words] = i
                ids[words] = _get(slot_keys, slot_values, bits, h)
                sentence[words] = sent
                words += 1
                in_word = False
            if c == _NEWLINE:
                if after_newline:
                    sent += 1
                after_newline = True
            elif c == _MARK:
                after_newline = False
                decimal = i > 0 and i < n - 1
                if decimal:
                    before, after = _norm(chars, lut, i - 1), _norm(chars, lut, i + 1)
                    decimal = 48 <= before <= 57 and 48 <= after <= 57
                if not decimal:
                    sent += 1
            continue
        after_newline = False
        if not in_word:
            in_word = True
            start = i
            h = np.uint64(FNV_OFFSET)
        h = (h ^ np.uint64(c)) * np.uint64(FNV_PRIME)
    return words


@numba.njit(cache=True, nogil=True)
def _utf8_spans(chars, starts, ends, offsets):
    """UTF-8 bytes of chars[starts[k]:ends[k]] for every k, back to back; `offsets` is filled in."""
    size = 0
    for k in range(len(starts)):
        for i in range(starts[k], ends[k]):
            c = chars[i]
            size += 1 if c < 0x80 else 2 if c < 0x800 else 3 if c < 0x10000 else 4
    data = np.empty(size, dtype=np.uint8)
    pos = 0
    for k in range(len(starts)):
        offsets[k] = pos
        for i in range(starts[k], ends[k]):
            c = np.int64(chars[i])
            if c < 0x80:
                data[pos] = c
                pos += 1
            elif c < 0x800:
                data[pos] = 0xC0 | (c >> 6)
                data[pos + 1] = 0x80 | (c & 0x3F)
                pos += 2
            elif c < 0x10000:
                data[pos] = 0xE0 | (c >> 12)
                data[pos + 1] = 0x80 | ((c >> 6) & 0x3F)
                data[pos + 2] = 0x80 | (c & 0x3F)
                pos += 3
            else:
                data[pos] = 0xF0 | (c >> 18)
                data[pos + 1] = 0x80 | ((c >> 12) & 0x3F)
                data[pos + 2] = 0x80 | ((c >> 6) & 0x3F)
                data[pos + 3] = 0x80 | (c & 0x3F)
                pos += 4
    offsets[len(starts)] = pos
    return data


@dataclass
class ScannedText:
    chars: np.ndarray  # the text's code points (uint8 when ASCII, else uint32)
    starts: np.ndarray  # code-point offset of each word in the text
    ends: np.ndarray
    ids: np.ndarray  # vocabulary number, 0 = not in the vocabulary
    sentence: np.ndarray  # sentence number of each word

    @property
    def n_words(self) -> int:
        return len(self.starts)

    def spans(self, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
        """The original text of each character span, as an Arrow string array (no Python loop)."""
        offsets = np.empty(len(starts) + 1, dtype=np.int32)
        data = _utf8_spans(self.chars, starts.astype(np.int64), ends.astype(np.int64), offsets)
        return pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(data))


def code_points(text: str) -> np.ndarray:
    """The text as an array of code points: one byte each when ASCII, four otherwise."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class Vocabulary:
    """Normalised words -> numbers 1..V (0 = unknown), looked up by hash inside the scanner."""

    def __init__(self, words: list[str]):
        self.words = words
        self.number = {w: i + 1 for i, w in enumerate(words)}
        hashes = np.array([word_hash(w) for w in words], dtype=np.uint64)
        try:
            self.table = HashTable(hashes, np.arange(1, len(words) + 1, dtype=np.int64))
        except MedrayError as exc:
            raise MedrayError("two vocabulary words share a 64-bit hash; change FNV_OFFSET in wordscan.py") from exc

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, phrase: str) -> list[int]:
        return [self.number[w] for w in phrase.split(" ")]

    def scan(self, text: str) -> ScannedText:
        """Words, ids and sentences of raw text (normalised on the fly, offsets into `text`)."""
        chars = code_points(text)
        size = len(chars) // 2 + 1  # at most one word per two characters
        starts, ends = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
        ids, sentence = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
        n = _scan(chars, LUT, self.table.keys, self.table.values, self.table.bits, starts, ends, ids, sentence)
        return ScannedText(chars, starts[:n], ends[:n], ids[:n], sentence[:n])


# ---- phrase trie over words --------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _longest(ids, sentence, root, slot_keys, slot_values, bits, stride, value, out_start, out_end, out_value):
    """Leftmost-longest, non-overlapping phrase matches inside sentences; returns the match count."""
    n = len(ids)
    found = 0
    i = 0
    while i < n:
        node = root[ids[i]]
        if node == 0:
            i += 1
            continue
        best_end = -1
        best_value = -1
        j = i
        while True:
            if value[node] >= 0:
                best_end = j
                best_value = value[node]
            j += 1
            if j >= n or sentence[j] != sentence[i] or ids[j] == 0:
                break
            node = _get(slot_keys, slot_values, bits, np.uint64(node) * np.uint64(stride) + np.uint64(ids[j]))
            if node == 0:
                break
        if best_end >= 0:
            out_start[found] = i
            out_end[found] = best_end
            out_value[found] = best_value
            found += 1
            i = best_end + 1
        else:
            i += 1
    return found


class PhraseTrie:
    """Phrases (space-joined vocabulary words) -> a value each, matched over scanned words.

    Node 0 is the root; its children sit in a dense array indexed by word (the
    first step is the hot one), deeper edges in the hash table keyed by
    parent * (V + 1) + word.
    """

    def __init__(self, vocab: Vocabulary, phrases: list[str], values: list[int]):
        self.stride = len(vocab) + 1
        root = np.zeros(self.stride, dtype=np.int64)
        edges: dict[int, int] = {}
        node_value = [-1]
        for phrase, val in zip(phrases, values):
            if val < 0:
                raise MedrayError(f"phrase value must be >= 0: {phrase!r}")
            node = 0
            for word in vocab.ids(phrase):
                if node == 0:
                    child = int(root[word])
                    if not child:
                        child = root[word] = len(node_value)
                        node_value.append(-1)
                else:
                    key = node * self.stride + word
                    child = edges.get(key, 0)
                    if not child:
                        child = edges[key] = len(node_value)
                        node_value.append(-1)
                node = int(child)
            node_value[node] = val
        self.root = root
        self.value = np.asarray(node_value, dtype=np.int64)
        self.edges = HashTable(np.fromiter(edges.keys(), dtype=np.uint64, count=len(edges)),
                               np.fromiter(edges.values(), dtype=np.int64, count=len(edges)))

    @property
    def n_nodes(self) -> int:
        return len(self.value)

    def match(self, scanned: ScannedText) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first word, last word, value) of each match, in text order."""
        n = scanned.n_words
        out_start, out_end = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        out_value = np.empty(n, dtype=np.int64)
        found = _longest(scanned.ids, scanned.sentence, self.root, self.edges.keys, self.edges.values,
                         self.edges.bits, self.stride, self.value, out_start, out_end, out_value)
        return out_start[:found], out_end[:found], out_value[:found]
