"""Vectorised words: spans, sentences and vocabulary codes for a whole batch at once.

The matcher's cost per word must be a few nanoseconds, so no Python runs per
word: word spans come from NumPy over the normalised characters, each word
gets a 64-bit polynomial hash computed with prefix sums (hash of chars
s..e = (H[e] - H[s]) * P^-s, all modulo 2^64), and the vocabulary is a
sorted hash array searched with `searchsorted`. Runs of words outside the
vocabulary collapse to one "unknown" code, since no term can span them, so
the automaton only walks the words that matter. A 64-bit hash makes a false
hit between a corpus word and a vocabulary word ~1e-9 likely over a million
distinct words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medray.errors import MedrayError
from medray.met.normalize import SENTENCE_MARK

P = 0x100000001B3  # odd, so it has an inverse modulo 2^64
INV_P = pow(P, -1, 2**64)
MAX_BASE = 64
DIGIT_RANGE = 0x100  # digit position p is drawn from code points 0x100*(p+1) + 0..63
_MASK = 2**64 - 1
_MARK, _SPACE, _NEWLINE = ord(SENTENCE_MARK), ord(" "), ord("\n")


def word_hash(word: str) -> int:
    h, pk = 0, 1
    for ch in word:
        h = (h + ord(ch) * pk) & _MASK
        pk = (pk * P) & _MASK
    return h


_MIX = 0x9E3779B97F4A7C15


def ascii_word_key(word: str) -> int:
    """Key of an ASCII word: its bytes little-endian when <= 8, else 8-byte chunks mixed with the length."""
    data = word.encode("ascii")
    key = int.from_bytes(data[:8], "little")
    if len(data) > 8:
        for i in range(8, len(data), 8):
            key = ((key * _MIX) + int.from_bytes(data[i:i + 8], "little")) & _MASK
        key = (key ^ len(data)) & _MASK
        key |= 1 << 63 if key < 1 << 56 else 0  # keep mixed keys out of the exact short-word range
    return key


def ascii_word_keys(chars: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """`ascii_word_key` for every word of a byte array: a few gathers per word, none per character."""
    padded = np.concatenate((chars, np.zeros(16, dtype=np.uint8)))
    view = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded.data, strides=(1,))  # unaligned 8-byte loads
    length = (ends - starts).astype(np.int64)

    def chunk(offset: int, sel: np.ndarray | None) -> np.ndarray:
        lengths, begins = (length, starts) if sel is None else (length[sel], starts[sel])
        rest = np.minimum(lengths - offset, 8).astype(np.uint64)
        mask = np.where(rest >= 8, np.uint64(_MASK), (np.uint64(1) << (np.uint64(8) * rest)) - np.uint64(1))
        return view[begins + offset] & mask

    keys = chunk(0, None)
    longer = np.flatnonzero(length > 8)
    if len(longer):
        mixed = keys[longer]
        offset = 8
        while True:
            active = length[longer] > offset
            if not active.any():
                break
            sel = longer[active]
            mixed[active] = mixed[active] * np.uint64(_MIX) + chunk(offset, sel)
            offset += 8
        mixed ^= length[longer].astype(np.uint64)
        mixed |= np.where(mixed < np.uint64(1 << 56), np.uint64(1 << 63), np.uint64(0))
        keys[longer] = mixed
    return keys


def code_shape(vocab_size: int) -> tuple[int, int]:
    """(base, width) of the word codes: 3 digits or more, each digit as small as the vocabulary allows.

    A trie node's children are scanned one by one, so the base (the most
    children a node can have) is kept near the cube root of the vocabulary.
    """
    width = 3
    while MAX_BASE**width <= vocab_size + 1:
        width += 1
    if width > 8:
        raise MedrayError("the matcher's vocabulary is too large to encode")
    base = 2
    while base**width <= vocab_size + 1:
        base += 1
    return base, width


class HashTable:
    """uint64 key -> int64 value for whole arrays at once (pandas' C hash table); -1 = absent."""

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        import pandas as pd

        self.index = pd.Index(keys.astype(np.uint64), dtype="uint64")
        if not self.index.is_unique:
            raise MedrayError("HashTable keys must be unique")
        self.values = np.asarray(values, dtype=np.int64)

    def get(self, queries: np.ndarray) -> np.ndarray:
        if not len(self.values) or not len(queries):
            return np.full(len(queries), -1, dtype=np.int64)
        pos = self.index.get_indexer(queries.astype(np.uint64, copy=False))
        return np.where(pos >= 0, self.values[pos], -1)


class Vocabulary:
    """Words -> numbers 1..V (0 = unknown), their fixed-width codes, and a phrase prefilter.

    The prefilter knows, for every phrase's first two and first three words,
    the longest phrase that starts with them; words outside every such
    reach cannot take part in a match and never reach the automaton.
    """

    def __init__(self, words: list[str], phrases: list[str]):
        self.words = words
        self.base, self.width = code_shape(len(words))
        hashes = np.array([word_hash(w) for w in words], dtype=np.uint64)
        if len(set(hashes.tolist())) != len(words):
            raise MedrayError("two vocabulary words share a 64-bit hash; change P in wordcodes.py")
        self.table = HashTable(hashes, np.arange(1, len(words) + 1, dtype=np.int64))
        ascii_ids = [i + 1 for i, w in enumerate(words) if w.isascii()]
        ascii_keys = np.array([ascii_word_key(words[i - 1]) for i in ascii_ids], dtype=np.uint64)
        if len(set(ascii_keys.tolist())) != len(ascii_ids):
            raise MedrayError("two vocabulary words share an ASCII key")
        self.ascii_table = HashTable(ascii_keys, np.asarray(ascii_ids, dtype=np.int64))
        numbers = np.arange(len(words) + 1, dtype=np.int64)
        digits = np.empty((len(words) + 1, self.width), dtype=np.uint32)
        for pos in range(self.width - 1, -1, -1):
            digits[:, pos] = DIGIT_RANGE * (pos + 1) + (numbers % self.base)
            numbers //= self.base
        self.digits = digits
        self.number = {w: i + 1 for i, w in enumerate(words)}
        self.single = np.zeros(len(words) + 1, dtype=bool)  # word is a whole phrase
        self.starts_pair = np.zeros(len(words) + 1, dtype=bool)  # word begins a longer phrase
        pair_kind: dict[int, int] = {}  # (w1, w2) -> bit 0: a phrase itself, bit 1: begins a longer one
        triple_reach: dict[int, int] = {}
        for phrase in phrases:
            ids = [self.number[w] for w in phrase.split(" ")]
            if len(ids) == 1:
                self.single[ids[0]] = True
                continue
            self.starts_pair[ids[0]] = True
            pair = self._key(ids[0], ids[1])
            pair_kind[pair] = pair_kind.get(pair, 0) | (1 if len(ids) == 2 else 2)
            if len(ids) > 2:
                triple = self._key(pair, ids[2])
                triple_reach[triple] = max(triple_reach.get(triple, 0), len(ids))
        self.pairs = HashTable(np.array(list(pair_kind), dtype=np.uint64), np.array(list(pair_kind.values()), dtype=np.int64))
        self.triples = HashTable(np.array(list(triple_reach), dtype=np.uint64), np.array(list(triple_reach.values()), dtype=np.int64))

    def _key(self, prefix: int | np.ndarray, word: int | np.ndarray):
        """An exact key for a word sequence (wraps modulo 2^64 beyond two words; checked by the automaton)."""
        return (prefix * (len(self.words) + 1) + word) & _MASK if isinstance(prefix, int) else (
            prefix.astype(np.uint64) * np.uint64(len(self.words) + 1) + word.astype(np.uint64))

    def encode_phrase(self, phrase: str) -> str:
        return self.digits[[self.number[w] for w in phrase.split(" ")]].tobytes().decode("utf-32-le")

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        return np.maximum(self.table.get(hashes), 0)

    def reach(self, ids: np.ndarray) -> np.ndarray:
        """Words (from each position) the longest phrase starting there could span; 0 = none."""
        reach = self.single[ids].astype(np.int64)
        at = np.flatnonzero(self.starts_pair[ids])
        at = at[at + 1 < len(ids)]
        pair_key = self._key(ids[at], ids[at + 1])
        kind = np.maximum(self.pairs.get(pair_key), 0)
        reach[at[(kind & 1) == 1]] = 2
        longer = ((kind & 2) == 2) & (at + 2 < len(ids))
        at3 = at[longer]
        triple = self.triples.get(self._key(pair_key[longer], ids[at3 + 2]))
        reach[at3] = np.maximum(reach[at3], triple)
        return reach


@dataclass
class EncodedBatch:
    starts: np.ndarray  # char offset of each word in the joined text
    ends: np.ndarray
    sentence: np.ndarray  # sentence number of each word
    text: str  # the automaton's input: one fixed-width code per kept word
    seq_word: np.ndarray  # code position -> word index

    @property
    def n_words(self) -> int:
        return len(self.starts)


_POWER_CACHE: dict[int, np.ndarray] = {}


def _powers(n: int, base: int) -> np.ndarray:
    """base^0..base^n modulo 2^64, from a table that grows by doubling and is reused."""
    table = _POWER_CACHE.get(base)
    if table is None or len(table) <= n:
        size = max(n + 1, 2 * (len(table) if table is not None else 1 << 16))
        table = np.full(size, base, dtype=np.uint64)
        table[0] = 1
        table = np.cumprod(table, dtype=np.uint64)  # wraps modulo 2^64 by design
        _POWER_CACHE[base] = table
    return table


def _blank_lines(chars: np.ndarray, newlines: np.ndarray) -> np.ndarray:
    """Newlines whose next non-space character is a newline ("\n\n", and " \n \n" from "\r\n\r\n")."""
    n = len(chars)
    out = np.zeros(n, dtype=bool)
    pos, origin = newlines + 1, newlines
    while len(pos):  # one step per space run length: the loop is over newlines, never over text
        inside = pos < n
        pos, origin = pos[inside], origin[inside]
        c = chars[pos]
        out[origin[c == _NEWLINE]] = True
        spaces = c == _SPACE
        pos, origin = pos[spaces] + 1, origin[spaces]
    return out


def encode_batch(norm: str, vocab: Vocabulary) -> EncodedBatch:
    """Words, sentences and the automaton input for one normalised batch string."""
    if norm.isascii():
        chars = np.frombuffer(norm.encode("ascii"), dtype=np.uint8)
    else:
        chars = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32)
    n = len(chars)
    mark = chars == _MARK
    newline = chars == _NEWLINE
    gap = mark | newline | (chars == _SPACE)
    digit = (chars >= 48) & (chars <= 57)
    decimal = mark & np.concatenate(([False], digit[:-1])) & np.concatenate((digit[1:], [False]))  # "2.5"
    blank_line = _blank_lines(chars, np.flatnonzero(newline))
    boundary = (mark & ~decimal) | blank_line
    word = ~gap
    starts = np.flatnonzero(word & np.concatenate(([True], gap[:-1])))
    ends = np.flatnonzero(word & np.concatenate((gap[1:], [True]))) + 1
    sentence = np.searchsorted(np.flatnonzero(boundary), starts)
    empty = np.zeros(0, dtype=np.int64)
    if not len(starts):
        return EncodedBatch(starts, ends, sentence, "", empty)

    if chars.dtype == np.uint8:
        ids = np.maximum(vocab.ascii_table.get(ascii_word_keys(chars, starts, ends)), 0)
    else:
        powers = _powers(n, P)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(chars.astype(np.uint64) * powers[:n], out=prefix[1:])
        hashes = (prefix[ends] - prefix[starts]) * _powers(n, INV_P)[starts]
        ids = vocab.lookup(hashes)

    position = np.arange(len(ids))
    reach = vocab.reach(ids)
    span_end = np.maximum.accumulate(np.where(reach > 0, position + reach, 0))
    keep = span_end > position  # inside the reach of some phrase start
    prev_keep = np.concatenate(([False], keep[:-1]))
    new_sentence = np.concatenate(([True], sentence[1:] != sentence[:-1]))
    sep_before = keep & (~prev_keep | new_sentence)  # a gap or a sentence end: no match across it
    kept = np.flatnonzero(keep)
    extra = sep_before[kept].astype(np.int64)
    seq_word = np.repeat(kept, 1 + extra)
    seq_ids = ids[seq_word]
    sep_pos = (np.cumsum(1 + extra) - 1)[extra == 1] - 1
    seq_ids[sep_pos] = 0
    text = vocab.digits[seq_ids].tobytes().decode("utf-32-le")
    return EncodedBatch(starts, ends, sentence, text, seq_word)
