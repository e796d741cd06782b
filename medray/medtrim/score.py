"""MedTrim's score S: how alike two reports are, from their meta-entities (arXiv 2504.15929).

    S(a, b) = g0 * Jaccard(classes) + g1 * mean IoU(adjectives) + g2 * mean IoU(directions)

Meta-entities are OBER's output, ``{class: {"adjectives": set, "directions": set}}``, with
``"no_finding"`` a class like the others. Where the paper and the reference code
(icon-lab/MedTrim, ``TripletGenerator``) leave room, medray chooses:

- Classes are the dict's keys, for the Jaccard term too. The reference takes the Jaccard over the
  report's CheXpert label vector and the IoUs over OBER's dict; medray has one source for both.
- IoU of two empty sets is 1 (neither report qualifies the finding: they agree), as the reference;
  Jaccard of two empty class sets is 1 likewise.
- The descriptor means run over the UNION of the two class sets; a class only one report has
  counts 0. The reference sums the IoUs of the shared classes and divides by the anchor's class
  count, so its S(a, b) != S(b, a) when the class counts differ. The union keeps S symmetric (one
  score per pair, a symmetric matrix) and makes each descriptor term at most the class Jaccard, so
  adjectives refine the disease overlap and never outweigh it. With equal class sets the two agree;
  with no shared class both give S = 0.
- The weights are divided by their sum (``ScoreConfig.weights``), so S is in [0, 1] and S(a, a) = 1.

`score` is the readable definition; `score_matrix` computes every pair of a mini-batch at once
(sets as integer ids, per-class IoU tables over the few distinct sets, gathered into (n, n)) and
is tested equal to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from medray.medtrim.settings import ScoreConfig

NO_FINDING = "no_finding"
DESCRIPTORS = ("adjectives", "directions")

Entities = dict[str, dict[str, frozenset]]
Weights = ScoreConfig | Sequence[float] | None


def _words(value, where: str) -> frozenset:
    if value is None:
        return frozenset()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{where} must be a list of strings, not {type(value).__name__}")
    words = list(value)
    if not all(isinstance(w, str) for w in words):
        raise ValueError(f"{where} must hold strings only")
    return frozenset(words)


def normalize_entities(entities: Mapping) -> Entities:
    """Meta-entities with frozenset descriptors; raises ValueError naming what is malformed.

    An empty mapping means OBER kept no finding, which is what ``no_finding`` says, so it becomes
    that: the two spellings of "nothing found" must score 1 against each other, not 0.
    """
    if not isinstance(entities, Mapping):
        raise ValueError(f"meta-entities must be an object of classes, not {type(entities).__name__}")
    out: Entities = {}
    for name, facts in entities.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"class name {name!r} is not a non-empty string")
        if facts is None:
            facts = {}
        if not isinstance(facts, Mapping):
            raise ValueError(f"class {name!r}: expected an object with adjectives/directions")
        out[name] = {key: _words(facts.get(key), f"{name}.{key}") for key in DESCRIPTORS}
    return out or {NO_FINDING: {key: frozenset() for key in DESCRIPTORS}}


def parse_entities(value: str | bytes | Mapping | None) -> Entities:
    """Meta-entities from a table cell: a JSON string (as OBER writes them) or an already-parsed
    mapping. Raises ValueError for null, unparsable or malformed cells (mining rejects those)."""
    if value is None:
        raise ValueError("entities is null")
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"entities is not JSON ({exc})") from None
    return normalize_entities(value)


def canonical_json(entities: Mapping) -> str:
    """The canonical JSON of meta-entities: classes and descriptors sorted, so equal sets compare equal."""
    norm = normalize_entities(entities)
    return json.dumps({c: {k: sorted(norm[c][k]) for k in DESCRIPTORS} for c in sorted(norm)},
                      separators=(",", ":"))


def resolve_weights(weights: Weights) -> tuple[float, float, float]:
    """(g0, g1, g2) normalised to sum 1, from a ScoreConfig, a 3-sequence, or None (the defaults)."""
    if weights is None:
        weights = ScoreConfig()
    elif not isinstance(weights, ScoreConfig):
        g = tuple(weights)
        if len(g) != 3:
            raise ValueError(f"weights must be (g0, g1, g2), got {len(g)} values")
        weights = ScoreConfig(*g)
    return weights.weights()


def iou(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b|, and 1 for two empty sets."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def score(a: Mapping, b: Mapping, weights: Weights = None) -> float:
    """S(a, b) for two reports' meta-entities (mappings or JSON strings)."""
    g0, g1, g2 = resolve_weights(weights)
    a, b = parse_entities(a), parse_entities(b)
    union = len(a.keys() | b.keys())
    if not union:
        return g0 + g1 + g2
    shared = sorted(a.keys() & b.keys())
    jaccard = len(shared) / union
    adjectives = sum(iou(a[c]["adjectives"], b[c]["adjectives"]) for c in shared) / union
    directions = sum(iou(a[c]["directions"], b[c]["directions"]) for c in shared) / union
    return g0 * jaccard + g1 * adjectives + g2 * directions


def _overlaps(sets: Sequence[frozenset]) -> tuple[np.ndarray, np.ndarray]:
    """|a & b| and |a | b| for every pair of a few distinct sets, from integer 0/1 rows: exact
    counts, and no BLAS threads (tiny float matmuls lose to thread start-up on a busy machine)."""
    vocab = {word: j for j, word in enumerate(sorted(set().union(*sets)))}
    marks = np.zeros((len(sets), len(vocab)), dtype=np.int64)
    for i, words in enumerate(sets):
        marks[i, [vocab[w] for w in words]] = 1
    inter = marks @ marks.T
    sizes = marks.sum(axis=1)
    return inter, sizes[:, None] + sizes[None, :] - inter


def _ratio(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """inter / union, and 1 where the union is empty (the empty-set rule)."""
    return np.divide(inter, union, out=np.ones(inter.shape), where=union > 0)


def _distinct(items: Sequence) -> tuple[np.ndarray, list[int]]:
    """Each item's index among the distinct items, and where each distinct item first occurs."""
    index: dict = {}
    first: list[int] = []
    ids = np.empty(len(items), dtype=np.int64)
    for i, item in enumerate(items):
        if item not in index:
            index[item] = len(first)
            first.append(i)
        ids[i] = index[item]
    return ids, first


def _gather(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return table[ids[:, None], ids[None, :]]


def _class_term(ents: list[Entities], name: str, key: str) -> np.ndarray:
    """IoU of the `key` sets of the pairs that both have class `name`; 0 for the other pairs.

    A table over the few distinct sets, with "class absent" as one more row and column of zeros,
    gathered into (n, n).
    """
    absent = None
    ids, first = _distinct([e[name][key] if name in e else absent for e in ents])
    sets = [ents[i][name][key] if name in ents[i] else absent for i in first]
    present = [j for j, item in enumerate(sets) if item is not absent]
    table = np.zeros((len(sets), len(sets)))
    table[np.ix_(present, present)] = _ratio(*_overlaps([sets[j] for j in present]))
    return _gather(table, ids)


def _distinct_scores(ents: list[Entities], g0: float, g1: float, g2: float) -> np.ndarray:
    """S over pairwise-distinct meta-entities."""
    ids, first = _distinct([frozenset(e) for e in ents])
    inter, union = (_gather(t, ids) for t in _overlaps([frozenset(ents[i]) for i in first]))
    terms = []
    for key in DESCRIPTORS:
        total = np.zeros((len(ents), len(ents)))
        for name in sorted(set().union(*ents)):  # sorted, as `score` sums them
            total += _class_term(ents, name, key)
        terms.append(_ratio(total, union))
    return g0 * _ratio(inter, union) + g1 * terms[0] + g2 * terms[1]


def score_matrix(entities_list: Sequence[Mapping | str], weights: Weights = None,
                 dtype=np.float32) -> np.ndarray:
    """S for every pair of a mini-batch, (n, n): symmetric, 1 on the diagonal.

    Records with equal meta-entities are scored once. Every term is a table over the few distinct
    sets gathered into (n, n): the class Jaccard, then per class the adjective (direction) IoU of
    the pairs sharing the class. Classes are summed in sorted order, as `score` does, so the
    float64 result equals it exactly.
    """
    g0, g1, g2 = resolve_weights(weights)
    ents = [parse_entities(e) for e in entities_list]
    if not ents:
        return np.zeros((0, 0), dtype=dtype)
    ids, first = _distinct([tuple((c, v["adjectives"], v["directions"]) for c, v in sorted(e.items()))
                            for e in ents])
    return _gather(_distinct_scores([ents[i] for i in first], g0, g1, g2), ids).astype(dtype, copy=False)
