"""Entity matcher: an Aho-Corasick automaton over the tree's normalised synonyms.

Matching runs over words, not characters: each vocabulary word has a
fixed-width code of small digits (each digit position from its own
character range, so a match can only start on a word), a batch becomes one
string of word codes with runs of unknown words collapsed (`wordcodes.py`),
and pyahocorasick's `iter_long` gives the longest non-overlapping matches.
Word boundaries are exact by construction, and no trie node has more
children than the digit base, about the cube root of the vocabulary
(pyahocorasick scans a node's children one by one). Assertions (present /
absent / uncertain) are decided for all hits of a batch at once with NumPy
searches over the hits of a second, small cue automaton (`cues.py`), scoped
to the sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.errors import MedrayError
from medray.met.cues import POST_NEG, POST_UNC, PRE_NEG, PRE_UNC, PSEUDO, TERMINATE, cue_masks
from medray.met.normalize import normalize_term, normalize_text
from medray.met.tree import Tree
from medray.met.wordcodes import EncodedBatch, Vocabulary, encode_batch

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
        phrases = [*surfaces, *masks]
        self.vocab = Vocabulary(sorted({w for phrase in phrases for w in phrase.split(" ")}), phrases)
        self.width = self.vocab.width
        encode = self.vocab.encode_phrase

        self.automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for i, surface in enumerate(surfaces):
            self.automaton.add_word(encode(surface), i)
        self.surface_node = np.asarray(surface_nodes, dtype=np.int32)
        self.surface_absent = np.asarray(surface_absent, dtype=bool)
        self.surface_words = np.asarray([s.count(" ") + 1 for s in surfaces], dtype=np.int32)
        self.cues = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for phrase in sorted(masks):  # value: kind mask in the low byte, word count above it
            self.cues.add_word(encode(phrase), masks[phrase] | ((phrase.count(" ") + 1) << 8))
        self.automaton.make_automaton()
        self.cues.make_automaton()
        self.stats.words = len(self.vocab.words)

    def __reduce__(self):
        # Ship the term lists, not the automaton: smaller, and rebuilding is one pass.
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
        """`match_batch` plus the number of words seen (for throughput figures).

        ASCII documents are matched apart from the others: their characters
        fit one byte, which makes every vectorised pass four times lighter.
        """
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            texts = texts.to_pylist()
        texts = ["" if t is None else t for t in texts]
        ascii_docs = [i for i, t in enumerate(texts) if t.isascii()]
        if len(ascii_docs) in (0, len(texts)):
            return self._match_joined(texts)
        ascii_set = set(ascii_docs)
        other_docs = [i for i in range(len(texts)) if i not in ascii_set]
        parts, words = [], 0
        for group in (ascii_docs, other_docs):
            table, n = self._match_joined([texts[i] for i in group])
            words += n
            remap = np.asarray(group, dtype=np.int32)[table.column("doc").to_numpy()]
            parts.append(table.set_column(0, "doc", pa.array(remap, pa.int32())))
        merged = pa.concat_tables(parts)
        return merged.take(pc.sort_indices(merged, [("doc", "ascending"), ("start", "ascending")])), words

    def _match_joined(self, texts: list[str]) -> tuple[pa.Table, int]:
        joined = "\n\n".join(texts)  # a blank line: documents never share a sentence
        batch = encode_batch(normalize_text(joined), self.vocab)
        raw = list(self.automaton.iter_long(batch.text))
        if not raw:
            return HIT_SCHEMA.empty_table(), batch.n_words
        hits = np.asarray(raw, dtype=np.int64)
        surface = hits[:, 1]
        last = hits[:, 0] // self.width
        h_end = batch.seq_word[last]
        h_start = batch.seq_word[last - self.surface_words[surface] + 1]
        assertion = self._assert(batch, h_start, h_end)
        assertion[self.surface_absent[surface]] = ABSENT
        char_start, char_end = batch.starts[h_start], batch.ends[h_end]
        doc_starts = np.cumsum([0] + [len(t) + 2 for t in texts[:-1]])
        doc = np.searchsorted(doc_starts, char_start, side="right") - 1
        offset = doc_starts[doc]
        table = pa.Table.from_arrays(
            [
                pa.array(doc, pa.int32()),
                self.node_ids.take(pa.array(self.surface_node[surface])),
                pa.array(char_start - offset, pa.int32()),
                pa.array(char_end - offset, pa.int32()),
                _slices(joined, char_start, char_end),
                pa.array(np.asarray(ASSERTIONS, dtype=object)[assertion], pa.string()),
            ],
            schema=HIT_SCHEMA,
        )
        return table, batch.n_words

    def _assert(self, batch: EncodedBatch, h_start: np.ndarray, h_end: np.ndarray) -> np.ndarray:
        out = np.full(len(h_start), PRESENT, dtype=np.int8)
        cue_hits = list(self.cues.iter_long(batch.text))
        if not cue_hits:
            return out
        sentence = batch.sentence
        c = np.asarray(cue_hits, dtype=np.int64)
        last = c[:, 0] // self.width
        c_mask = c[:, 1] & 0xFF
        c_end = batch.seq_word[last]
        c_start = batch.seq_word[last - (c[:, 1] >> 8) + 1]
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


def _slices(text: str, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """text[s:e] for every span, as an Arrow string array; gathered with NumPy for ASCII text."""
    if not text.isascii():
        return pa.array([text[s:e] for s, e in zip(starts.tolist(), ends.tolist())], pa.string())
    lengths = (ends - starts).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    data = np.frombuffer(text.encode("ascii"), dtype=np.uint8)[index]
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))


def _rebuild(terms, min_chars, pre_window, post_window) -> Matcher:
    return Matcher(None, min_chars=min_chars, pre_window=pre_window, post_window=post_window, _terms=terms)
