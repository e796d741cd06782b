"""Planted defects for the generated corpus, and the measures that define them.

Each maker returns a document (or a raw line) that the pipeline must drop
for one known reason, built to break exactly one rule by a wide margin so
that the expected reason does not depend on the order the rules run in.
The measures (`text_stats`, `exact_key`, `shingles`) are the definitions the
ground truth states; tests and the pipeline's checks share them.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter

import numpy as np

from medray.data import synthetic_text_defects as txt
from medray.data.synthetic_docs import Composer
from medray.errors import MedrayError

SHINGLE_WORDS = 5
NEAR_DUP_MIN_JACCARD = 0.9  # every planted near duplicate is this close: a 128-permutation MinHash estimate stays above 0.8
JUNK_RULES = ("too_short", "too_long", "symbol_ratio", "digit_ratio", "repeated_lines", "boilerplate", "language")
MALFORMED = ("bad_json", "missing_text", "text_not_string", "bad_encoding")

# The thresholds the planted defects are built around: each junk document breaks
# exactly one of them by a wide margin, and every clean document passes all of them.
ASSUMED_THRESHOLDS = {
    "min_words": 50,  # clean documents have >= 100 words, too_short ones <= 10
    "max_words": 5000,  # clean documents have <= 600 words, too_long ones >= 6000
    "max_symbol_ratio": 0.25,  # clean <= ~0.05, planted >= 0.5
    "max_digit_ratio": 0.25,  # clean <= ~0.03, planted >= 0.5
    "max_duplicate_line_fraction": 0.3,  # clean 0, planted >= 0.6
    "max_boilerplate_line_fraction": 0.3,  # clean 0, planted >= 0.85
    "language": "en",  # planted: fr, de, es
    "near_duplicate_jaccard": 0.8,
    "shingle_words": SHINGLE_WORDS,
}
DEFINITIONS = {
    "words": "whitespace-separated tokens (str.split())",
    "symbol_ratio": "characters that are neither letters, digits nor whitespace (or '_'), over non-whitespace characters",
    "digit_ratio": "decimal digits over non-whitespace characters",
    "duplicate_line_fraction": "1 - distinct non-empty lines / non-empty lines (lines stripped)",
    "boilerplate_line_fraction": "non-empty lines containing a BOILERPLATE_MARKERS phrase (lower case) over non-empty lines",
    "exact_key": "lower case, whitespace runs collapsed to one space, stripped: ' '.join(text.lower().split())",
    "shingles": "sets of 5 consecutive words of re.findall(r'\\w+', text.lower())",
}


# ---- measures shared with the tests and the pipeline's checks -------------------------------------

_WORD = re.compile(r"\w+")
_SYMBOL = re.compile(r"[^\w\s]|_")
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s")
_ASCII_SPACE = string.whitespace.encode()
_ASCII_DIGITS = string.digits.encode()
_ASCII_WORD_OR_SPACE = (string.ascii_letters + string.digits + string.whitespace).encode()
_BOILERPLATE = re.compile("|".join(re.escape(m) for m in txt.BOILERPLATE_MARKERS))  # over lower-cased text


def exact_key(text: str) -> str:
    return " ".join(text.lower().split())


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}


def jaccard(a: str | set, b: str | set) -> float:
    sa = a if isinstance(a, set) else shingles(a)
    sb = b if isinstance(b, set) else shingles(b)
    return len(sa & sb) / max(len(sa | sb), 1)


def text_stats(text: str) -> dict:
    """The measures in DEFINITIONS, for checking planted documents against ASSUMED_THRESHOLDS."""
    if text.isascii():  # byte deletions count classes of characters at C speed
        raw = text.encode()
        spaces = len(raw) - len(raw.translate(None, _ASCII_SPACE))
        digits = len(raw) - len(raw.translate(None, _ASCII_DIGITS))
        symbols = len(raw.translate(None, _ASCII_WORD_OR_SPACE))
    else:
        spaces, digits, symbols = len(_SPACE.findall(text)), len(_DIGIT.findall(text)), len(_SYMBOL.findall(text))
    nonspace = max(len(text) - spaces, 1)
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    low = text.lower()
    boiler = sum(1 for ln in low.split("\n") if _BOILERPLATE.search(ln)) if _BOILERPLATE.search(low) else 0
    return {
        "words": len(text.split()),
        "symbol_ratio": round(symbols / nonspace, 4),
        "digit_ratio": round(digits / nonspace, 4),
        "duplicate_line_fraction": round(1 - len(set(lines)) / max(len(lines), 1), 4),
        "boilerplate_line_fraction": round(boiler / max(len(lines), 1), 4),
    }


# ---- defects -------------------------------------------------------------------------------------


def exact_variant(text: str, rng: random.Random) -> tuple[str, str]:
    """A copy with the same exact_key: identical, re-cased or re-spaced."""
    variant = rng.choice(("identical", "case", "spacing", "flattened", "padded"))
    if variant == "case":
        return (text.upper() if text.isascii() and rng.random() < 0.5 else text.lower()), variant
    if variant == "spacing":
        parts = text.split(" ")
        return "".join(p + (" " if rng.random() < 0.7 else "  ") for p in parts[:-1]) + parts[-1], variant
    if variant == "flattened":
        return " ".join(text.split()), variant
    if variant == "padded":
        return "  " + text + " \n", variant
    return text, variant


_EDITABLE = re.compile(r"[A-Za-z]{3,}")


def near_duplicate(text: str, rng: random.Random, min_jaccard: float = NEAR_DUP_MIN_JACCARD) -> tuple[str, float, list[str]]:
    """A copy with 1-3 words replaced, inserted or deleted, at least `min_jaccard` close to `text`."""
    spans = [m.span() for m in _EDITABLE.finditer(text)]
    original = shingles(text)
    for n_edits in (rng.randint(1, 3), 2, 1, 1, 1):
        at = sorted(rng.sample(range(len(spans)), min(n_edits, len(spans))), reverse=True)
        out, ops = text, []
        for k in at:
            a, b = spans[k]
            word = rng.choice([w for w in txt.EDIT_WORDS if w != text[a:b].lower()])
            op = rng.choice(("replace", "insert", "delete"))
            if op == "replace":
                out = out[:a] + word + out[b:]
            elif op == "insert":
                out = out[:b] + " " + word + out[b:]
            else:
                end = b + 1 if out[b : b + 1] == " " else b
                out = out[:a] + out[end:]
            ops.append(op)
        score = jaccard(original, shingles(out))
        if score >= min_jaccard and exact_key(out) != exact_key(text):
            return out, round(score, 4), ops[::-1]
    raise MedrayError("cannot make a near duplicate close enough: the document is too short")


def _phone(rng: random.Random) -> str:
    area, last = rng.randint(201, 989), f"01{rng.randint(0, 99):02d}"
    return rng.choice((f"({area}) 555-{last}", f"{area}-555-{last}", f"{area}.555.{last}", f"+1 {area}-555-{last}"))


def _email(rng: random.Random) -> str:
    first, last = rng.choice(txt.FIRST_NAMES), rng.choice(txt.LAST_NAMES)
    user = f"{first}.{last}" if rng.random() < 0.6 else f"{first[0]}{last}{rng.randint(10, 99)}"
    return f"{user}@{rng.choice(txt.EMAIL_DOMAINS)}"


def _mrn(rng: random.Random) -> str:
    form = rng.randrange(3)
    if form == 0:
        return f"MRN: {rng.randint(10**6, 10**9 - 1)}"
    if form == 1:
        return f"MRN #{rng.randint(10**7, 10**8 - 1)}"
    return f"medical record number {rng.randint(10**7, 10**8 - 1)}"


def _dob(rng: random.Random) -> str:
    y, m, d = rng.randint(1930, 2005), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice((f"DOB: {m:02d}/{d:02d}/{y}", f"DOB {m:02d}/{d:02d}/{y}", f"date of birth {y}-{m:02d}-{d:02d}"))


_PII_MAKERS = {"email": _email, "phone": _phone, "mrn": _mrn, "dob": _dob}


def insert_pii(text: str, rng: random.Random) -> tuple[str, dict[str, int]]:
    """1-3 identifier sentences placed after sentences of `text`; exact counts per kind."""
    counts: Counter = Counter()
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        template, kinds = rng.choice(txt.PII_SENTENCES)
        sentence = template.format(**{k: _PII_MAKERS[k](rng) for k in kinds}) + "."
        counts.update(kinds)
        targets = [i for i, ln in enumerate(lines) if ln.endswith(".")] or [len(lines) - 1]
        i = rng.choice(targets)
        lines[i] = f"{lines[i]} {sentence}"
    return "\n".join(lines), {k: counts.get(k, 0) for k in _PII_MAKERS}


class Junk:
    """Documents that break exactly one rule each (see ASSUMED_THRESHOLDS)."""

    def __init__(self, composer: Composer):
        self.composer = composer
        by_key = {exact_key(t): t for axis in composer.pools.terms.values() for forms in axis for t in forms}
        terms = [by_key[k] for k in sorted(by_key)]
        # too_short documents are distinct by construction: number k is the k-th of a fixed
        # walk through (opening, term, closing, second closing), whatever chunk asks for it
        self._short_parts = (txt.SHORT_OPENINGS, terms, txt.SHORT_CLOSINGS, ["", *txt.SHORT_NOTES])
        self._short_space = int(np.prod([len(p) for p in self._short_parts]))
        self._short_step = next(a for a in range(int(self._short_space * 0.618) | 1, 10**12)
                                if np.gcd(a, self._short_space) == 1)

    def make(self, rule: str, rng: random.Random, spare: str, number: int = 0) -> tuple[str, str]:
        """A document breaking `rule`; `spare` is a clean document some kinds are made from, `number`
        the document's rank among all documents of its rule (used where they must all differ)."""
        if rule == "too_short":
            return self.too_short(number)
        return getattr(self, rule)(rng, spare)

    def _term(self, rng: random.Random, axis_order=("symptom", "disease", "anatomy", "modality")) -> str:
        pools = self.composer.pools
        axis = next((a for a in axis_order if pools.node_ids[a] and rng.random() < 0.7), None)
        axis = axis or next(a for a in axis_order if pools.node_ids[a])
        forms = pools.terms[axis][rng.randrange(len(pools.terms[axis]))]
        return rng.choice(forms)

    def too_short(self, number: int) -> tuple[str, str]:
        if number >= self._short_space:
            raise MedrayError(f"the tree has too few terms for {number + 1} distinct too_short documents")
        code = number * self._short_step % self._short_space
        picked = []
        for part in self._short_parts:
            code, i = divmod(code, len(part))
            picked.append(part[i])
        opening, term, closing, extra = picked
        text = f"{opening} {term} {closing}" + (f" {extra}" if extra else "")
        return text, "note_fragment"

    def too_long(self, rng, spare) -> tuple[str, str]:
        target = rng.randint(6000, 9000)
        np_rng = np.random.default_rng(rng.getrandbits(64))
        sections = [d[0] for d in self.composer.compose_many(["textbook"] * (target // 150 + 4), np_rng, rng)]
        parts, seen, n = [], set(), 0
        for text in sections:
            for line in text.split("\n"):
                if line.strip() and line not in seen and n < target:  # section headers once: no repeated lines
                    seen.add(line)
                    parts.append(line)
                    n += len(line.split())
        return "\n\n".join(parts), "book_chapter"

    def symbol_ratio(self, rng, spare) -> tuple[str, str]:
        text = spare
        wraps = txt.SYMBOL_WRAPS

        def wrap(m: re.Match) -> str:
            (a, b), (c, d) = rng.choice(wraps), rng.choice(wraps)
            return f"{c}{a}{m.group(0)}{b}{d}"

        return re.sub(r"\S+", wrap, text), "markup_debris"

    def digit_ratio(self, rng, spare) -> tuple[str, str]:
        rows = rng.sample(txt.LAB_ANALYTES, rng.randint(14, 22))
        cols = rng.randint(8, 12)
        lines = ["Results " + " ".join(f"D{i}" for i in range(1, cols + 1))]
        for name in rows:
            lines.append(name + " " + " ".join(str(rng.randint(10, 999)) for _ in range(cols)))
        return "\n".join(lines), "lab_table"

    def repeated_lines(self, rng, spare) -> tuple[str, str]:
        line = rng.choice(txt.REPEATED_LINES)
        others = rng.sample([ln for ln in txt.REPEATED_LINES if ln != line], 2)
        lines = [line] * rng.randint(18, 30) + others
        rng.shuffle(lines)
        return "\n".join(lines), "template_glitch"

    def boilerplate(self, rng, spare) -> tuple[str, str]:
        site = rng.choice(txt.SITES)
        lines = [ln.replace("{site}", site) for ln in rng.sample(txt.BOILERPLATE_LINES, rng.randint(28, 36))]
        lines.insert(rng.randrange(len(lines)), spare.split("\n")[0][:120])  # the page's title, drowned in chrome
        return "\n".join(lines), "web_page"

    def language(self, rng, spare) -> tuple[str, str]:
        lang = rng.choice(sorted(txt.FOREIGN))
        sentences = rng.sample(txt.FOREIGN[lang], rng.randint(10, 14))
        cut = rng.randint(4, len(sentences) - 4)
        return " ".join(sentences[:cut]) + "\n\n" + " ".join(sentences[cut:]), f"foreign_{lang}"

    def low_quality(self, rng, spare) -> tuple[str, str]:
        keywords = [self._term(rng) for _ in range(rng.randint(1, 3))]
        lines = []
        for _ in range(rng.randint(2, 4)):
            parts = []
            while sum(len(p.split()) for p in parts) < rng.randint(35, 60):
                if rng.random() < 0.75:
                    parts.append(rng.choice(txt.SPAM_PHRASES).replace("{kw}", rng.choice(keywords)))
                else:
                    parts.append(" ".join(rng.sample(txt.SPAM_FILLER, 3)))
            lines.append(" ".join(parts))
        text = "\n".join(lines)
        while len(text.split()) < 110:
            text += " " + rng.choice(txt.SPAM_PHRASES).replace("{kw}", keywords[0])
        return text, "seo_page"


def malformed_line(reason: str, rng: random.Random, text: str) -> tuple[bytes, str]:
    """A line the reader must reject with `reason`, built around a plausible record."""
    url = f"https://web.example.com/page/{rng.getrandbits(32):08x}"
    if reason == "bad_json":
        variant = rng.choice(("truncated", "single_quotes", "trailing_comma", "unquoted_key"))
        good = json.dumps({"text": text, "source_url": url}, ensure_ascii=False)
        line = {
            "truncated": good[: max(12, len(good) * 2 // 3)],
            "single_quotes": "{'text': " + repr(text) + ", 'source_url': " + repr(url) + "}",
            "trailing_comma": good[:-1] + ", }",
            "unquoted_key": "{text: " + json.dumps(text) + "}",
        }[variant]
        return line.encode("utf-8"), variant
    if reason == "missing_text":
        variant = rng.choice(("title_only", "body_field", "meta_only"))
        record = {
            "title_only": {"title": text.split("\n")[0][:80], "kind": "web_page"},
            "body_field": {"body": text, "kind": "clinical_note"},
            "meta_only": {"kind": "radiology_report", "source_url": url},
        }[variant]
        return json.dumps(record, ensure_ascii=False).encode("utf-8"), variant
    if reason == "text_not_string":
        variant = rng.choice(("number", "list", "object", "boolean"))
        value = {"number": rng.randint(1, 10**6), "list": text.split("\n")[:3], "object": {"en": text[:200]},
                 "boolean": True}[variant]
        return json.dumps({"text": value, "source_url": url}).encode("utf-8"), variant
    if reason == "bad_encoding":
        variant = rng.choice(("latin1", "stray_bytes"))
        if variant == "latin1":
            foreign = " ".join(rng.sample(txt.FOREIGN["fr"], 3))
            return json.dumps({"text": foreign, "source_url": url}, ensure_ascii=False).encode("latin-1"), variant
        raw = json.dumps({"text": text, "source_url": url}, ensure_ascii=False).encode("utf-8")
        cut = raw.index(b'"text": "') + 9 + rng.randint(0, 20)
        return raw[:cut] + b"\xff\xfe\xc3(" + raw[cut:], variant
    raise ValueError(f"unknown malformed reason {reason!r}")
