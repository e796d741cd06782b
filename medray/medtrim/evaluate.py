"""Evaluating a MedTrim model on image-report pairs: retrieval Precision@R both ways, and zero-shot.

`evaluate_model` embeds one split's images (decoded from `image_path`, local or s3://) and report
texts (`findings`), then scores them with `medray.medtrim.metrics`. Labels come from the pairs'
`labels` column (the phantom's true findings) and, for rows without one, from OBER's meta-entities
(an `entities` column when the table has one, else OBER run on the text): the result's
`labels_source` says which. A row whose image does not decode, whose text is empty or whose labels
do not parse goes to `rejects` with its id and reason; the others are evaluated.

Zero-shot classification asks the text tower, per class, for prompts that assert the finding and
prompts that deny it ("no pleural effusion", the way reports say it); an image's score is its
cosine to the averaged positive prompts minus that to the averaged negative ones, so 0 is the
natural threshold and no training on labels is involved.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.medtrim import metrics
from medray.medtrim.metrics import DEFAULT_RANKS
from medray.medtrim.model import build_text_tokenizer, preprocess_images, tokenize_texts
from medray.met.labels import CHEXPERT_NAMES
from medray.mm.pairs import read_image

POSITIVE_TEMPLATES = ("chest x-ray showing {}", "{}")
NEGATIVE_TEMPLATES = ("no {}", "chest x-ray showing no {}")
NEEDED_COLUMNS = ("id", "image_path", "findings")
DIRECTIONS = ("i2t", "t2i")


def class_words(name: str) -> str:
    """A class key as words in a prompt: CheXpert's name in lower case ("pleural effusion")."""
    return CHEXPERT_NAMES.get(name, name.replace("_", " ")).lower()


def _reject(row: Mapping, reason: str, detail: str = "") -> dict:
    return {"id": row.get("id"), "path": row.get("image_path"), "reason": reason, "detail": detail[:300]}


# ---- checks and labels --------------------------------------------------------------------------

def _check(pairs: pa.Table, split: str | None, ranks: Sequence[int], batch_size: int) -> pa.Table:
    missing = [c for c in NEEDED_COLUMNS if c not in pairs.column_names]
    if missing:
        raise ConfigError("pairs", f"the table has no {', '.join(missing)} column (columns: {', '.join(pairs.column_names)})")
    if not ranks or any(int(r) < 1 for r in ranks):
        raise ConfigError("ranks", f"positive integers, got {tuple(ranks)}")
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be at least 1, got {batch_size}")
    if not split:
        return pairs
    if "split" not in pairs.column_names:
        raise ConfigError("split", f"{split!r} asked for but the pairs have no split column")
    chosen = pairs.filter(pc.equal(pairs.column("split"), split))
    if chosen.num_rows == 0:
        found = sorted({s for s in pairs.column("split").to_pylist() if s})
        raise ConfigError("split", f"no pairs in split {split!r} (splits present: {', '.join(found) or 'none'})")
    return chosen


def study_labels(rows: list[dict]) -> tuple[list, list[dict], str]:
    """Labels per row (None for a rejected row), the rejects, and "labels" | "ober" | "mixed"."""
    labels: list = [None] * len(rows)
    rejects, need_ober, sources = [], [], set()
    for i, row in enumerate(rows):
        try:
            if row.get("labels"):
                labels[i], source = metrics.labels_from_json(row["labels"]), "labels"
            elif row.get("entities"):
                labels[i], source = metrics.labels_from_entities(row["entities"]), "ober"
            else:
                need_ober.append(i)
                continue
            sources.add(source)
        except (ValueError, KeyError, TypeError) as err:
            rejects.append(_reject(row, "bad_labels", repr(err)))
    if need_ober:
        from medray.medtrim.ober import Ober

        sources.add("ober")
        for i, entities in zip(need_ober, Ober().extract_batch([rows[i]["findings"] for i in need_ober])):
            if entities is None:
                rejects.append(_reject(rows[i], "empty_report", "no words to read findings from"))
            else:
                labels[i] = metrics.labels_from_entities(entities)
    return labels, rejects, "mixed" if len(sources) > 1 else next(iter(sources), "labels")


# ---- embedding ----------------------------------------------------------------------------------

def _pixels(uri: str, pre) -> torch.Tensor:
    """(3, S, S) for one image file; grey 8-bit images take the model's batched grey path."""
    image = read_image(uri)
    return preprocess_images(image, pre)[0] if isinstance(image, np.ndarray) else pre(image)


def _load_batch(rows: list[dict], pre, pool) -> tuple[list[int], list[torch.Tensor], list[dict]]:
    def load(row):
        try:
            return _pixels(row["image_path"], pre), None
        except Exception as err:  # PIL and storage raise many types; each means this image is unusable
            return None, f"{type(err).__name__}: {err}"

    kept, tensors, rejects = [], [], []
    for i, (tensor, problem) in enumerate(pool.map(load, rows)):
        if problem is None:
            kept.append(i)
            tensors.append(tensor)
        else:
            rejects.append(_reject(rows[i], "image_decode", problem))
    return kept, tensors, rejects


@torch.no_grad()
def embed_images(model, rows: list[dict], batch_size: int = 64, device="cpu",
                 threads: int | None = None) -> tuple[np.ndarray, list[int], list[dict]]:
    """(embeddings of the decodable images, their row indices, rejects); files read on threads."""
    threads = threads or (16 if any(storage.is_remote(r["image_path"]) for r in rows[:1]) else 4)
    chunks, kept, rejects = [], [], []
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(rows), batch_size):
            index, tensors, bad = _load_batch(rows[start:start + batch_size], model.preprocessor, pool)
            rejects += bad
            if tensors:
                chunks.append(model.encode_image(torch.stack(tensors).to(device)).float().cpu().numpy())
                kept += [start + i for i in index]
    dim = model.config.proj_dim
    return (np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)), kept, rejects


@torch.no_grad()
def embed_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 64, device="cpu") -> np.ndarray:
    """Unit text embeddings (n, proj_dim), reports cut at the model's `text.max_length` tokens."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenize_texts(tokenizer, texts[start:start + batch_size], model.config.text.max_length)
        chunks.append(model.encode_text(**{k: v.to(device) for k, v in batch.items()}).float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.proj_dim), np.float32)


def prompt_embeddings(model, tokenizer, classes: Sequence[str], device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) class embeddings (classes, proj_dim): each the renormalised template mean."""
    def embed(templates):
        texts = [t.format(class_words(c)) for c in classes for t in templates]
        emb = torch.from_numpy(embed_texts(model, tokenizer, texts, device=device))
        return F.normalize(emb.view(len(classes), len(templates), -1).mean(1), dim=-1).numpy()

    return embed(POSITIVE_TEMPLATES), embed(NEGATIVE_TEMPLATES)


def zero_shot_scores(image_emb: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """(images, classes): cos(image, positive prompt) - cos(image, negative prompt)."""
    image = image_emb / np.maximum(np.linalg.norm(image_emb, axis=1, keepdims=True), 1e-12)
    return image @ positive.T - image @ negative.T


def _classes(labels: list, classes: Sequence[str] | None) -> list[str]:
    if classes is not None:
        return list(classes)
    found = {name for study in labels for name, _, _ in study}
    order = list(CHEXPERT_NAMES)
    return sorted(found, key=lambda c: (order.index(c) if c in order else len(order), c))


# ---- the evaluation -----------------------------------------------------------------------------

def evaluate_model(model, pairs: pa.Table, split: str | None = "test", batch_size: int = 64,
                   ranks: Sequence[int] = DEFAULT_RANKS, device="cpu", *, tokenizer=None,
                   classes: Sequence[str] | None = None, thresholds: Mapping[str, float] | None = None,
                   threads: int | None = None) -> dict:
    """Retrieval and zero-shot numbers for `model` on one split of `pairs` (`read_pairs`' table).

    Returns {"i2t": {mode: {R: p}}, "t2i": ..., "chance": {mode: {R: c}}, "zero_shot": {class:
    {acc, auc, f1, threshold, positives}, "macro": ...}, "best_thresholds": {class: t}, "n",
    "split", "labels_source", "rejects"}. `split` None or "" takes every row. Zero-shot classes
    default to those present in the split's labels; `thresholds` (e.g. this function's
    `best_thresholds` on the validation split) replace 0. The model is left in the mode it came in.
    """
    chosen = _check(pairs, split, ranks, batch_size)
    columns = [c for c in (*NEEDED_COLUMNS, "labels", "entities") if c in chosen.column_names]
    rows = chosen.select(columns).to_pylist()
    labels, rejects, source = study_labels(rows)
    for i, row in enumerate(rows):
        if labels[i] is not None and not (row.get("findings") or "").strip():
            labels[i] = None
            rejects.append(_reject(row, "empty_report", "no findings text to embed"))
    usable = [i for i, lab in enumerate(labels) if lab is not None]
    was_training = model.training
    model.to(device).eval()
    try:
        image_emb, kept, bad = embed_images(model, [rows[i] for i in usable], batch_size, device, threads)
        rejects += bad
        usable = [usable[k] for k in kept]
        if len(usable) < 2:
            raise MedrayError(f"{len(usable)} pair(s) left to evaluate in split {split!r} "
                              f"({len(rejects)} rejected): retrieval needs at least 2")
        tokenizer = tokenizer or build_text_tokenizer(model.config)
        text_emb = embed_texts(model, tokenizer, [rows[i]["findings"] for i in usable], batch_size, device)
        kept_labels = [labels[i] for i in usable]
        names = _classes(kept_labels, classes)
        scores = np.zeros((len(usable), 0))
        if names:
            scores = zero_shot_scores(image_emb, *prompt_embeddings(model, tokenizer, names, device))
    finally:
        model.train(was_training)
    targets = np.array([[any(c == name for name, _, _ in study) for c in names] for study in kept_labels],
                       dtype=bool).reshape(len(usable), len(names))
    result = metrics.retrieval_report(image_emb, text_emb, kept_labels, ranks)
    result["zero_shot"] = metrics.zero_shot_report(scores, targets, names, thresholds)
    result["best_thresholds"] = {c: metrics.best_threshold(scores[:, j], targets[:, j]) for j, c in enumerate(names)}
    rejects.sort(key=lambda r: (str(r["id"]), r["reason"]))
    return {**result, "n": len(usable), "split": split or "", "labels_source": source, "rejects": rejects}


def flat_metrics(result: Mapping) -> dict[str, float]:
    """Scalar metrics with MLflow-safe names: `i2t_fine_p10`, `chance_disease_p1`, `zero_shot_auc`, ..."""
    out = {}
    for group in (*DIRECTIONS, "chance"):
        for mode, by_rank in result[group].items():
            out.update({f"{group}_{mode}_p{r}": float(v) for r, v in by_rank.items()})
    out.update({f"zero_shot_{k}": float(v) for k, v in result["zero_shot"]["macro"].items() if v is not None})
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_evaluation(result: Mapping, title: str = "MedTrim evaluation") -> None:
    """Retrieval (each direction and match beside chance) and zero-shot tables on the console."""
    from medray import console

    ranks = list(next(iter(result["chance"].values())))
    rows = [(direction, mode, *(_fmt(result[direction][mode][r]) for r in ranks))
            for mode in result["chance"] for direction in (*DIRECTIONS, "chance")]
    console.table(f"{title}: Precision@R, split {result['split'] or 'all'}, n={result['n']}, "
                  f"labels from {result['labels_source']}", ("direction", "match", *(f"P@{r}" for r in ranks)), rows)
    zero = result["zero_shot"]
    rows = [(c, v["positives"], _fmt(v["acc"]), _fmt(v["auc"]), _fmt(v["f1"]), f"{v['threshold']:+.3f}")
            for c, v in zero.items() if c != "macro"]
    rows.append(("macro", "", _fmt(zero["macro"]["acc"]), _fmt(zero["macro"]["auc"]), _fmt(zero["macro"]["f1"]), ""))
    console.table(f"{title}: zero-shot classification", ("class", "positives", "ACC", "AUC", "F1", "threshold"), rows)
    if result["rejects"]:
        reasons: dict[str, int] = {}
        for r in result["rejects"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        console.key_values(f"{title}: rejected pairs", reasons)

