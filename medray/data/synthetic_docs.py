"""Clean documents for the generated corpus: a layout per kind, sentences from banks, entities from the tree.

A document is about a few nodes (drawn from a Zipf law over each axis;
`synthetic_entities`), mentions each by one surface form, and records
exactly the nodes its sentences name. Its sentences come from banks of
half-filled templates (`synthetic_bank`): per section, distinct templates
picked with NumPy, a few more or fewer until it has 100-600 words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from medray.data.synthetic_bank import Bank, build_bank, slot_base, slot_bit
from medray.data.synthetic_entities import AXIS_SLOT, EntityPools
from medray.data.synthetic_text import CLINICAL_HEADERS, CLINICAL_NOTE, RADIOLOGY, RADIOLOGY_HEADERS
from medray.data.synthetic_text_teaching import (
    EDUCATION,
    EDUCATION_HEADERS,
    EDUCATION_TITLES,
    TEXTBOOK,
    TEXTBOOK_HEADERS,
    TEXTBOOK_TITLES,
)
from medray.errors import MedrayError
from medray.met.tree import Tree

CLEAN_KINDS = ("clinical_note", "radiology_report", "textbook", "patient_education")
CLEAN_KIND_WEIGHTS = (0.35, 0.3, 0.2, 0.15)
MIN_CLEAN_WORDS, MAX_CLEAN_WORDS = 100, 600


@dataclass
class Section:
    name: str
    lo: int
    hi: int
    bank: Bank
    headers: list[str]
    optional: bool = False


@dataclass
class Layout:
    kind: str
    sections: list[Section]
    main: int  # the section that grows or shrinks to bring a document into 100-600 words
    titles: tuple[str, ...] = ()
    style: str = "paragraphs"  # "note": header lines or inline headers; "report": inline upper headers


_LAYOUTS = {
    "clinical_note": (CLINICAL_NOTE, CLINICAL_HEADERS, "note", (),
                      [("chief", 1, 1), ("hpi", 3, 8), ("pmh", 1, 3, True), ("meds", 1, 2, True), ("exam", 2, 5), ("plan", 2, 6)], 1),
    "radiology_report": (RADIOLOGY, RADIOLOGY_HEADERS, "report", (),
                         [("exam", 1, 1), ("indication", 1, 1), ("technique", 1, 2, True), ("comparison", 1, 1),
                          ("findings", 5, 12), ("impression", 1, 3)], 4),
    "textbook": (TEXTBOOK, TEXTBOOK_HEADERS, "paragraphs", tuple(TEXTBOOK_TITLES),
                 [("definition", 2, 3), ("epidemiology", 2, 4), ("pathophysiology", 2, 4), ("clinical", 2, 5),
                  ("diagnosis", 2, 4), ("treatment", 2, 4), ("prognosis", 1, 2, True)], 3),
    "patient_education": (EDUCATION, EDUCATION_HEADERS, "questions", tuple(EDUCATION_TITLES),
                          [("what", 2, 4), ("symptoms", 2, 4), ("diagnosis", 2, 4), ("treatment", 2, 5), ("call", 2, 3)], 3),
}
_GROW_ROUNDS = 12  # rounds of adding or removing sentences to bring a document into the word range


class Composer:
    """Clean documents: a layout per kind, banks of half-filled sentences, entities per document.

    Documents are composed in batches with NumPy: per section, a random
    start and a stride coprime with the number of templates pick distinct
    templates, each with a random filling; word counts and entity masks come
    from per-sentence arrays, so the only per-document Python is joining
    strings and filling the document's slots.
    """

    def __init__(self, tree: Tree, seed: int = 0, skew: float = 1.1, variants: int = 30):
        self.pools = EntityPools(tree, seed, skew)
        rng = random.Random(f"banks:{seed}")
        self.layouts: dict[str, Layout] = {}
        for kind, (material, headers, style, titles, sections, main) in _LAYOUTS.items():
            built = []
            for name, lo, hi, *opt in sections:
                bank = build_bank(material[name], self.pools, rng, variants)
                if bank.size:  # a section all of whose templates need an axis the tree lacks
                    built.append(Section(name, lo, hi, bank, headers[name], bool(opt)))
            if not built:
                raise MedrayError(f"the tree offers no entities for any {kind} template")
            names = [sec.name for sec in built]
            main_name = sections[main][0]
            main_at = names.index(main_name) if main_name in names else max(range(len(built)), key=lambda i: built[i].bank.templates)
            self.layouts[kind] = Layout(kind, built, main_at, titles, style)

    def compose(self, kind: str, rng: random.Random) -> tuple[str, list[str]]:
        """One document of `kind`: its text and the node ids it mentions."""
        text, nodes, _, _ = self.compose_many([kind], np.random.default_rng(rng.getrandbits(64)), rng)[0]
        return text, nodes

    def compose_many(self, kinds: list[str], np_rng: np.random.Generator,
                     rng: random.Random) -> list[tuple[str, list[str], int, str]]:
        """Documents (text, node ids, a lower bound of its words, kind), one per entry of `kinds`."""
        out: list = [None] * len(kinds)
        kinds_arr = np.asarray(kinds, dtype=object)
        for kind, layout in self.layouts.items():
            docs = np.flatnonzero(kinds_arr == kind).tolist()
            if docs:
                for d, doc in zip(docs, self._compose_kind(layout, len(docs), np_rng, rng)):
                    out[d] = doc
        return out

    def _compose_kind(self, layout: Layout, n_docs: int, np_rng: np.random.Generator, rng: random.Random):
        scale = np_rng.choice(np.array([0.6, 0.8, 1.0, 1.0, 1.2, 1.5, 1.8]), n_docs)
        counts, picks = [], []
        for sec in layout.sections:
            c = np.rint(np_rng.integers(sec.lo, sec.hi + 1, n_docs) * (scale if sec.hi > 1 else 1.0)).astype(np.int64)
            c = np.clip(c, min(sec.lo, sec.bank.templates), sec.bank.templates)
            if sec.optional:
                c[np_rng.random(n_docs) < 0.25] = 0
            counts.append(c)
            picks.append(sec.bank.picks(np_rng, n_docs))
        titles = [layout.titles[i] for i in np_rng.integers(0, len(layout.titles), n_docs)] if layout.titles else [""] * n_docs
        headers = list(zip(*[[sec.headers[i] for i in np_rng.integers(0, len(sec.headers), n_docs)]
                             for sec in layout.sections]))
        inline = (np_rng.random(n_docs) < 0.5).tolist()
        title_words = np.array([len(t.split()) for t in titles], dtype=np.int64)
        header_words = [np.array([len(hs[s].split()) for hs in headers], dtype=np.int64) for s in range(len(counts))]
        words = self._fit_words(layout, counts, picks, title_words, header_words)
        masks = np.zeros(n_docs, np.int64)
        texts = []
        for sec, c, idx in zip(layout.sections, counts, picks):
            taken = _taken(idx, c)
            masks |= np.bitwise_or.reduce(np.where(taken, sec.bank.masks[idx], 0), axis=1)
            flat = sec.bank.text_array[idx[taken]].tolist()  # row-major: each document's sentences in order
            ends = np.cumsum(c).tolist()
            texts.append([flat[e - n : e] for e, n in zip(ends, c.tolist())])
        if layout.titles:  # titles and question headers name the topic
            masks |= slot_bit("d", 0)
        drawn = self.pools.draw(np_rng, n_docs)
        keys, surfaces = self.pools.surfaces(np_rng, drawn)
        nodes = self._nodes(masks, drawn)
        default = {"d0": "this condition", "D0": "This condition"}
        ages = np_rng.integers(19, 96, n_docs).tolist()
        sexes = np.where(np_rng.random(n_docs) < 0.5, "man", "woman").tolist()
        docs = []
        for i in range(n_docs):
            mapping = {**default, **dict(zip(keys, surfaces[i])), "age": ages[i], "sexw": sexes[i]}
            parts = [sec_texts[i] for sec_texts in texts]
            text = _render(layout, parts, titles[i], headers[i], inline[i]).format_map(mapping)
            docs.append((text, nodes[i], words[i], layout.kind))
        return docs

    @staticmethod
    def _fit_words(layout: Layout, counts: list[np.ndarray], picks: list[np.ndarray], title_words: np.ndarray,
                   header_words: list[np.ndarray]) -> list[int]:
        """Add or remove sentences (in place; the main section first) until each document has 100-600
        words; returns each document's word count with every entity counted as one word (a floor)."""
        order = [layout.main] + [i for i in range(len(counts)) if i != layout.main]
        per_sentence = max(float(layout.sections[layout.main].bank.words.mean()), 1.0)
        for _ in range(_GROW_ROUNDS):
            words, slots = title_words.copy(), np.zeros(len(title_words), np.int64)
            for sec, c, idx, head in zip(layout.sections, counts, picks, header_words):
                taken = _taken(idx, c)
                words += np.where(taken, sec.bank.words[idx], 0).sum(axis=1) + np.where(c > 0, head, 0)
                slots += np.where(taken, sec.bank.slots[idx], 0).sum(axis=1)
            # an entity slot counts one word here and up to four in the text
            need = np.where(words < MIN_CLEAN_WORDS, np.ceil((MIN_CLEAN_WORDS - words) / per_sentence), 0).astype(np.int64)
            cut = np.where(words + 3 * slots > MAX_CLEAN_WORDS,
                           np.ceil((words + 3 * slots - MAX_CLEAN_WORDS) / (per_sentence + 3)), 0).astype(np.int64)
            if not need.any() and not cut.any():
                break
            for s in order:
                room = picks[s].shape[1] - counts[s]
                add = np.minimum(need, room)
                counts[s] += add
                need -= add
                drop = np.minimum(cut, np.maximum(counts[s] - 1, 0))
                counts[s] -= drop
                cut -= drop
        return words.tolist()

    def _nodes(self, masks: np.ndarray, drawn: dict[str, np.ndarray]) -> list[list[str]]:
        """Per document, the sorted node ids whose slot bit is set in its mask."""
        columns = []
        for axis, idx in drawn.items():
            if not idx.shape[1]:
                continue
            base = slot_base(AXIS_SLOT[axis])
            bits = (masks[:, None] >> (base + np.arange(idx.shape[1]))[None, :]) & 1
            ids = self.pools.node_array[axis][idx]
            columns.append(np.where(bits == 1, ids, None))
        if not columns:
            return [[] for _ in range(len(masks))]
        return [sorted(x for x in row if x is not None) for row in np.concatenate(columns, axis=1).tolist()]


def _taken(picks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Which of each document's picked sentences (a row of `picks`) it uses: the first `counts` of them."""
    return np.arange(picks.shape[1])[None, :] < counts[:, None]


def _render(layout: Layout, parts: list[list[str]], title: str, headers: list[str], inline: bool) -> str:
    blocks = [title] if title else []
    for sec, sentences, header in zip(layout.sections, parts, headers):
        if not sentences:
            continue
        if layout.style == "report":
            if sec.name == "impression" and len(sentences) > 1:
                body = "\n".join(f"{k}. {s}" for k, s in enumerate(sentences, 1))
                blocks.append(f"{header}:\n{body}")
            else:
                blocks.append(f"{header}: {' '.join(sentences)}")
        elif layout.style == "note":
            head = f"{header}: " if inline else f"{header.upper()}:\n"
            blocks.append(head + " ".join(sentences))
        elif layout.style == "questions" or inline:
            blocks.append(f"{header}\n{' '.join(sentences)}")
        else:
            blocks.append(" ".join(sentences))
    return ("\n" if layout.style == "report" else "\n\n").join(blocks)
