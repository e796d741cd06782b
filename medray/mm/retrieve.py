"""Node-guided retrieval: anchor image-text pairs to tree nodes, lexically first, by embedding otherwise.

A pair anchors to every node the matcher finds asserted in its text columns (present, and
uncertain unless `uncertain: drop`); a negated mention ("no pneumothorax") never anchors. A pair
with no anchoring mention falls back to embedding retrieval: each sentence that holds no matcher
hit and no negation word is embedded with the packaged MiniLM, and the nearest node names or
synonyms at or above the threshold become anchors `via="embedding"` with their cosine. Sentences
the matcher already read are left out because an embedding cannot tell "no effusion" from
"effusion". Embedding retrieval runs for every pair with no lexical anchor on the embedding axes (findings
and diseases by default), so "collapsed lung" still finds atelectasis though "lung" anchors the
pair to the anatomy axis. A pair left with nothing goes to `unanchored` with a reason.

`PairAnchorer` is the one implementation: `anchor_pairs` calls it in-process and
`anchor_pairs_ray` runs it in a Ray Data actor pool (one matcher and one embedder per actor), so
both paths give the same tables.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray import storage
from medray.errors import MedrayError
from medray.met.matcher import Matcher
from medray.met.tree import Tree
from medray.mm.mm_settings import RetrieveConfig
from medray.mm.pools import attach_node_ids, node_counts, node_pool, pools_under  # noqa: F401  (the retrieval API)

ANCHOR_SCHEMA = pa.schema([("id", pa.string()), ("node_id", pa.string()), ("via", pa.string()),
                           ("score", pa.float64()), ("assertion", pa.string()), ("surface", pa.string()),
                           ("column", pa.string())])
UNANCHORED_SCHEMA = pa.schema([("id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
_BATCH_SCHEMA = pa.schema([("_row", pa.int64()), *ANCHOR_SCHEMA, ("reason", pa.string()), ("detail", pa.string())])
UNANCHORED_REASONS = ("no_text", "no_present_mention", "no_match")

_SENTENCE = re.compile(r"[^.;!?\n]+")
_NEGATION = re.compile(r"\b(no|not|without|negative|free of|absent|resolved|ruled out|unremarkable|normal|clear)\b",
                       re.IGNORECASE)
_ASSERTION_RANK = {"present": 0, "uncertain": 1}


@dataclass(frozen=True)
class Candidates:
    """Node names and synonyms that embedding retrieval may return, one row per distinct term."""

    terms: tuple[str, ...]
    node_ids: tuple[str, ...]

    @classmethod
    def from_tree(cls, tree: Tree, axes: list[str], sources: list[str] | None = None) -> Candidates:
        cols = tree.table.select(["node_id", "axis", "name", "synonyms", "sources"]).to_pydict()
        seen: dict[str, str] = {}
        wanted = set(sources or ())
        for nid, axis, name, syns, srcs in zip(cols["node_id"], cols["axis"], cols["name"], cols["synonyms"],
                                               cols["sources"]):
            if axis is None or nid.startswith("MET:") or (axes and axis not in axes):
                continue
            if wanted and not wanted.intersection(srcs or ()):
                continue
            for term in [name, *(syns or ())]:
                key = " ".join(term.split()).lower()
                if key:
                    seen.setdefault(key, nid)
        return cls(tuple(seen), tuple(seen.values()))


@dataclass
class Anchoring:
    """Anchors (one row per pair and node) and the pairs that anchored to nothing, with reasons."""

    anchors: pa.Table
    unanchored: pa.Table
    pairs_in: int

    def counts(self) -> dict:
        ids = self.anchors.column("id").to_pylist()
        vias = self.anchors.column("via").to_pylist()
        by_via: dict[str, set] = defaultdict(set)
        for pair_id, via in zip(ids, vias):
            by_via[via].add(pair_id)
        reasons = self.unanchored.column("reason").to_pylist()
        return {"in": self.pairs_in, "anchored": len(set(ids)), "unanchored": len(reasons),
                "anchors": len(ids), "pairs_via": {v: len(s) for v, s in sorted(by_via.items())},
                "unanchored_reasons": {r: reasons.count(r) for r in sorted(set(reasons))}}


class PairAnchorer:
    """Anchors one batch of pairs; holds the matcher and (lazily) the embedder and candidate vectors."""

    def __init__(self, matcher, candidates: Candidates, cfg: RetrieveConfig):
        if isinstance(matcher, list):  # an object ref wrapped in a list, so Ray passes the ref itself
            import ray

            matcher = ray.get(matcher[0])
        self.matcher: Matcher = matcher
        self.candidates = candidates
        self.cfg = cfg
        self._embedder = None
        self._term_vectors: np.ndarray | None = None
        self._embed_nodes = frozenset(candidates.node_ids)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from medray.met.embed import get_embedder

            self._embedder = get_embedder(self.cfg.embedding.model_path)
            cache = self.cfg.embedding.cache
            if cache and storage.exists(cache):
                self._embedder.load_cache(cache)
            before = self._embedder.encoded
            self._term_vectors = self._embedder.encode(list(self.candidates.terms), self.cfg.embedding.batch_size)
            if cache and self._embedder.encoded > before:
                self._embedder.save_cache(cache)
        return self._embedder.encode(texts, self.cfg.embedding.batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = {c: ["" if t is None else str(t) for t in batch.column(c).to_pylist()] for c in self.cfg.text_columns}
        ids = [str(i) for i in batch.column(self.cfg.id_column).to_pylist()]
        rows_in = batch.column("_row").to_pylist() if "_row" in batch.column_names else [-1] * len(ids)
        lexical, other_hits, hit_spans = self._lexical(texts, len(ids))
        out: list[dict] = []
        fallback = [i for i in range(len(ids)) if not any(a["node_id"] in self._embed_nodes for a in lexical[i])]
        embedded, best = self._embedding(texts, fallback, hit_spans)
        for i, pair_id in enumerate(ids):
            lexical_nodes = {a["node_id"] for a in lexical[i]}
            found = lexical[i] + [a for a in embedded.get(i, []) if a["node_id"] not in lexical_nodes]
            for anchor in found:
                out.append({"_row": rows_in[i], "id": pair_id, **anchor, "reason": None, "detail": None})
            if not found:
                reason, detail = self._why(texts, i, other_hits[i], best.get(i))
                out.append({"_row": rows_in[i], "id": pair_id, "node_id": None, "via": None, "score": None,
                            "assertion": None, "surface": None, "column": None, "reason": reason, "detail": detail})
        return pa.Table.from_pylist(out, _BATCH_SCHEMA)

    def _lexical(self, texts: dict[str, list[str]], n: int):
        anchors: list[dict[str, dict]] = [{} for _ in range(n)]
        others: list[list[str]] = [[] for _ in range(n)]
        spans: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        allowed = ("present", "uncertain") if self.cfg.uncertain == "keep" else ("present",)
        for column, values in texts.items():
            hits = self.matcher.match_batch(values)
            for doc, nid, start, end, surface, assertion in zip(*(hits.column(c).to_pylist() for c in (
                    "doc", "node_id", "start", "end", "surface", "assertion"))):
                spans[(column, doc)].append((start, end, nid))
                if assertion not in allowed:
                    others[doc].append(f"{assertion}:{nid}")
                    continue
                prev = anchors[doc].get(nid)
                if prev is None or _ASSERTION_RANK[assertion] < _ASSERTION_RANK[prev["assertion"]]:
                    anchors[doc][nid] = {"node_id": nid, "via": "lexical", "score": 1.0, "assertion": assertion,
                                         "surface": surface, "column": column}
        return [[a[k] for k in sorted(a)] for a in anchors], others, spans

    def _sentences(self, texts: dict[str, list[str]], i: int, hit_spans) -> list[tuple[str, str]]:
        out = []
        for column, values in texts.items():
            taken = hit_spans.get((column, i), ())
            for m in _SENTENCE.finditer(values[i]):
                sentence = " ".join(m.group().split())
                if len(sentence) < 3 or _NEGATION.search(sentence):
                    continue
                if any(s < m.end() and e > m.start() and nid in self._embed_nodes for s, e, nid in taken):
                    continue
                out.append((column, sentence))
        return out

    def _embedding(self, texts, rows: list[int], hit_spans) -> tuple[dict[int, list[dict]], dict[int, float]]:
        emb = self.cfg.embedding
        if not emb.enabled or not rows or not self.candidates.terms:
            return {}, {}
        per_row = {i: self._sentences(texts, i, hit_spans) for i in rows}
        flat = [(i, column, s) for i, sents in per_row.items() for column, s in sents]
        if not flat:
            return {}, {}
        from medray.met.embed import topk_cosine

        vectors = self._embed([s for _, _, s in flat])
        k = min(len(self.candidates.terms), emb.top_k * 4)
        idx, val = topk_cosine(vectors, self._term_vectors, k=k)
        best_by_node: dict[int, dict[str, tuple[float, str, str]]] = defaultdict(dict)
        best_score: dict[int, float] = {}
        for (i, column, _), term_idx, scores in zip(flat, idx, val):
            best_score[i] = max(best_score.get(i, -1.0), float(scores[0]))
            for t, score in zip(term_idx, scores):
                if t < 0 or score < emb.threshold:
                    continue
                nid = self.candidates.node_ids[t]
                score = round(float(score), 6)
                prev = best_by_node[i].get(nid)
                if prev is None or score > prev[0]:
                    best_by_node[i][nid] = (score, self.candidates.terms[t], column)
        found: dict[int, list[dict]] = {}
        for i, nodes in best_by_node.items():
            top = sorted(nodes.items(), key=lambda kv: (-kv[1][0], kv[0]))[: emb.top_k]
            found[i] = [{"node_id": nid, "via": "embedding", "score": s, "assertion": "present", "surface": term,
                         "column": column} for nid, (s, term, column) in sorted(top)]
        return found, best_score

    def _why(self, texts, i: int, other_hits: list[str], best: float | None) -> tuple[str, str]:
        if not any(values[i].strip() for values in texts.values()):
            return "no_text", f"empty: {', '.join(self.cfg.text_columns)}"
        if not self.cfg.embedding.enabled:
            tail = "embedding retrieval off"
        elif best is None:
            tail = "no sentence left for embedding (all negated or already matched)"
        else:
            tail = f"best embedding cosine {best:.3f} < {self.cfg.embedding.threshold}"
        if other_hits:
            return "no_present_mention", f"{', '.join(sorted(set(other_hits)))}; {tail}"
        return "no_match", f"no lexical hit; {tail}"


def _prepare(columns: list[str], tree: Tree, cfg: RetrieveConfig | None, matcher: Matcher | None):
    cfg = cfg or RetrieveConfig()
    cfg.check()
    cfg.check_columns(columns)
    matcher = matcher or Matcher(tree, axes=cfg.matcher_axes or None)
    candidates = Candidates.from_tree(tree, cfg.embedding.axes, cfg.embedding.sources) if cfg.embedding.enabled else Candidates((), ())
    return cfg, matcher, candidates


def _numbered(pairs: pa.Table, cfg: RetrieveConfig) -> pa.Table:
    """The id and text columns plus `_row`, the input order both paths sort their output back into."""
    ids = pairs.column(cfg.id_column)
    if ids.null_count or len(pc.unique(ids)) != len(ids):
        raise MedrayError(f"pairs column {cfg.id_column!r} must hold unique, non-null ids")
    table = pairs.select([cfg.id_column, *dict.fromkeys(cfg.text_columns)])
    return table.append_column("_row", pa.array(np.arange(len(table)), pa.int64()))


def _split(batches: pa.Table, pairs_in: int) -> Anchoring:
    table = batches.sort_by([("_row", "ascending"), ("id", "ascending"), ("node_id", "ascending")])
    is_anchor = pc.is_valid(table.column("node_id"))
    anchors = table.filter(is_anchor).select(ANCHOR_SCHEMA.names).cast(ANCHOR_SCHEMA)
    unanchored = table.filter(pc.invert(is_anchor)).select(UNANCHORED_SCHEMA.names).cast(UNANCHORED_SCHEMA)
    return Anchoring(anchors, unanchored, pairs_in)


def anchor_pairs(pairs: pa.Table, tree: Tree, cfg: RetrieveConfig | None = None, matcher: Matcher | None = None,
                 batch_size: int | None = None) -> Anchoring:
    """Anchors for every pair of `pairs`, in-process; `matcher` reuses one already built from `tree`."""
    cfg, matcher, candidates = _prepare(pairs.column_names, tree, cfg, matcher)
    table = _numbered(pairs, cfg)
    anchorer = PairAnchorer(matcher, candidates, cfg)
    step = batch_size or cfg.batch_size
    parts = [anchorer(table.slice(s, step)) for s in range(0, len(table), step)]
    return _split(pa.concat_tables(parts) if parts else _BATCH_SCHEMA.empty_table(), len(pairs))


def anchor_pairs_ray(pairs, tree: Tree, cfg: RetrieveConfig | None = None, matcher: Matcher | None = None) -> Anchoring:
    """`anchor_pairs` on Ray Data; an actor pool holds one matcher and one embedder per actor.

    `pairs` is a table (output in its row order, as `anchor_pairs`) or a Ray Dataset (streamed,
    never collected on the driver; output ordered by id, ids assumed unique).
    """
    import ray
    from ray.data import ActorPoolStrategy

    from medray.met.ray_match import default_actors

    if isinstance(pairs, pa.Table):
        cfg, matcher, candidates = _prepare(pairs.column_names, tree, cfg, matcher)
        table = _numbered(pairs, cfg)
        dataset, pairs_in = ray.data.from_arrow(table), len(table)
    else:
        cfg, matcher, candidates = _prepare(list(pairs.schema().names), tree, cfg, matcher)
        dataset = pairs.select_columns([cfg.id_column, *dict.fromkeys(cfg.text_columns)])
        pairs_in = None
    ref = ray.put(matcher)
    out = dataset.map_batches(
        PairAnchorer, fn_constructor_args=([ref], candidates, cfg), batch_format="pyarrow",
        batch_size=cfg.batch_size, compute=ActorPoolStrategy(size=cfg.actors or default_actors()), num_cpus=1,
    )
    parts = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
             for b in out.iter_batches(batch_format="pyarrow", batch_size=None)]
    parts = [p.cast(_BATCH_SCHEMA) for p in parts if p.num_rows]
    result = _split(pa.concat_tables(parts) if parts else _BATCH_SCHEMA.empty_table(), pairs_in or 0)
    if pairs_in is None:
        result.pairs_in = len(set(result.anchors.column("id").to_pylist())) + result.unanchored.num_rows
    return result
