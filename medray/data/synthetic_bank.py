"""Sentence banks for the generated documents: each template filled a few dozen times but for its entities.

Why a bank of half-filled sentences: filling templates is the slow part,
so each template is filled (drugs, durations, sizes ...) a few dozen times
once, leaving the entity slots as format fields ("{d1}", "{S0}"). A
document (`synthetic_docs`) then picks distinct sentences per section with
NumPy and fills the entity slots with its own nodes; each sentence's mask
of entity slots says which of them it names.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np

from medray.data.synthetic_entities import SLOT_AXIS, EntityPools, cap
from medray.data.synthetic_text import FILLERS

DOC_SLOTS = ("age", "sexw")  # filled once per document: one patient per note
_TAG = re.compile(r"\{(\w+)\}")
_ENTITY_TAGS = frozenset("dsamt")


class Bank:
    """Half-filled sentences: `variants` fillings of each of `templates` usable templates.

    Sentence (t, v) sits at t * variants + v. A document takes distinct
    templates (so no sentence pattern repeats inside it) and one filling each.
    """

    def __init__(self, texts: list[str], masks: list[int], variants: int):
        self.variants = variants
        self.templates = len(texts) // variants if variants else 0
        self.size = len(texts)
        self.text_array = np.asarray(texts, dtype=object)  # format strings: "{d1}", "{S0}" ... are entities
        self.masks = np.asarray(masks, dtype=np.int64)  # bit (axis slot, index) per entity mentioned
        self.words = np.asarray([len(t.split()) for t in texts], dtype=np.int64)  # an entity counts one
        self.slots = np.asarray([len(_TAG.findall(t)) for t in texts], dtype=np.int64)
        n = max(self.templates, 1)
        self._steps = np.asarray([k for k in range(1, max(n, 2)) if np.gcd(k, n) == 1] or [1])

    def picks(self, rng: np.random.Generator, n_docs: int) -> np.ndarray:
        """Per document, one sentence of each template in a random order (start + j * step over templates)."""
        n = self.templates
        start = rng.integers(0, n, n_docs)
        step = self._steps[rng.integers(0, len(self._steps), n_docs)]
        template = (start[:, None] + step[:, None] * np.arange(n)[None, :]) % n
        return template * self.variants + rng.integers(0, self.variants, (n_docs, n))


def slot_base(slot: str) -> int:
    """The first mask bit of entity slot `slot` ("d", "s", "a" or "m"): 8 bits, one per node index."""
    return "dsam".index(slot) * 8


def slot_bit(slot: str, index: int) -> int:
    return 1 << (slot_base(slot) + index)


_ALTERNATIVES = re.compile(r"<([^<>]*)>")


def _pick_alternatives(template: str, rng: random.Random) -> str:
    return _ALTERNATIVES.sub(lambda m: rng.choice(m.group(1).split("|")), template)


def _fits(template: str, k: dict[str, int]) -> bool:
    """Whether some choice of alternatives needs no more distinct nodes per axis than a document has."""
    need = Counter(t.lower() for t in _TAG.findall(_ALTERNATIVES.sub("", template)) if t.lower() in _ENTITY_TAGS)
    need_d = need.get("d", 0) + (1 if need.get("t") else 0)
    return need_d <= k["d"] and all(need.get(s, 0) <= k[s] for s in "sam")


def build_bank(templates: list[str], pools: EntityPools, rng: random.Random, variants: int) -> Bank:
    """Fill the non-entity slots of each template `variants` times.

    A template whose entity slots need more distinct nodes than the tree
    offers on an axis (or an axis with none) is left out. The document's
    own slots ({age}, {sexw}: one patient per document) stay format fields.
    """
    texts: list[str] = []
    masks: list[int] = []
    k = {slot: pools.per_doc[axis] for slot, axis in SLOT_AXIS.items()}
    for template in templates:
        if not _fits(template, k):
            continue
        for _ in range(variants):
            sentence = _pick_alternatives(template, rng)
            for _ in range(50):  # an alternative may name an entity the tree lacks: choose again
                if _fits(sentence, k):
                    break
                sentence = _pick_alternatives(template, rng)
            else:  # the alternatives that name no entity
                sentence = _ALTERNATIVES.sub(lambda m: min(m.group(1).split("|"), key=lambda a: "{" in a), template)
            has_topic = any(t.lower() == "t" for t in _TAG.findall(sentence))
            free = {s: list(range(1 if s == "d" and has_topic else 0, k[s])) for s in "dsam"}
            for s in free.values():
                rng.shuffle(s)
            mask = 0

            def fill(match: re.Match, free=free) -> str:
                nonlocal mask
                tag = match.group(1)
                low = tag.lower()
                if low == "t":
                    mask |= slot_bit("d", 0)
                    return "{D0}" if tag == "T" else "{d0}"
                if low in SLOT_AXIS:
                    i = free[low].pop()
                    mask |= slot_bit(low, i)
                    return "{" + f"{tag}{i}" + "}"
                if low in DOC_SLOTS:
                    return "{" + low + "}"
                value = rng.choice(FILLERS[low])
                return cap(value) if tag[0].isupper() else value

            texts.append(_TAG.sub(fill, sentence))
            masks.append(mask)
    return Bank(texts, masks, variants)
