"""Entity matcher: longest whole-word matches of the tree's normalised synonyms, with assertions.

Matching runs over words, not characters (`wordscan.py`): a compiled scan
normalises the text, splits it into words and gives each its vocabulary
number and sentence; a compiled walk over a trie of words then yields the
leftmost-longest non-overlapping matches, never across a sentence end.
Assertions (present / absent / uncertain) are decided for all hits of a
batch at once with NumPy searches over the hits of a second, small cue trie
(`cues.py`) walked over the same words, scoped to the sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from medray.errors import MedrayError
from medray.met.cues import POST_NEG, POST_UNC, PRE_NEG, PRE_UNC, PSEUDO, TERMINATE, cue_masks
from medray.met.normalize import normalize_term
from medray.met.tree import Tree
from medray.met.wordscan import PhraseTrie, ScannedText, Vocabulary

ASSERTIONS = ("present", "absent", "uncertain")
PRESENT, ABSENT, UNCERTAIN = range(3)

# Single words that name a node somewhere but carry no entity on their own in running text.
GENERIC_TERMS = frozenset(
    """
    disease diseases disorder disorders syndrome syndromes abnormality abnormalities finding findings
    symptom symptoms sign signs condition conditions lesion lesions other unspecified normal abnormal
    left right body region structure system organ type stage mass masses document plan registration
    segmentation presentation procedure injury complication complications anomaly anomalies defect
    defects problem problems change changes phenotypic abnormal increased decreased reduced elevated
    low high process state history
    """.split()
)

HIT_SCHEMA = pa.schema(
    [
        ("doc", pa.int32()),
        ("node_id", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("surface", pa.string()),
        ("assertion", pa.string()),
    ]
)


@dataclass
class MatcherStats:
    surfaces: int
    words: int
    skipped_generic: int
    ambiguous_surfaces: int
    absent_forms: int


class Matcher:
    """Built once from a tree; pickles to its term lists and rebuilds on load."""

    def __init__(self, tree: Tree | None = None, *, axes: Sequence[str] | None = None, min_chars: int = 3,
                 pre_window: int = 8, post_window: int = 4, _terms: tuple | None = None):
        self.pre_window, self.post_window = pre_window, post_window
        self.min_chars = min_chars
        if _terms is None:
            if tree is None:
                raise MedrayError("Matcher needs a tree")
            _terms = self._collect_terms(tree, axes, min_chars)
        self._terms = _terms
        self._build(*_terms)

    # ---- construction --------------------------------------------------------
    @staticmethod
    def _collect_terms(tree: Tree, axes: Sequence[str] | None, min_chars: int) -> tuple:
        cols = tree.table.select(["node_id", "axis", "name", "synonyms", "absent_forms", "sources"]).to_pydict()
        wanted = set(axes) if axes else None
        best: dict[str, tuple[tuple, int, bool]] = {}  # surface -> (rank, node index, absent)
        node_ids: list[str] = []
        skipped = ambiguous = absent_count = 0
        for nid, axis, name, syns, absent, sources in zip(
            cols["node_id"], cols["axis"], cols["name"], cols["synonyms"], cols["absent_forms"], cols["sources"]
        ):
            if axis is None or nid.startswith("MET:") or (wanted and axis not in wanted):
                continue
            idx = len(node_ids)
            node_ids.append(nid)
            for pos, term in enumerate([name, *(syns or ())]):
                key = normalize_term(term)
                if len(key) < min_chars or key.replace(" ", "").isdigit():
                    continue
                if " " not in key and key in GENERIC_TERMS:
                    skipped += 1
                    continue
                rank = (1, 0 if pos == 0 else 1, -len(sources or ()), idx)
                prev = best.get(key)
                if prev is not None and not prev[2]:
                    ambiguous += 1
                if prev is None or (not prev[2] and rank < prev[0]):
                    best[key] = (rank, idx, False)
            for term in absent or ():
                key = normalize_term(term)
                if key:
                    absent_count += 1
                    best[key] = ((0,), idx, True)  # curated absent forms win
        surfaces = sorted(best)
        stats = MatcherStats(len(surfaces), 0, skipped, ambiguous, absent_count)
        return (
            tuple(node_ids),
            tuple(surfaces),
            tuple(best[s][1] for s in surfaces),
            tuple(best[s][2] for s in surfaces),
            stats,
        )

    def _build(self, node_ids, surfaces, surface_nodes, surface_absent, stats) -> None:
        self.node_ids = pa.array(node_ids, pa.string())
        self.surfaces = surfaces
        self.stats = stats
        masks = cue_masks()
        cue_phrases = sorted(masks)
        self.vocab = Vocabulary(sorted({w for phrase in (*surfaces, *cue_phrases) for w in phrase.split(" ")}))
        self.terms = PhraseTrie(self.vocab, list(surfaces), list(range(len(surfaces))))
        self.surface_node = np.asarray(surface_nodes, dtype=np.int32)
        self.surface_absent = np.asarray(surface_absent, dtype=bool)
        self.cues = PhraseTrie(self.vocab, cue_phrases, [masks[p] for p in cue_phrases])
        self.stats.words = len(self.vocab.words)

    def __reduce__(self):
        # Ship the term lists, not the tries: smaller, and rebuilding is one pass.
        return (_rebuild, (self._terms, self.min_chars, self.pre_window, self.post_window))

    def __len__(self) -> int:
        return len(self.surface_node)

    # ---- matching ---------------------------------------------------------------
    def match(self, text: str) -> list[dict]:
        """Hits in one text, as dicts (convenient for the CLI and tests)."""
        return self.match_batch([text]).drop(["doc"]).to_pylist()

    def match_batch(self, texts: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> pa.Table:
        """Hits of a batch of texts: doc index, node id, span, surface, assertion."""
        return self.count_tokens_and_match(texts)[0]

    def count_tokens_and_match(self, texts: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> tuple[pa.Table, int]:
        """`match_batch` plus the number of words seen (for throughput figures)."""
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            texts = texts.to_pylist()
        texts = ["" if t is None else t for t in texts]
        joined = "\n\n".join(texts)  # a blank line: documents never share a sentence
        scanned = self.vocab.scan(joined)
        h_start, h_end, surface = self.terms.match(scanned)
        if not len(surface):
            return HIT_SCHEMA.empty_table(), scanned.n_words
        assertion = self._assert(scanned, h_start, h_end)
        assertion[self.surface_absent[surface]] = ABSENT
        char_start, char_end = scanned.starts[h_start], scanned.ends[h_end]
        doc_starts = np.cumsum([0] + [len(t) + 2 for t in texts[:-1]])
        doc = np.searchsorted(doc_starts, char_start, side="right") - 1
        offset = doc_starts[doc]
        table = pa.Table.from_arrays(
            [
                pa.array(doc, pa.int32()),
                self.node_ids.take(pa.array(self.surface_node[surface])),
                pa.array(char_start - offset, pa.int32()),
                pa.array(char_end - offset, pa.int32()),
                scanned.spans(char_start, char_end),
                pa.array(np.asarray(ASSERTIONS, dtype=object)[assertion], pa.string()),
            ],
            schema=HIT_SCHEMA,
        )
        return table, scanned.n_words

    def _assert(self, scanned: ScannedText, h_start: np.ndarray, h_end: np.ndarray) -> np.ndarray:
        out = np.full(len(h_start), PRESENT, dtype=np.int8)
        c_start, c_end, c_mask = self.cues.match(scanned)
        if not len(c_mask):
            return out
        sentence = scanned.sentence
        term = (c_mask >> TERMINATE) & 1 == 1
        t_start = c_start[term]

        def pre(kind: int) -> np.ndarray:
            sel = ((c_mask >> kind) & 1 == 1) & ((c_mask >> PSEUDO) & 1 == 0)
            ce = c_end[sel]
            if not len(ce):
                return np.zeros(len(h_start), dtype=bool)
            i = np.searchsorted(ce, h_start, side="left") - 1
            ok = i >= 0
            cue = ce[np.maximum(i, 0)]
            ok &= sentence[cue] == sentence[h_start]
            ok &= h_start - cue - 1 <= self.pre_window
            j = np.searchsorted(t_start, h_start, side="left") - 1
            blocked = (j >= 0) & (t_start[np.maximum(j, 0)] > cue) if len(t_start) else np.zeros_like(ok)
            return ok & ~blocked

        def post(kind: int) -> np.ndarray:
            sel = ((c_mask >> kind) & 1 == 1) & ((c_mask >> PSEUDO) & 1 == 0)
            cs = c_start[sel]
            if not len(cs):
                return np.zeros(len(h_start), dtype=bool)
            i = np.searchsorted(cs, h_end, side="right")
            ok = i < len(cs)
            cue = cs[np.minimum(i, len(cs) - 1)]
            ok &= sentence[cue] == sentence[h_end]
            ok &= cue - h_end - 1 <= self.post_window
            j = np.searchsorted(t_start, h_end, side="right")
            blocked = (j < len(t_start)) & (t_start[np.minimum(j, len(t_start) - 1)] < cue) if len(t_start) else np.zeros_like(ok)
            return ok & ~blocked

        negated = pre(PRE_NEG) | post(POST_NEG)
        uncertain = pre(PRE_UNC) | post(POST_UNC)
        out[negated] = ABSENT
        out[uncertain] = UNCERTAIN
        return out


def _rebuild(terms, min_chars, pre_window, post_window) -> Matcher:
    return Matcher(None, min_chars=min_chars, pre_window=pre_window, post_window=post_window, _terms=terms)
