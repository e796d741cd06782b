"""Text normalisation shared by the tree (names, synonyms) and the matcher.

Terms and text must normalise the same way or matches are lost: lower case,
every character that is not a letter or digit becomes a space. The text form
keeps one character per input character so that spans map straight back to
the original text; sentence punctuation becomes `SENTENCE_MARK` and newlines
stay, so the matcher can scope negation cues to the sentence (a blank line
also ends one; a wrapped line does not).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

SENTENCE_MARK = "|"
_SPACES = re.compile(r"\s+")


def _char_class(ch: str) -> str:
    if ch.isalnum():
        return ch.lower() if len(ch.lower()) == 1 else ch
    return " "


def _build_tables() -> tuple[dict[int, str], bytes]:
    table: dict[int, str] = {}
    for code in range(0x10000):
        ch = chr(code)
        mapped = _char_class(ch)
        if mapped != ch:
            table[code] = mapped
    for ch in ".!?;\u3002\uff0e\uff01\uff1f\uff1b":  # with the full-width and ideographic forms
        table[ord(ch)] = SENTENCE_MARK
    table.pop(ord("\n"), None)  # kept: a blank line ends a sentence, a wrapped line does not
    ascii_table = bytes(ord(table.get(i, chr(i))) for i in range(128))
    return table, ascii_table


_TEXT_TABLE, _ASCII_TABLE = _build_tables()
_ASCII_TABLE = _ASCII_TABLE + bytes(range(128, 256))
_LUT_SIZE = 0x10000
LUT = np.arange(_LUT_SIZE, dtype=np.uint32)  # code point -> normal form, for the BMP
for _code, _mapped in _TEXT_TABLE.items():
    if _code < _LUT_SIZE:
        LUT[_code] = ord(_mapped)


def normalize_text(text: str) -> str:
    """Same-length normal form of running text (see module docstring).

    "2.5" becomes "2|5": the matcher does not treat a mark between digits as a sentence end.
    """
    if text.isascii():
        out = text.encode("ascii").translate(_ASCII_TABLE).decode("ascii")
    else:  # a vectorised lookup over code points; those past the table keep themselves
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        mapped = np.where(cps < _LUT_SIZE, LUT[np.minimum(cps, _LUT_SIZE - 1)], cps)
        out = mapped.astype(np.uint32).tobytes().decode("utf-32-le")
    return out


def normalize_term(term: str) -> str:
    """Canonical key of a name or synonym: lower case, words joined by one space."""
    if not term:
        return ""
    term = unicodedata.normalize("NFKC", term)
    out = term.translate(_TEXT_TABLE).replace(SENTENCE_MARK, " ")
    return _SPACES.sub(" ", out).strip()
