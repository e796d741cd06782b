"""Clean documents for the generated corpus: entities from the tree, sentences from templates.

Why a bank of half-filled sentences: filling templates is the slow part,
so each template is filled (drugs, durations, sizes ...) a few dozen times
once, leaving the entity slots as format fields ("{d1}", "{S0}"). A
document then picks distinct sentences per section with NumPy and fills the
entity slots with its own nodes: a document is about a few nodes (drawn from
a Zipf law over each axis), mentions each by one surface form, and records
exactly the nodes its sentences name.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from medray.data import synthetic_text as txt
from medray.errors import MedrayError
from medray.met.matcher import GENERIC_TERMS
from medray.met.normalize import normalize_term
from medray.met.tree import Tree

CLEAN_KINDS = ("clinical_note", "radiology_report", "textbook", "patient_education")
CLEAN_KIND_WEIGHTS = (0.35, 0.3, 0.2, 0.15)
PER_DOC_NODES = {"disease": 4, "symptom": 5, "anatomy": 3, "modality": 2}  # a document is about a few nodes
MIN_CLEAN_WORDS, MAX_CLEAN_WORDS = 100, 600
DOC_SLOTS = ("age", "sexw")  # filled once per document: one patient per note
_SLOT_AXIS = {"d": "disease", "s": "symptom", "a": "anatomy", "m": "modality"}
_AXIS_SLOT = {v: k for k, v in _SLOT_AXIS.items()}


class EntityPools:
    """Per axis: nodes with at least one surface form the matcher maps back to that node alone.

    A surface is usable when it has 1-4 words, is not generic, contains no
    sentence mark and normalises to exactly one node; so a planted mention is
    a mention of the recorded node and nothing else. Nodes are ranked by a
    seeded shuffle and weighted 1 / rank**skew.
    """

    def __init__(self, tree: Tree, seed: int, skew: float, max_words: int = 4):
        cols = tree.table.select(["node_id", "axis", "name", "synonyms", "absent_forms"]).to_pydict()
        absent = {normalize_term(t) for forms in cols["absent_forms"] for t in (forms or ())}
        owners: dict[str, set[str]] = {}  # normalised surface -> the nodes it names
        candidates: list[tuple[str, str, str, str]] = []
        for nid, axis, name, syns in zip(cols["node_id"], cols["axis"], cols["name"], cols["synonyms"]):
            for term in [name, *(syns or ())]:
                if term.count(" ") >= max_words:  # too long, and cannot share a key with a short surface
                    continue
                key = normalize_term(term)
                owners.setdefault(key, set()).add(nid)
                if axis is not None and not nid.startswith("MET:") and _usable(term, key, absent, max_words):
                    candidates.append((axis, nid, term.strip(" ,"), key))
        by_node: dict[tuple[str, str], set[str]] = {}
        for axis, nid, term, key in candidates:
            if len(owners[key]) == 1:
                by_node.setdefault((axis, nid), set()).add(term)
        by_axis: dict[str, list[tuple[str, list[str]]]] = {a: [] for a in PER_DOC_NODES}
        for (axis, nid), terms in by_node.items():
            by_axis[axis].append((nid, [_mid_sentence(t) for t in sorted(terms)]))
        rng = random.Random(f"entities:{seed}")
        self.node_ids: dict[str, list[str]] = {}
        self.node_array: dict[str, np.ndarray] = {}
        self.terms: dict[str, list[list[str]]] = {}
        self.cdf: dict[str, np.ndarray] = {}
        for axis, rows in by_axis.items():
            rows.sort()
            rng.shuffle(rows)
            self.node_ids[axis] = [r[0] for r in rows]
            self.node_array[axis] = np.asarray(self.node_ids[axis], dtype=object)
            self.terms[axis] = [r[1] for r in rows]
            weights = 1.0 / np.arange(1, len(rows) + 1, dtype=np.float64) ** skew
            self.cdf[axis] = np.cumsum(weights) / weights.sum() if len(rows) else weights
        if not any(self.node_ids.values()):
            raise MedrayError("the tree has no node with a usable name or synonym (1-4 words) to plant in documents")
        # At most half an axis per document, so that even a small tree has frequent and rare nodes.
        self.per_doc = {a: min(k, (len(self.node_ids[a]) + 1) // 2) for a, k in PER_DOC_NODES.items()}

    def draw(self, rng: np.random.Generator, n_docs: int) -> dict[str, np.ndarray]:
        """Per axis, an (n_docs, per_doc[axis]) array of distinct node indices per row, Zipf-distributed."""
        out = {}
        for axis, k in self.per_doc.items():
            if k == 0:
                out[axis] = np.zeros((n_docs, 0), dtype=np.int64)
                continue
            n_nodes = len(self.cdf[axis])
            picks = np.minimum(np.searchsorted(self.cdf[axis], rng.random((n_docs, 4 * k)), side="right"), n_nodes - 1)
            rows = np.empty((n_docs, k), dtype=np.int64)
            for i, row in enumerate(picks.tolist()):
                chosen = list(dict.fromkeys(row))[:k]
                fill = 0
                while len(chosen) < k:  # a small axis: complete with the top-ranked nodes
                    if fill not in chosen:
                        chosen.append(fill)
                    fill += 1
                rows[i] = chosen
            out[axis] = rows
        return out

    def surfaces(self, rng: np.random.Generator, drawn: dict[str, np.ndarray]) -> tuple[list[str], list[list[str]]]:
        """Format keys ("d0", ..., "D0", ...) and, per document, one surface form per drawn node."""
        keys, columns = [], []
        for axis, idx in drawn.items():
            if not idx.shape[1]:
                continue
            forms, caps, offset, n_forms = self._flat[axis]
            pick = offset[idx] + (rng.random(idx.shape) * n_forms[idx]).astype(np.int64)
            slot = _AXIS_SLOT[axis]
            keys += [f"{slot}{i}" for i in range(idx.shape[1])] + [f"{slot.upper()}{i}" for i in range(idx.shape[1])]
            columns += [forms[pick], caps[pick]]
        if not columns:
            return keys, [[] for _ in range(len(next(iter(drawn.values()))))]
        return keys, np.concatenate(columns, axis=1).tolist()

    @cached_property
    def _flat(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per axis: every surface form, capitalised too, and each node's first form and number of forms."""
        out = {}
        for axis, per_node in self.terms.items():
            flat = [t for forms in per_node for t in forms]
            n_forms = np.asarray([len(f) for f in per_node], dtype=np.int64)
            offset = (np.cumsum(n_forms) - n_forms).astype(np.int64)
            out[axis] = (np.asarray(flat, dtype=object), np.asarray([_cap(t) for t in flat], dtype=object),
                         offset, n_forms)
        return out


def _usable(term: str, key: str, absent: set[str], max_words: int) -> bool:
    """A surface a sentence can carry and the matcher reads back whole (its owner is checked apart)."""
    if len(key) < 4 or not 1 <= key.count(" ") + 1 <= max_words or key.replace(" ", "").isdigit():
        return False
    if (" " not in key and key in GENERIC_TERMS) or key in absent:
        return False
    return not any(c in term for c in ".!?;:{}()[]\n\u3002") and unicodedata.normalize("NFKC", term) == term


def _mid_sentence(term: str) -> str:
    """'Pleural effusion' -> 'pleural effusion'; acronyms ('HIV disease', 'ALT') keep their case."""
    first = term.split(" ", 1)[0]
    if len(first) > 1 and first[0].isupper() and first[1:].islower():
        return term[0].lower() + term[1:]
    return term


def _cap(term: str) -> str:
    return term[0].upper() + term[1:] if term else term


# ---- sentence banks: templates with everything but the entities filled ----------------------------

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


def _slot_bit(slot: str, index: int) -> int:
    return 1 << ("dsam".index(slot) * 8 + index)


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
    k = {slot: pools.per_doc[axis] for slot, axis in _SLOT_AXIS.items()}
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
                    mask |= _slot_bit("d", 0)
                    return "{D0}" if tag == "T" else "{d0}"
                if low in _SLOT_AXIS:
                    i = free[low].pop()
                    mask |= _slot_bit(low, i)
                    return "{" + f"{tag}{i}" + "}"
                if low in DOC_SLOTS:
                    return "{" + low + "}"
                value = rng.choice(txt.FILLERS[low])
                return _cap(value) if tag[0].isupper() else value

            texts.append(_TAG.sub(fill, sentence))
            masks.append(mask)
    return Bank(texts, masks, variants)


# ---- clean documents -----------------------------------------------------------------------------


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
    "clinical_note": (txt.CLINICAL_NOTE, txt.CLINICAL_HEADERS, "note", (),
                      [("chief", 1, 1), ("hpi", 3, 8), ("pmh", 1, 3, True), ("meds", 1, 2, True), ("exam", 2, 5), ("plan", 2, 6)], 1),
    "radiology_report": (txt.RADIOLOGY, txt.RADIOLOGY_HEADERS, "report", (),
                         [("exam", 1, 1), ("indication", 1, 1), ("technique", 1, 2, True), ("comparison", 1, 1),
                          ("findings", 5, 12), ("impression", 1, 3)], 4),
    "textbook": (txt.TEXTBOOK, txt.TEXTBOOK_HEADERS, "paragraphs", tuple(txt.TEXTBOOK_TITLES),
                 [("definition", 2, 3), ("epidemiology", 2, 4), ("pathophysiology", 2, 4), ("clinical", 2, 5),
                  ("diagnosis", 2, 4), ("treatment", 2, 4), ("prognosis", 1, 2, True)], 3),
    "patient_education": (txt.EDUCATION, txt.EDUCATION_HEADERS, "questions", tuple(txt.EDUCATION_TITLES),
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
            taken = np.arange(idx.shape[1])[None, :] < c[:, None]
            masks |= np.bitwise_or.reduce(np.where(taken, sec.bank.masks[idx], 0), axis=1)
            flat = sec.bank.text_array[idx[taken]].tolist()  # row-major: each document's sentences in order
            ends = np.cumsum(c).tolist()
            texts.append([flat[e - n : e] for e, n in zip(ends, c.tolist())])
        if layout.titles:  # titles and question headers name the topic
            masks |= _slot_bit("d", 0)
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
                taken = np.arange(idx.shape[1])[None, :] < c[:, None]
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
            base = "dsam".index(_AXIS_SLOT[axis]) * 8
            bits = (masks[:, None] >> (base + np.arange(idx.shape[1]))[None, :]) & 1
            ids = self.pools.node_array[axis][idx]
            columns.append(np.where(bits == 1, ids, None))
        if not columns:
            return [[] for _ in range(len(masks))]
        return [sorted(x for x in row if x is not None) for row in np.concatenate(columns, axis=1).tolist()]


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
