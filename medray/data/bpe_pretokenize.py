"""The GPT-2 pre-tokenizer, compiled: splits UTF-8 text exactly as Hugging Face's byte-level
pre-tokenizer (its Oniguruma regex, `GPT2_PATTERN`) does, and says which tokenizers it matches.

Exactness is checked rather than assumed: `unsupported_reason` accepts only tokenizers whose output
is the BPE of each regex piece on its own (no normalizer, no prefix space, no dropout, added tokens
all special and kept literal), and the character classes (letter, number, whitespace, other) come
from Python's Unicode tables and are compared with the tokenizer's regex engine on every assigned
code point, once per process; a code point either side may not know (Python's category Cn) or on
which they disagree is UNKNOWN, and its whole text goes to Hugging Face.
"""

from __future__ import annotations

import functools
import json
import unicodedata

import numba
import numpy as np

from medray.data.text_stats import decode_utf8

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Unicode's White_Space property: what the regex engine's \s matches (narrower than str.isspace,
# which also takes U+001C..U+001F).
WHITESPACE = (*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
              0x202F, 0x205F, 0x3000)

OTHER, LETTER, NUMBER, SPACE, UNKNOWN = range(5)
N_CODE_POINTS = 0x110000
_APOSTROPHE, _BLANK = 0x27, 0x20

# ---- character classes ---------------------------------------------------------------------------


def _python_classes() -> np.ndarray:
    classes = np.full(N_CODE_POINTS, UNKNOWN, np.uint8)
    for code in range(N_CODE_POINTS):
        category = unicodedata.category(chr(code))
        if category == "Cn":
            continue
        first = category[0]
        classes[code] = LETTER if first == "L" else NUMBER if first == "N" else OTHER
    classes[list(WHITESPACE)] = SPACE
    classes[0xD800:0xE000] = UNKNOWN  # surrogates never occur in valid UTF-8
    return classes


# Context before a run of one class that the pattern takes as a single piece exactly when every
# character of the run is of that class (a whitespace run at the end of a text is one piece).
_RUN_PREFIX = {LETTER: "a", NUMBER: "1", OTHER: "!", SPACE: "\t"}


def _engine_rejects(codes: np.ndarray, cls: int, pre_tokenizer) -> list[int]:
    """The code points among `codes` that the regex engine does not put in class `cls` (bisection)."""
    if not len(codes):
        return []
    text = _RUN_PREFIX[cls] + "".join(map(chr, codes.tolist()))
    if len(pre_tokenizer.pre_tokenize_str(text)) == 1:
        return []
    if len(codes) == 1:
        return [int(codes[0])]
    half = len(codes) // 2
    return _engine_rejects(codes[:half], cls, pre_tokenizer) + _engine_rejects(codes[half:], cls, pre_tokenizer)


@functools.lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """uint8 class of every code point, checked against the `tokenizers` regex engine in this process.

    Python's Unicode tables and the engine's may be different Unicode versions: a code point the
    engine classes differently becomes UNKNOWN, so texts holding it go to Hugging Face whole.
    """
    from tokenizers import pre_tokenizers

    classes = _python_classes()
    engine = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for cls in (LETTER, NUMBER, OTHER, SPACE):
        classes[_engine_rejects(np.flatnonzero(classes == cls), cls, engine)] = UNKNOWN
    return classes


# ---- the compiled pre-tokenizer --------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _run_end(data, i, end, classes, cls):
    """First byte from i whose code point is not of class `cls`."""
    while i < end:
        cp, j = decode_utf8(data, i)
        if classes[cp] != cls:
            break
        i = j
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def _contraction_length(data, j, end):
    """Bytes after an apostrophe at j-1 that complete 's 't 're 've 'm 'll 'd (case-sensitive); 0 if none."""
    if j >= end:
        return 0
    b = data[j]
    if b == 115 or b == 116 or b == 109 or b == 100:  # s t m d
        return 1
    if j + 1 < end:
        c = data[j + 1]
        if (b == 114 and c == 101) or (b == 118 and c == 101) or (b == 108 and c == 108):  # re ve ll
            return 2
    return 0


@numba.njit(cache=True, nogil=True, inline="always")
def next_piece(data, i, end, classes):
    """(end byte of the regex piece starting at byte i, or -1 when its code point is UNKNOWN).

    The alternatives in the pattern's order: a contraction; an optional literal space and a run of
    letters, of numbers, or of other characters; a whitespace run that leaves its last character
    to the next piece when a non-space follows (`\\s+(?!\\S)`), else one lone whitespace char.
    """
    cp, j = decode_utf8(data, i)
    c = classes[cp]
    if c == UNKNOWN:
        return -1
    if c == SPACE:
        if cp == _BLANK and j < end:
            cp2, j2 = decode_utf8(data, j)
            c2 = classes[cp2]
            if c2 == LETTER or c2 == NUMBER or c2 == OTHER:
                return _run_end(data, j2, end, classes, c2)
        last, stop, count = i, j, 1
        while stop < end:
            cp3, j3 = decode_utf8(data, stop)
            if classes[cp3] != SPACE:
                break
            last, stop, count = stop, j3, count + 1
        if stop == end or count == 1:
            return stop
        return last
    if cp == _APOSTROPHE:
        extra = _contraction_length(data, j, end)
        if extra:
            return j + extra
    return _run_end(data, j, end, classes, c)


# ---- which tokenizers are handled ----------------------------------------------------------------


def _pre_tokenizer_reason(pre) -> str | None:
    if pre is None:
        return "no pre_tokenizer"
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            return "ByteLevel pre_tokenizer needs add_prefix_space=false and use_regex=true"
        return None
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        if (len(steps) == 2 and steps[0].get("type") == "Split"
                and steps[0].get("pattern") == {"Regex": GPT2_PATTERN}
                and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
                and steps[1].get("type") == "ByteLevel"
                and not steps[1].get("add_prefix_space") and steps[1].get("use_regex") is False):
            return None
        return "pre_tokenizer Sequence is not Split(GPT-2 pattern, Isolated) + ByteLevel(use_regex=false)"
    return f"pre_tokenizer {pre.get('type')!r} is not ByteLevel"


def unsupported_reason(backend) -> str | None:
    """Why `backend` (a `tokenizers.Tokenizer`) cannot be encoded exactly here, or None when it can."""
    spec = json.loads(backend.to_str())
    if spec.get("normalizer") is not None:
        return "has a normalizer"
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        return "truncation or padding is set"
    reason = _pre_tokenizer_reason(spec.get("pre_tokenizer"))
    if reason:
        return reason
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"model {model.get('type')!r} is not BPE"
    if model.get("dropout"):
        return "BPE dropout is random"
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "BPE has a continuing_subword_prefix or end_of_word_suffix"
    plain = [t["content"] for t in spec.get("added_tokens") or [] if not t.get("special")]
    if plain:
        return f"added tokens that are not special: {plain[:3]}"
    if spec.get("added_tokens") and not backend.encode_special_tokens:
        return "encode_special_tokens is off (special tokens typed in text would be split out)"
    return None
