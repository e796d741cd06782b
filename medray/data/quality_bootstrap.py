"""The quality classifier's bootstrap loop and the `medray data quality-train` job.

A hand-labelled seed set is small. The model trained on it labels the corpus; its confident calls
become training data and the calls it is unsure of (scores near the threshold) go to a judge, so a
later LLM judge spends its budget only where the classifier cannot decide. The corpus is spooled
to a local parquet file once, because every round reads it again and it may not fit in memory.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medray import storage
from medray.data.io import iter_texts
from medray.data.quality import QualityConfig, QualityModel, as_config, split_seed, train_model
from medray.data.quality_seed import (
    BAD,
    GOOD,
    LABELS,
    Judge,
    LabelledText,
    generate_seed,
    load_seed_file,
    make_judge,
)
from medray.errors import MedrayError

# ---- the bootstrap loop ---------------------------------------------------------------------


class _SpooledCorpus:
    """The corpus texts, written once to a local parquet file and re-read in batches each round.

    The input is an iterable that may be read only once and may not fit in
    memory; every round needs it again.
    """

    def __init__(self, texts: Iterable[str], path: str, batch_size: int):
        self.path, self.batch_size, self.size = path, batch_size, 0
        buf: list[str] = []
        with pq.ParquetWriter(path, pa.schema([("text", pa.string())])) as writer:
            for text in texts:
                if isinstance(text, str) and text.strip():
                    buf.append(text)
                if len(buf) >= batch_size:
                    writer.write_table(pa.table({"text": pa.array(buf, pa.string())}))
                    self.size, buf = self.size + len(buf), []
            if buf:
                writer.write_table(pa.table({"text": pa.array(buf, pa.string())}))
                self.size += len(buf)

    def batches(self) -> Iterator[pa.Array]:
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_size):
            yield batch.column(0)

    def score(self, model: QualityModel) -> tuple[np.ndarray, dict]:
        """P(good) of every text, and the scoring speed on this one thread."""
        t0, nbytes, parts = time.process_time(), 0, [np.zeros(0, np.float32)]
        for col in self.batches():
            parts.append(model.score(col))
            nbytes += col.nbytes
        cpu = max(time.process_time() - t0, 1e-9)
        return np.concatenate(parts), {"score_docs_per_cpu_s": self.size / cpu, "score_mb_per_cpu_s": nbytes / cpu / 1e6}

    def take(self, indices: np.ndarray) -> list[str]:
        """The texts at `indices`, in that order."""
        want, out, start = np.sort(indices), [], 0
        for col in self.batches():
            lo, hi = np.searchsorted(want, [start, start + len(col)])
            if hi > lo:
                out += col.take(pa.array(want[lo:hi] - start)).to_pylist()
            start += len(col)
        by_index = dict(zip(want.tolist(), out))
        return [by_index[i] for i in indices.tolist()]


def _by_confidence(idx: np.ndarray, key: np.ndarray, limit: int) -> np.ndarray:
    """`idx` ordered by `key` (smallest first, ties by index), at most `limit` of them."""
    return idx[np.lexsort((idx, key[idx]))][:limit]


def _ask_judge(judge: Judge, texts: list[str]) -> list[str | None]:
    labels = list(judge(texts))
    if len(labels) != len(texts):
        raise MedrayError(f"the judge returned {len(labels)} labels for {len(texts)} texts")
    wrong = [lab for lab in labels if lab is not None and lab not in LABELS]
    if wrong:
        raise MedrayError(f"the judge returned {wrong[0]!r}: expected 'good', 'bad' or None")
    return labels


def _round(model: QualityModel, corpus: _SpooledCorpus, judge: Judge | None, judged: dict[int, str],
           config: QualityConfig) -> tuple[list[LabelledText], dict]:
    """Score the corpus; judge the new borderline texts (updating `judged`); pick the confident ones.

    Returns the corpus texts to train on next, with their labels: the judge's
    where it gave one, else the model's own confident calls.
    """
    thr, band = config.threshold, config.band
    scores, speed = corpus.score(model)
    idx = np.arange(corpus.size)
    is_judged = np.zeros(corpus.size, bool)
    is_judged[list(judged)] = True
    border = idx[np.abs(scores - thr) < band]
    asked = _by_confidence(border[~is_judged[border]], np.abs(scores - thr), config.max_judge_per_round)
    stats = Counter()
    if judge is not None and len(asked):
        for i, label in zip(asked.tolist(), _ask_judge(judge, corpus.take(asked))):
            if label is None:
                stats["judge_abstained"] += 1
                continue
            judged[i], is_judged[i] = label, True
            stats[f"judged_{label}"] += 1
            stats["judge_agrees"] += label == (GOOD if scores[i] >= thr else BAD)
    lo, hi = np.quantile(scores, [config.bad_quantile, config.good_quantile]) if corpus.size else (0.0, 1.0)
    good = idx[(scores >= hi) & (scores >= thr + band) & ~is_judged]
    bad = idx[(scores <= lo) & (scores <= thr - band) & ~is_judged]
    good = _by_confidence(good, -scores, config.max_pseudo_per_class)
    bad = _by_confidence(bad, scores, config.max_pseudo_per_class)
    labels = {**dict.fromkeys(good.tolist(), GOOD), **dict.fromkeys(bad.tolist(), BAD), **judged}
    chosen = np.array(sorted(labels), np.int64)
    extra = [LabelledText(t, labels[i], "corpus") for i, t in zip(chosen.tolist(), corpus.take(chosen))]
    n_judged = stats["judged_good"] + stats["judged_bad"]
    info = {
        "borderline": len(border), "pseudo_good": len(good), "pseudo_bad": len(bad),
        "judge_calls": len(asked) if judge is not None else 0, "judged_good": stats["judged_good"],
        "judged_bad": stats["judged_bad"], "judge_abstained": stats["judge_abstained"],
        "judge_agreement": stats["judge_agrees"] / n_judged if n_judged else None,
        "judged_total": len(judged), "score_quantiles": [float(lo), float(hi)], **speed,
    }
    return extra, info


def bootstrap_train(seed_records: Sequence[LabelledText], corpus_texts: Iterable[str],
                    config: QualityConfig | dict | None = None, judge: Judge | None | str = "config",
                    ) -> tuple[str, dict]:
    """Train on the seed, then `rounds` times: score the corpus, pseudo-label, judge the borderline, retrain.

    `judge="config"` takes the judge named in the config; pass another
    registered name or any callable to plug one in, or None for none. A text the judge labelled keeps that
    label in later rounds and is not asked again. Only the selected training
    texts are held in memory (capped by `max_pseudo_per_class` per class).
    Returns the saved model's path and a report with one entry per round.
    """
    config = as_config(config)
    if isinstance(judge, str):
        judge = make_judge(config.judge if judge == "config" else judge)
    train_seed, holdout = split_seed(seed_records, config.holdout_fraction, config.seed)
    judged: dict[int, str] = {}  # corpus index -> the judge's label, kept across rounds
    report: dict = {"seed_train": len(train_seed), "seed_holdout": len(holdout), "rounds": []}

    def log(round_no: int, model: QualityModel, training: list[LabelledText], **info) -> None:
        report["rounds"].append({"round": round_no, "train_size": len(training),
                                 "label_counts": dict(sorted(Counter(r.label for r in training).items())),
                                 **info, "heldout_accuracy": model.accuracy(holdout, config.threshold)})

    with tempfile.TemporaryDirectory(prefix="medray-quality-") as work:
        corpus = _SpooledCorpus(corpus_texts, os.path.join(work, "corpus.parquet"), config.batch_size)
        report["corpus_docs"] = corpus.size
        model = train_model(train_seed, config)
        log(0, model, train_seed)
        for round_no in range(1, config.rounds + 1 if corpus.size else 1):
            extra, info = _round(model, corpus, judge, judged, config)
            training = train_seed + extra
            model = train_model(training, config)
            log(round_no, model, training, **info)
    model.save(config.model_path)
    report["heldout_accuracy"] = report["rounds"][-1]["heldout_accuracy"]
    report["model_path"] = config.model_path
    return config.model_path, report


# ---- the job --------------------------------------------------------------------------------


def quality_train(config: QualityConfig | dict | None, corpus_paths: str | Sequence[str] = (),
                  judge: Judge | None | str = "config") -> dict:
    """`medray data quality-train CONF`: seed set, bootstrap over the corpus, model and a report beside it.

    `corpus_paths` (default: the config's `corpus`) are files or folders of
    .txt, .jsonl or .parquet; with none, the model is trained on the seed only.
    """
    config = as_config(config)
    if config.seed_path:
        seed_records = load_seed_file(config.seed_path)
    else:
        from medray.met.tree import Tree

        tree = Tree.load(config.tree) if config.tree else None
        seed_records = generate_seed(config.seed_docs, config.seed, tree)
    corpus_paths = corpus_paths or config.corpus
    skipped: Counter = Counter()
    texts = iter_texts(corpus_paths, config.text_column, skipped) if corpus_paths else iter(())
    _, report = bootstrap_train(seed_records, texts, config, judge)
    report["corpus_skipped"] = dict(skipped)
    report["config"] = asdict(config)
    report_path = storage.strip_suffix(config.model_path, ".bin") + ".report.json"
    storage.write_text(report_path, json.dumps(report, indent=2))
    report["report_path"] = report_path
    return report
