"""Word-level rules that keep grown nodes under the right parent (used by `medray.met.grow`).

A sentence embedder knows that "benign neoplasm" and "Malignant neoplasm" are
close, not that one is not a kind of the other. These rules read the words:

* `parse_name` strips qualifiers ("unspecified", "other", "not elsewhere
  classified", "NOS", parentheticals) and splits a name into its head (the
  last content word before the first preposition: "Polyp of colon" -> polyp),
  its modifiers, and coordinated alternatives ("Embolism and thrombosis of
  iliac artery": embolism | thrombosis).
* `LexicalIndex` finds lexical hypernyms: nodes whose content words are a
  proper subset of the candidate's and include its head ("Pain" for "rest
  pain"; "Acute hepatitis" for "acute viral hepatitis").
* `contradiction` and `sibling_reason` reject embedding neighbours that are
  not parents: a contradictory modifier (benign/malignant, acute/chronic,
  left/right, X/non-X, ...), a modifier the candidate lacks ("Ebstein's
  anomaly" for "structural anomaly"), or a different head with modifiers
  ("Acute pain" for "acute embolism").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

__all__ = [
    "CONTRADICTORY",
    "GENERIC_WORDS",
    "LexicalIndex",
    "NameParts",
    "content_words",
    "contradiction",
    "not_narrower",
    "parse_name",
    "sibling_reason",
]

QUALIFIERS = (
    "in diseases classified elsewhere", "classified elsewhere", "not elsewhere classified",
    "not otherwise specified", "site not specified", "of unspecified site", "unspecified site",
    "other specified", "unspecified", "other", "nec", "nos",
)  # fmt: skip
_QUALIFIER = re.compile(r"\b(?:" + "|".join(q.replace(" ", r"\s+") for q in QUALIFIERS) + r")\b", re.I)
_PAREN = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_TOKEN = re.compile(r"[^\W_]+|,")
# words that carry no meaning of their own in a name; "related": "Cannabis related disorders"
_FILLER = frozenset("a an the of and or in with without by due to at on for from as its".split()) | {"related"}
# ends the name's first chunk, whose last content word is the head
_BREAKS = frozenset("of in with without due to by from following involving affecting complicating at on for as".split())
_CONJ = frozenset({"and", "or"})
# heads and modifiers that name a category rather than narrow it ("Abnormality of the skin")
GENERIC_WORDS = frozenset(
    "abnormality abnormal disorder disease condition finding morphology physiology structure "
    "problem malformation anomaly defect lesion".split()
)
_SPELLING = {"tumour": "tumor", "neoplasm": "tumor", "oedema": "edema", "haemorrhage": "hemorrhage",
             "anaemia": "anemia", "haematoma": "hematoma", "ischaemia": "ischemia", "ischaemic": "ischemic"}  # fmt: skip
_PAIRS = (
    "benign malignant", "benign metastatic", "acute chronic", "acute subacute", "congenital acquired",
    "hereditary acquired", "inherited acquired", "upper lower", "left right", "primary secondary",
    "unilateral bilateral", "anterior posterior", "superior inferior", "medial lateral", "proximal distal",
    "open closed", "superficial deep", "internal external", "focal diffuse", "localized generalized",
    "complete incomplete", "complete partial", "juvenile adult", "maternal paternal", "male female",
    "increased decreased", "intrinsic extrinsic", "dominant recessive", "traumatic nontraumatic",
)  # fmt: skip
CONTRADICTORY: dict[str, frozenset[str]] = {}
for _a, _b in (p.split() for p in _PAIRS):
    CONTRADICTORY[_a] = CONTRADICTORY.get(_a, frozenset()) | {_b}
    CONTRADICTORY[_b] = CONTRADICTORY.get(_b, frozenset()) | {_a}


def _stem(word: str) -> str:
    """Crude singular, the same on both sides: disorders -> disorder, injuries -> injury."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith("sses"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "is", "us")):
        word = word[:-1]
    return _SPELLING.get(word, word)


@dataclass(frozen=True)
class NameParts:
    words: tuple[str, ...]  # content words in order (stemmed, "non x" joined to "nonx")
    full_words: frozenset[str]  # content words with those in parentheses: "Malignant (primary) neoplasm"
    head: str  # last content word before the first preposition ("" if none)
    groups: tuple[frozenset[str], ...]  # words joined by one and/or (or a list "a, b, or c")
    raw_words: frozenset[str]  # every stemmed word, qualifiers and parentheticals included

    @property
    def alternatives(self) -> frozenset[str]:
        return frozenset().union(*self.groups)

    @property
    def modifiers(self) -> frozenset[str]:
        """Content words that narrow the name: not its head, not generic, not an alternative."""
        return frozenset(self.words) - {self.head} - GENERIC_WORDS - self.alternatives


def _tokens(text: str) -> list[str]:
    text = re.sub(r"['\u2019]s\b", "", text.lower())
    toks = _TOKEN.findall(text)
    out: list[str] = []
    for tok in toks:  # "non-traumatic" / "non traumatic" -> "nontraumatic"
        if out and out[-1] == "non" and tok != ",":
            out[-1] = "non" + _stem(tok)
        else:
            out.append(tok if tok in (",", "non") else _stem(tok))
    return out


@lru_cache(maxsize=1 << 16)
def parse_name(name: str) -> NameParts:
    """Content words, head, modifiers and alternatives of a node name or a candidate."""
    raw = frozenset(t for t in _tokens(name) if t != ",")
    toks = _tokens(_QUALIFIER.sub(" ", _PAREN.sub(" ", name)))
    words = tuple(t for t in toks if t != "," and t not in _FILLER)
    groups: list[frozenset[str]] = []
    for k, tok in enumerate(toks):
        if tok not in _CONJ:
            continue
        right = next((t for t in toks[k + 1:] if t not in _FILLER), None)
        j = k - 1 if k and toks[k - 1] != "," else k - 2  # the word before: "a, b, or c" / "a and b"
        left = toks[j] if j >= 0 else None
        group = {w for w in (left, right) if w and w != "," and w not in _FILLER}
        while j >= 2 and toks[j - 1] == "," and toks[j - 2] != ",":  # the rest of a list before it
            group.add(toks[j - 2])
            j -= 2
        if len(group) > 1:
            groups.append(frozenset(group - _FILLER))
    comma_list = any(t in _CONJ for t in toks)
    head = ""
    for tok in toks:
        if tok in _BREAKS or (tok == "," and not comma_list):
            if head:
                break
            continue
        if tok != "," and tok not in _FILLER:
            head = tok
    full = frozenset(t for t in _tokens(_QUALIFIER.sub(" ", name)) if t != "," and t not in _FILLER)
    return NameParts(words=words, full_words=full, head=head, groups=tuple(groups), raw_words=raw)


def content_words(text: str) -> frozenset[str]:
    return frozenset(parse_name(text).words)


def not_narrower(term: str, parent_name: str) -> bool:
    """True when every content word of `term` is in `parent_name` (parentheses included): not more specific."""
    return content_words(term) <= parse_name(parent_name).full_words


def contradiction(term: str, parent_name: str) -> str | None:
    """'benign vs malignant' when a word of the term contradicts one of the parent (X vs non-X too)."""
    mine, theirs = parse_name(term).raw_words, parse_name(parent_name).raw_words
    for w in sorted(mine):
        for other in sorted(CONTRADICTORY.get(w, frozenset()) | {"non" + w} | ({w[3:]} if w.startswith("non") else set())):
            if other and other != w and other in theirs and other not in mine:
                return f"{w} vs {other}"
    return None


def sibling_reason(term: str, parent_name: str) -> str | None:
    """Why `parent_name` is not a parent of the (narrower-looking) term, or None when it may be.

    A parent may not carry a modifier the term lacks (it would be the term's
    sibling or child), must share one of its alternatives when it has some, and
    when its head is not the term's word nor a category word it may have no
    modifiers at all ("Pneumonia" may hold "pulmonary infection", "Acute pain"
    may not hold "acute embolism").
    """
    me, p = frozenset(parse_name(term).words), parse_name(parent_name)
    if not p.words:
        return "parent has no content words"
    missing = p.modifiers - me
    if missing:
        return "parent has modifier " + ", ".join(sorted(missing))
    for group in p.groups:
        if not group & me:
            return "parent covers only " + " / ".join(sorted(group))
    head_ok = p.head in me or p.head in GENERIC_WORDS or p.head in p.alternatives
    if not head_ok and set(p.words) - {p.head} - GENERIC_WORDS:
        return f"parent head {p.head!r} differs"
    return None


class LexicalIndex:
    """Nodes by the set of their content words, one key per choice of alternatives.

    `hypernyms(term)` gives the positions whose name's key is a proper subset
    of the term's content words containing its head, with the key's size
    (bigger is more specific); `same(term)` those whose name or synonym key
    equals the term's words. Synonyms only ever reject: ICD-10-CM inclusion
    terms read out of context ("Glomerulonephritis" under "Glomerular
    disorders in diseases classified elsewhere") are no safe parents.
    """

    def __init__(self, names: list[str], synonyms: list[list[str]] | None = None):
        self._names: dict[frozenset[str], list[int]] = {}
        self._all: dict[frozenset[str], list[int]] = {}
        for pos, name in enumerate(names):
            for key in self.keys(name):
                for index in (self._names, self._all):
                    index.setdefault(key, []).append(pos)
            for syn in (synonyms[pos] or ()) if synonyms else ():
                for key in self.keys(syn):
                    ids = self._all.setdefault(key, [])
                    if pos not in ids:
                        ids.append(pos)

    @staticmethod
    def keys(name: str, limit: int = 64) -> list[frozenset[str]]:
        p = parse_name(name)
        keys = {frozenset(p.words) - p.alternatives}
        for group in p.groups:
            keys = {key | {a} for key in keys for a in group}
            if len(keys) > limit:
                break
        return sorted((k for k in keys if k), key=sorted)

    def same(self, term: str) -> list[int]:
        return sorted(set(self._all.get(content_words(term), ())))

    def hypernyms(self, term: str, max_words: int = 8) -> list[tuple[int, int]]:
        p = parse_name(term)
        words = sorted(set(p.words) - {p.head})
        if not p.head or len(words) + 1 > max_words:
            return []
        out: dict[int, int] = {}
        for size in range(len(words)):  # proper subsets: at most len(words) - 1 of the other words
            for extra in combinations(words, size):
                for pos in self._names.get(frozenset((p.head, *extra)), ()):
                    out[pos] = max(out.get(pos, 0), size + 1)
        return sorted(out.items())
