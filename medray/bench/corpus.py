"""A generated medical corpus for benchmarks: clinical sentences around tree terms.

Mentions are drawn from the tree's own names and synonyms (short ones, as
people write them), wrapped in report-style templates with negation and
hedging, and mixed with sentences that mention nothing, at about one
mention per ten words, the density of real clinical notes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from medray.met.normalize import normalize_term
from medray.met.tree import Tree

TEMPLATES = (
    "The patient presents with {s} and {s}.",
    "History of {d}, currently on treatment.",
    "No evidence of {s} or {d}.",
    "{m} of the {a} shows {s}.",
    "Possible {d}, clinical correlation is recommended.",
    "There is mild {s} in the {a}, without {s}.",
    "Findings are consistent with {d}.",
    "{s} has resolved since the prior examination.",
    "The {a} appears unremarkable.",
    "Differential diagnosis includes {d} versus {d}.",
    "She denies {s}, {s} or {s}.",
    "Follow-up {m} of the {a} in three months to assess {d}.",
)
FILLER = (
    "The patient was seen in the outpatient clinic today accompanied by a family member.",
    "Vital signs were stable and the patient tolerated the procedure well.",
    "Medications were reviewed and reconciled with the pharmacy record.",
    "Plan discussed with the patient, who agrees and will return in two weeks.",
    "Comparison is made with the study obtained earlier this year.",
    "Laboratory values from this morning are pending at the time of dictation.",
    "The referring physician was informed of these results by telephone.",
    "Informed consent was obtained after the risks and benefits were explained.",
)
_AXIS_SLOT = {"disease": "d", "symptom": "s", "anatomy": "a", "modality": "m"}


def term_pools(tree: Tree, max_words: int = 4, seed: int = 0) -> dict[str, list[str]]:
    """Names and synonyms per template slot, of at most `max_words` words."""
    cols = tree.table.select(["node_id", "axis", "name", "synonyms"]).to_pydict()
    pools: dict[str, list[str]] = {slot: [] for slot in _AXIS_SLOT.values()}
    for nid, axis, name, syns in zip(cols["node_id"], cols["axis"], cols["name"], cols["synonyms"]):
        if axis is None or nid.startswith("MET:"):
            continue
        for term in [name, *(syns or ())]:
            if 1 <= len(normalize_term(term).split()) <= max_words and len(term) >= 4:
                pools[_AXIS_SLOT[axis]].append(term)
    rng = random.Random(seed)
    for terms in pools.values():
        terms.sort()
        rng.shuffle(terms)
    return pools


def generate_documents(tree: Tree, target_bytes: int, seed: int = 0, sentences: tuple[int, int] = (4, 16)) -> Iterator[str]:
    """Documents until `target_bytes` of text, the same for the same tree and seed."""
    rng = random.Random(seed)
    pools = term_pools(tree, seed=seed)
    produced = 0
    while produced < target_bytes:
        parts = []
        for _ in range(rng.randint(*sentences)):
            if rng.random() < 0.35:
                parts.append(rng.choice(FILLER))
                continue
            template = rng.choice(TEMPLATES)
            parts.append(_fill(template, pools, rng))
        doc = " ".join(parts)
        produced += len(doc)
        yield doc


def _fill(template: str, pools: dict[str, list[str]], rng: random.Random) -> str:
    out, i = [], 0
    while True:
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            break
        out.append(template[i:j])
        slot = template[j + 1]
        out.append(rng.choice(pools[slot]) if pools[slot] else "finding")
        i = j + 3
    text = "".join(out)
    return text[0].upper() + text[1:]
