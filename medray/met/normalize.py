"""Text normalisation shared by the tree (names, synonyms) and the matcher.

Terms and text must normalise the same way or matches are lost: lower case,
every character that is not a letter or digit becomes a space. The text form
keeps one character per input character so that spans map straight back to
the original text; sentence punctuation becomes `SENTENCE_MARK` so the matcher
can scope negation cues to the sentence without a second pass.
"""

from __future__ import annotations

import re
import unicodedata

SENTENCE_MARK = "|"
_SPACES = re.compile(r"\s+")


def _char_class(ch: str) -> str:
    if ch.isalnum():
        return ch.lower() if len(ch.lower()) == 1 else ch
    return " "


def _build_tables() -> tuple[dict[int, str], bytes]:
    table: dict[int, str] = {}
    for code in range(0x3000):
        ch = chr(code)
        mapped = _char_class(ch)
        if mapped != ch:
            table[code] = mapped
    for ch in ".!?;\n":
        table[ord(ch)] = SENTENCE_MARK
    ascii_table = bytes(ord(table.get(i, chr(i))) for i in range(128))
    return table, ascii_table


_TEXT_TABLE, _ASCII_TABLE = _build_tables()
_ASCII_TABLE = _ASCII_TABLE + bytes(range(128, 256))


def normalize_text(text: str) -> str:
    """Same-length normal form of running text (see module docstring).

    A period between two digits ("2.5 cm") is not a sentence end.
    """
    if text.isascii():
        out = text.encode("ascii").translate(_ASCII_TABLE).decode("ascii")
    else:
        out = text.translate(_TEXT_TABLE)
    if "|" in out and any(c.isdigit() for c in text):
        out = _fix_decimal_points(text, out)
    return out


_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")


def _fix_decimal_points(text: str, out: str) -> str:
    positions = [m.start() for m in _DECIMAL.finditer(text)]
    if not positions:
        return out
    chars = list(out)
    for p in positions:
        chars[p] = " "
    return "".join(chars)


def normalize_term(term: str) -> str:
    """Canonical key of a name or synonym: lower case, words joined by one space."""
    if not term:
        return ""
    term = unicodedata.normalize("NFKC", term)
    out = term.translate(_TEXT_TABLE).replace(SENTENCE_MARK, " ")
    return _SPACES.sub(" ", out).strip()
