"""The tree nodes a generated document may mention, and the surface forms that name them unambiguously.

Why apart: choosing which names can be planted (one owner, 1-4 words,
not generic) and drawing a few nodes per document from a Zipf law is the
part of the clean documents (`synthetic_docs`) that knows the tree; the
sentence banks and the composer only see node indices and surface forms.
"""

from __future__ import annotations

import random
import unicodedata
from functools import cached_property

import numpy as np

from medray.errors import MedrayError
from medray.met.matcher import GENERIC_TERMS
from medray.met.normalize import normalize_term
from medray.met.tree import Tree

PER_DOC_NODES = {"disease": 4, "symptom": 5, "anatomy": 3, "modality": 2}  # a document is about a few nodes
SLOT_AXIS = {"d": "disease", "s": "symptom", "a": "anatomy", "m": "modality"}  # template slot letter -> axis
AXIS_SLOT = {v: k for k, v in SLOT_AXIS.items()}


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
            slot = AXIS_SLOT[axis]
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
            out[axis] = (np.asarray(flat, dtype=object), np.asarray([cap(t) for t in flat], dtype=object),
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


def cap(term: str) -> str:
    """The term with its first character upper-cased."""
    return term[0].upper() + term[1:] if term else term
