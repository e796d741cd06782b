"""Text normalisation before the rules: NFC, line ends, control characters, boilerplate lines.

The rules judge (and PII scrubbing rewrites) normalised text, so every text goes through the same
few RE2 passes over the whole batch; the boilerplate patterns live here with the pass that removes them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Phrases that mark a whole (short) line as boilerplate wherever they sit in it; each is rare in
# medical prose. Phrases that prose does use ("in terms of use", "privacy policy") only count when
# they are the whole line: see BOILERPLATE_LINES.
BOILERPLATE_PHRASES = [
    "click here", "subscribe to our newsletter", "sign up for our newsletter", "subscribe now",
    "we use cookies", "this (?:web)?site uses cookies", "accept (?:all )?cookies", "all rights reserved",
    r"copyright\s*(?:©|\(c\))?\s*\d{4}", r"©\s*\d{4}", "skip to (?:main )?content", "skip navigation",
    "share (?:on|via) (?:facebook|twitter|linkedin|email)", "follow us on (?:facebook|twitter|x|instagram|linkedin|youtube)",
    "please enable javascript", "javascript is disabled",
    # web chrome: short lines only (the phrase plus at most `boilerplate_context_chars` around it)
    r"(?:subscribe|sign up) (?:to|for) (?:our|the) [\w ]{0,30}newsletter", "newsletter and never miss",
    r"read more (?:articles|stories|about)", "related articles", r"(?:articles|stories) you may (?:like|enjoy)",
    "search this site", r"(?:log|sign) in to (?:your|leave|save|comment)", "site map", "skip to navigation",
    "powered by the", "print this page", "was this page helpful", "contact us with questions",
    r"download our app", "main menu:", r"accept all(?: and continue| cookies)?", "reject all non-essential",
    "cookie settings", "use of cookies", r"we use cookies", "terms and conditions apply",
]
_FOOTER_LINK = r"privacy(?: policy)?|terms of (?:use|service)|terms (?:and|&) conditions|cookie (?:policy|settings|preferences)|accessibility|disclaimer"
_LINK = rf"(?:home|about(?: us)?|contact(?: us)?|log ?in|log ?out|sign ?in|sign ?up|register|search|menu|faq|help|blog|news|careers|site ?map|donate|shop|{_FOOTER_LINK})\b"
BOILERPLATE_LINES = [  # each matches a whole line
    rf"(?:{_LINK}[ \t]*[|•·/»›-]?[ \t]*){{2,}}",  # a menu or footer: Home | About | Contact
    rf"(?:{_FOOTER_LINK})",
    r"[^\n|»›]{1,40}(?:[ \t]*[»›][ \t]*[^\n|»›]{1,40}){2,}",  # a breadcrumb: Home » Health » Cardiology
    r"(?:(?:read|learn|see|show|load) more|back to top)[^\w\n]*",
    r"advertisement|sponsored(?: content)?",
]


@dataclass(frozen=True)
class Boilerplate:
    """The boilerplate-line pattern, and a cheap test for texts it could match.

    The whole-line pattern brackets each phrase with `[^\\n]{0,N}`, which RE2 runs about twenty
    times slower than a plain alternation; only texts that contain a phrase or match a
    whole-line pattern can lose anything, so the costly pass runs on those alone (a few per cent
    of a corpus). Same output as running it on every text.
    """

    pattern: str
    prefilter: tuple[str, ...]

    def remove(self, texts: pa.Array) -> pa.Array:
        if not self.pattern or not len(texts):
            return texts
        candidates = pc.match_substring_regex(texts, self.prefilter[0])
        for pattern in self.prefilter[1:]:
            candidates = pc.or_(candidates, pc.match_substring_regex(texts, pattern))
        if not pc.any(candidates).as_py():
            return texts
        rewritten = pc.replace_substring_regex(texts.filter(candidates), self.pattern, "")
        return pc.replace_with_mask(texts, candidates, rewritten)


def _whole_lines(alternatives: list[str]) -> str:
    return rf"(?im)^[ \t]*(?:{'|'.join(alternatives)})[ \t]*$\n?"


def build_boilerplate(phrases: list[str], lines: list[str], context_chars: int) -> Boilerplate:
    """One RE2 pattern for whole boilerplate lines (and their newline), with its prefilter."""
    alternatives, prefilter = [], []
    if phrases:
        alternatives.append(rf"[^\n]{{0,{context_chars}}}(?:{'|'.join(phrases)})[^\n]{{0,{context_chars}}}")
        prefilter.append(rf"(?im)(?:{'|'.join(phrases)})")
    if lines:
        alternatives += lines
        prefilter.append(_whole_lines(lines))
    return Boilerplate(_whole_lines(alternatives) if alternatives else "", tuple(prefilter))


def nfc(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Unicode NFC. Only texts with a non-ASCII character can change, so only those go through Python.

    Not Arrow's utf8_normalize: up to pyarrow 25 its "NFC" decomposes (apache/arrow#51225).
    """
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    wide = pc.not_equal(pc.utf8_length(texts), pc.binary_length(texts))
    if not pc.any(wide).as_py():
        return texts
    composed = [unicodedata.normalize("NFC", t) for t in texts.filter(wide).to_pylist()]
    return pc.replace_with_mask(texts, wide, pa.array(composed, texts.type))


def normalize_texts(texts: pa.Array | pa.ChunkedArray, boilerplate: Boilerplate
                    ) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray, np.ndarray]:
    """NFC, one kind of line end and space, no control characters or trailing spaces, boilerplate
    lines removed, at most one blank line in a row, ends trimmed. Also returns the characters of
    each text that boilerplate took, and their share of it."""
    texts = nfc(texts.fill_null(""))
    texts = pc.replace_substring_regex(texts, r"\r\n?|[\x0b\x0c\x{85}\x{2028}\x{2029}]", "\n")
    texts = pc.replace_substring_regex(texts, r"[\x00-\x08\x0e-\x1f\x7f\x{200b}-\x{200d}\x{2060}\x{feff}]", "")
    texts = pc.replace_substring_regex(texts, r"[\x{a0}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]", " ")
    texts = pc.replace_substring_regex(texts, r"(?m)[ \t]+$", "")
    removed, share = np.zeros(len(texts), dtype=np.int64), np.zeros(len(texts))
    if boilerplate.pattern:
        before = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
        texts = boilerplate.remove(texts)
        removed = before - pc.utf8_length(texts).to_numpy(zero_copy_only=False)
        share = removed / np.maximum(before, 1)
    texts = pc.replace_substring_regex(texts, r"\n{3,}", "\n\n")
    return pc.utf8_trim_whitespace(texts), removed, share
