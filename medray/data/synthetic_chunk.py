"""One chunk of the generated corpus: which record is which defect, and each record's line.

Why apart: a chunk is made from (seed, chunk number) alone, so chunks can
be made in any process and order (`synthetic_files`) and the corpus stays
byte-identical for a seed. This module plans a chunk (defects at fixed
rates, copies after their originals, blank lines between records), builds
each record from a clean document (`synthetic_docs`) or a defect maker
(`synthetic_defects`), and notes what it planted in a `Truth`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from json.encoder import encode_basestring

import numpy as np

from medray.data.synthetic_defects import (
    JUNK_RULES,
    MALFORMED,
    Junk,
    exact_variant,
    insert_pii,
    malformed_line,
    near_duplicate,
    text_stats,
)
from medray.data.synthetic_docs import CLEAN_KIND_WEIGHTS, CLEAN_KINDS, Composer
from medray.data.synthetic_truth import Truth
from medray.errors import MedrayError

CHUNK_RECORDS = 2000
# kind -> (rate per record, minimum per chunk). Copies, junk and malformed lines are
# records; blank lines are extra lines.
PLANT_RATES = {
    "exact_duplicate": (0.02, 3),
    "near_duplicate": (0.02, 3),
    "pii": (0.02, 3),
    "too_short": (0.005, 2),
    "too_long": (0.001, 2),
    "symbol_ratio": (0.005, 2),
    "digit_ratio": (0.005, 2),
    "repeated_lines": (0.005, 2),
    "boilerplate": (0.005, 2),
    "language": (0.006, 3),
    "low_quality": (0.01, 3),
    "bad_json": (0.002, 4),
    "missing_text": (0.001, 3),
    "text_not_string": (0.002, 4),
    "bad_encoding": (0.001, 2),
}
BLANK_RATE = (0.001, 2)
_FROM_CLEAN = frozenset({"clean", "pii", "symbol_ratio", "boilerplate", *MALFORMED})  # made from a clean text
_STATS_SAMPLE = 500  # clean documents of the first chunk measured for clean_stats
_KIND_URL = {"clinical_note": "ehr.example.org/notes", "radiology_report": "pacs.example.org/reports",
             "textbook": "books.example.org/medicine", "patient_education": "patients.example.org/leaflets"}


def plant_count(kind: str, n: int) -> int:
    rate, least = PLANT_RATES[kind]
    return max(least, round(rate * n))


def blank_count(n: int, plant: bool) -> int:
    return max(BLANK_RATE[1], round(BLANK_RATE[0] * n)) if plant else 0


def even_split(total: int, parts: int) -> list[int]:
    """`total` in `parts` contiguous parts, as equal as possible (the first ones one larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _plan(n: int, rng: random.Random, plant: bool) -> list[str]:
    """What each record of a chunk is; copies never sit in the first tenth (they need originals)."""
    cats: list[str] = []
    if plant:
        for kind in PLANT_RATES:
            cats += [kind] * plant_count(kind, n)
        if 2 * len(cats) > n:
            raise MedrayError(f"n_docs={n} is too small to plant every defect: use at least {2 * len(cats)}")
    cats += ["clean"] * (n - len(cats))
    rng.shuffle(cats)
    half, start = n // 2, rng.randrange(n - n // 2)
    for i in range(max(1, n // 10)):
        if cats[i] in ("exact_duplicate", "near_duplicate"):  # swap with a clean record of the second half
            j = next(j for k in range(n - half) if cats[j := half + (start + k) % (n - half)] == "clean")
            cats[i], cats[j] = cats[j], cats[i]
    return cats


@dataclass
class _Original:
    """A clean document of the chunk that copies can be made of."""

    rid: str
    text: str
    kind: str
    url: str
    words: int
    copies: int = 0


@dataclass
class Chunk:
    """A made chunk: its lines per file, its records and blank lines per file, what it planted."""

    parts: list[bytes]  # per file, newline-terminated lines
    records: list[int]
    blank: list[int]
    truth: Truth


class ChunkMaker:
    """Makes chunk `index` from (seed, index) alone, so chunks can be made in any process and order."""

    def __init__(self, composer: Composer, seed: int, plant: bool, names: list[str], record_doc_nodes: bool):
        self.composer, self.junk = composer, Junk(composer)
        self.seed, self.plant, self.names, self.record_doc_nodes = seed, plant, names, record_doc_nodes
        self.short_quota = plant_count("too_short", CHUNK_RECORDS)  # too_short documents numbered per chunk

    def make(self, index: int, n: int, first_lines: list[int]) -> Chunk:
        """Chunk `index` of `n` records; `first_lines[f]` is the number of lines already in file f."""
        rng = random.Random(f"chunk:{self.seed}:{index}")
        np_rng = np.random.default_rng([self.seed, index])
        cats = _plan(n, rng, self.plant)
        n_blank = blank_count(n, self.plant)
        lines: list[str | None] = list(cats)
        for pos in sorted(rng.sample(range(n + n_blank), n_blank)):
            lines.insert(pos, None)
        where = [(f, first_lines[f] + j + 1) for f, size in enumerate(even_split(len(lines), len(self.names)))
                 for j in range(size)]
        # every clean document of the chunk, and one per record made from a clean text, in one batch
        kinds = np_rng.choice(np.asarray(CLEAN_KINDS, dtype=object), sum(c in _FROM_CLEAN for c in cats),
                              p=CLEAN_KIND_WEIGHTS).tolist()
        docs = iter(self.composer.compose_many(kinds, np_rng, rng))
        truth = Truth(self.record_doc_nodes)
        state = {"fresh": [], "exact_duplicate": [], "near_duplicate": [], "short": index * self.short_quota}
        out: list[list[bytes]] = [[] for _ in self.names]
        records, blank = [0] * len(self.names), [0] * len(self.names)
        for cat, (f, line) in zip(lines, where):
            rid = f"{self.names[f]}:{line}"
            if cat is None:
                out[f].append(b"" if rng.random() < 0.5 else b"   ")
                blank[f] += 1
                truth.blank.append(rid)
                continue
            records[f] += 1
            made = next(docs) if cat in _FROM_CLEAN else None
            out[f].append(self._record(cat, rid, rng, made, state, truth, index == 0))
        parts = [b"\n".join(rows) + b"\n" if rows else b"" for rows in out]
        return Chunk(parts, records, blank, truth)

    def _record(self, cat: str, rid: str, rng: random.Random, made, state: dict, truth: Truth,
                sample_stats: bool) -> bytes:
        """One record's line; `made` is a composed (text, nodes, words, kind) for the kinds in _FROM_CLEAN."""
        if cat in ("clean", "pii"):
            text, nodes, words, kind = made
            url = f"https://{_KIND_URL[kind]}/{rng.getrandbits(40):010x}"
            if cat == "pii":
                text, counts = insert_pii(text, rng)
                truth.pii_docs[rid] = counts
            else:
                state["fresh"].append(_Original(rid, text, kind, url, words))
                if sample_stats and len(truth.clean_stats) < _STATS_SAMPLE:
                    truth.clean_stats.append(text_stats(text))
            truth.keep(rid, kind, nodes)
            return _json_line(text, kind, url)
        if cat in ("exact_duplicate", "near_duplicate"):
            orig = _pick_original(cat, rng, state["fresh"], state[cat])
            if orig is None:  # nothing to copy yet: a clean document instead
                kind = rng.choice(CLEAN_KINDS)
                return self._record("clean", rid, rng, (*self.composer.compose(kind, rng), 0, kind), state, truth,
                                    sample_stats)
            orig.copies += 1
            if cat == "exact_duplicate":
                text, variant = exact_variant(orig.text, rng)
                truth.exact.append({"id": rid, "of": orig.rid, "variant": variant})
            else:
                text, score, ops = near_duplicate(orig.text, rng)
                truth.near.append({"id": rid, "of": orig.rid, "jaccard": score, "edits": ops})
            truth.expected[rid] = cat
            return _json_line(text, orig.kind, orig.url)
        if cat in JUNK_RULES or cat == "low_quality":
            number = state["short"]
            state["short"] += cat == "too_short"
            text, kind = self.junk.make(cat, rng, made[0] if made else "", number)
            entry = {"id": rid, "reason": cat, "variant": kind, **text_stats(text)}
            (truth.low_quality if cat == "low_quality" else truth.junk).append(entry)
            truth.expected[rid] = cat
            return _json_line(text, kind, f"https://web.example.com/{kind}/{rng.getrandbits(32):08x}")
        data, variant = malformed_line(cat, rng, made[0])
        truth.malformed.append({"id": rid, "reason": cat, "variant": variant})
        truth.expected[rid] = cat
        return data


def _pick_original(cat: str, rng: random.Random, fresh: list[_Original], cluster: list[_Original]) -> _Original | None:
    """A clean document of the chunk to copy: often a new one, sometimes one already copied (bigger clusters)."""
    grown = [o for o in cluster if o.copies < 3]
    if grown and rng.random() < 0.3:
        return rng.choice(grown)
    min_words = 200 if cat == "near_duplicate" else 0  # a few edits then stay far above the Jaccard threshold
    if fresh:
        start = rng.randrange(len(fresh))
        for k in range(len(fresh)):
            i = (start + k) % len(fresh)
            if fresh[i].words >= min_words:
                orig = fresh.pop(i)
                cluster.append(orig)
                return orig
    return rng.choice(grown) if grown else None


def _json_line(text: str, kind: str, url: str) -> bytes:
    """`{"text": ..., "kind": ..., "source_url": ...}`; kind and url never need escaping."""
    return f'{{"text": {encode_basestring(text)}, "kind": "{kind}", "source_url": "{url}"}}'.encode()
