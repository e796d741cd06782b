"""MedTrim's evaluation numbers over plain arrays: retrieval Precision@R and zero-shot ACC/AUC/F1.

Everything here is NumPy on embeddings and labels, so each number can be checked by hand and the
same code scores a trained model, a baseline, or embeddings built directly from labels.

Relevance. A retrieved item is relevant when its labels match the query's. A study's labels are a
set of (class, severity, side) triples: the phantom's true findings (`labels_from_json`, uncertain
findings count as findings) or, for data without labels, OBER's meta-entities
(`labels_from_entities`). Mode "disease" compares the sets of classes, mode "fine" the sets of
triples; a normal study is `no_finding` in both, so two normal studies match.

Ties. Precision@R counts tied similarities fractionally: when the R-th place is shared by a group
of equally similar items, the group contributes its share of the remaining places times its
fraction of relevant items. That is the expected precision under a random order among the ties,
it does not depend on the gallery's order, and a collapsed model (all similarities equal) scores
exactly the chance level.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from medray.medtrim import lexicon
from medray.medtrim.score import NO_FINDING, parse_entities

MODES = ("disease", "fine")
DEFAULT_RANKS = (1, 10, 20, 50)
MAX_ELEMENTS = 1 << 22  # similarity entries held at once (32 MB as float64)

Triple = tuple[str, str | None, str | None]
StudyLabels = frozenset  # of Triple; empty for a normal study
Relevance = np.ndarray | tuple[np.ndarray, np.ndarray]  # a boolean matrix or `relevance_keys`


# ---- labels -------------------------------------------------------------------------------------

def labels_from_json(value: str | Mapping) -> StudyLabels:
    """(class, severity, side) of each finding in a `labels` record (a pairs row's JSON)."""
    record = json.loads(value) if isinstance(value, (str, bytes)) else value
    return frozenset((f["name"], f.get("severity"), f.get("side")) for f in record["findings"])


def labels_from_entities(entities: str | Mapping) -> StudyLabels:
    """(class, severity, side) from OBER meta-entities, for data without true labels.

    Severity is the severity adjective (`lexicon.SEVERITY`; the highest when a report names a
    range, "mild to moderate" -> moderate), side the direction (OBER gives at most one after
    `canonical_side`); None when the report names neither.
    """
    out = []
    for name, facts in parse_entities(entities).items():
        if name == NO_FINDING:
            continue
        severities = [a for a in facts["adjectives"] if a in lexicon.SEVERITY]
        severity = max(severities, key=lambda a: (lexicon.SEVERITY[a], a)) if severities else None
        sides = sorted(lexicon.canonical_side(facts["directions"]))
        out.append((name, severity, "/".join(sides) or None))
    return frozenset(out)


def label_key(labels: StudyLabels, mode: str) -> tuple:
    """What two studies must share to match in `mode`: a sorted tuple, `("no_finding",)` when normal."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "disease":
        key = sorted({name for name, _, _ in labels})
    else:
        key = sorted((name, severity or "", side or "") for name, severity, side in labels)
    return tuple(key) or (NO_FINDING,)


def relevance_keys(query_labels: Sequence[StudyLabels], gallery_labels: Sequence[StudyLabels],
                   mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer keys per query and per gallery item; equal keys are relevant (a matrix's worth in O(n))."""
    ids: dict[tuple, int] = {}
    q = np.array([ids.setdefault(label_key(x, mode), len(ids)) for x in query_labels], dtype=np.int64)
    g = np.array([ids.setdefault(label_key(x, mode), len(ids)) for x in gallery_labels], dtype=np.int64)
    return q, g


def relevance(query_labels: Sequence[StudyLabels], gallery_labels: Sequence[StudyLabels],
              mode: str) -> np.ndarray:
    """Boolean (n_queries, n_gallery): True where the two studies' labels match in `mode`."""
    q, g = relevance_keys(query_labels, gallery_labels, mode)
    return q[:, None] == g[None, :]


def _relevant_rows(relevant: Relevance, rows: slice) -> np.ndarray:
    if isinstance(relevant, tuple):
        q, g = relevant
        return q[rows, None] == g[None, :]
    return np.asarray(relevant[rows], dtype=bool)


def _shape(relevant: Relevance) -> tuple[int, int]:
    if isinstance(relevant, tuple):
        return len(relevant[0]), len(relevant[1])
    return relevant.shape


# ---- retrieval ----------------------------------------------------------------------------------

def _unit(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def precision_at_r(query_emb: np.ndarray, gallery_emb: np.ndarray, relevant: Relevance,
                   ranks: Sequence[int] = DEFAULT_RANKS, max_elements: int = MAX_ELEMENTS) -> dict[int, float]:
    """{R: mean over queries of (relevant items among the R most cosine-similar) / R}.

    `relevant` is a boolean (n_q, n_g) matrix or the (query keys, gallery keys) pair of
    `relevance_keys`. Ties count fractionally (see the module note). An R larger than the gallery
    is clamped to the gallery size: every item is retrieved and the precision is the query's
    share of relevant items. Queries are processed `max_elements // n_g` at a time, so a
    10k x 10k evaluation holds a few tens of MB, not the full similarity matrix.
    """
    q, g = _unit(query_emb, "query_emb"), _unit(gallery_emb, "gallery_emb")
    n_q, n_g = _shape(relevant)
    if (n_q, n_g) != (len(q), len(g)):
        raise ValueError(f"relevance is {n_q} x {n_g} but there are {len(q)} queries and {len(g)} gallery items")
    if n_q == 0 or n_g == 0:
        raise ValueError("precision_at_r needs at least one query and one gallery item")
    clamped = {r: min(int(r), n_g) for r in ranks}
    if min(clamped.values()) < 1:
        raise ValueError(f"ranks must be positive, got {tuple(ranks)}")
    kth = sorted({n_g - r for r in clamped.values()})  # ascending order: the r-th largest sits at n_g - r
    totals = dict.fromkeys(clamped, 0.0)
    step = max(1, max_elements // n_g)
    for start in range(0, n_q, step):
        rows = slice(start, min(start + step, n_q))
        sims = q[rows] @ g.T
        rel = _relevant_rows(relevant, rows)
        part = np.partition(sims, kth, axis=1)
        for rank, r in clamped.items():
            t = part[:, n_g - r][:, None]
            above, tied = sims > t, sims == t
            n_above, n_tied = above.sum(1), tied.sum(1)
            hits = (above & rel).sum(1) + (r - n_above) * (tied & rel).sum(1) / n_tied
            totals[rank] += float((hits / r).sum())
    return {rank: totals[rank] / n_q for rank in clamped}


def chance_precision(relevant: Relevance, ranks: Sequence[int] = DEFAULT_RANKS) -> dict[int, float]:
    """Precision@R of a random ranking: mean over queries of (relevant in gallery / gallery size).

    The same for every R (a random top-R holds each item with the same probability); given per R
    so it prints beside the metric.
    """
    n_q, n_g = _shape(relevant)
    if isinstance(relevant, tuple):
        values, counts = np.unique(relevant[1], return_counts=True)
        per_key = dict(zip(values.tolist(), counts.tolist()))
        share = np.array([per_key.get(k, 0) for k in relevant[0].tolist()], dtype=np.float64) / n_g
    else:
        share = np.asarray(relevant, dtype=bool).sum(1) / n_g
    value = float(share.mean()) if n_q else 0.0
    return {int(r): value for r in ranks}


def retrieval_report(image_emb: np.ndarray, text_emb: np.ndarray, labels: Sequence[StudyLabels],
                     ranks: Sequence[int] = DEFAULT_RANKS, modes: Sequence[str] = MODES,
                     max_elements: int = MAX_ELEMENTS) -> dict:
    """{"i2t": {mode: {R: p}}, "t2i": ..., "chance": {mode: {R: c}}} for paired rows (row i = study i)."""
    out: dict = {"i2t": {}, "t2i": {}, "chance": {}}
    for mode in modes:
        keys = relevance_keys(labels, labels, mode)
        out["i2t"][mode] = precision_at_r(image_emb, text_emb, keys, ranks, max_elements)
        out["t2i"][mode] = precision_at_r(text_emb, image_emb, keys, ranks, max_elements)
        out["chance"][mode] = chance_precision(keys, ranks)
    return out


# ---- zero-shot classification -------------------------------------------------------------------

def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """Area under the ROC curve from ranks (Mann-Whitney U; tied scores count one half).

    Equals the share of (positive, negative) pairs the score orders correctly. None when the
    targets hold only one class, where the area is undefined.
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=bool)
    n_pos, n_neg = int(targets.sum()), int((~targets).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[targets].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_scores(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float | None]:
    """ACC and F1 (= 2TP / (2TP + FP + FN)); F1 is None when there is no positive, predicted or true."""
    predicted, targets = np.asarray(predicted, dtype=bool), np.asarray(targets, dtype=bool)
    tp = int((predicted & targets).sum())
    wrong = int((predicted != targets).sum())
    denominator = 2 * tp + wrong
    return {"acc": float((predicted == targets).mean()) if len(targets) else None,
            "f1": 2 * tp / denominator if denominator else None}


def best_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The threshold (score > t is positive) with the highest F1 on these rows, for another split.

    Candidates are midpoints between consecutive distinct scores and one below the lowest, so no
    score sits on a threshold; ties in F1 go to the candidate nearest 0. One sort: predicting the
    top k positive gives F1 = 2 TP(k) / (k + positives).
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=bool)
    if len(scores) == 0 or not targets.any():
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ordered, true_positives = scores[order], np.cumsum(targets[order])
    ends = np.flatnonzero(np.r_[ordered[1:] < ordered[:-1], True])  # last row of each distinct score
    f1 = 2 * true_positives[ends] / (ends + 1 + targets.sum())
    cuts = np.r_[(ordered[ends[:-1]] + ordered[ends[:-1] + 1]) / 2, ordered[-1] - 1.0]
    best = np.flatnonzero(np.isclose(f1, f1.max()))
    return float(cuts[best[np.argmin(np.abs(cuts[best]))]])


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def zero_shot_report(scores: np.ndarray, targets: np.ndarray, classes: Sequence[str],
                     thresholds: Mapping[str, float] | None = None) -> dict:
    """Per class {acc, auc, f1, threshold, positives} and their "macro" means (over defined values).

    `scores` (n, classes) are positive-minus-negative prompt similarities; a row is predicted
    positive when its score exceeds the class threshold (0, or `thresholds[class]`, e.g. chosen
    on the validation split with `best_threshold`).
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=bool)
    if scores.shape != targets.shape or scores.shape[1:] != (len(classes),):
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (n, {len(classes)})")
    out: dict = {}
    for j, name in enumerate(classes):
        threshold = float((thresholds or {}).get(name, 0.0))
        out[name] = {**binary_scores(scores[:, j] > threshold, targets[:, j]),
                     "auc": roc_auc(scores[:, j], targets[:, j]),
                     "threshold": threshold, "positives": int(targets[:, j].sum())}
    out["macro"] = {k: _mean(out[c][k] for c in classes) for k in ("acc", "auc", "f1")}
    return out
