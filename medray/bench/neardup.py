"""`medray bench neardup`: MinHash + LSH throughput and results beside `datasketch` on the same documents.

Both sides run in this process, one after the other, on the same
documents, with the same shingles (word n-grams of the same normalised
words), the same number of permutations and the same bands x rows, and
both check candidates against the signatures at the same threshold.
Throughput is per CPU-second of this process; both sides are
single-threaded, so that is per core. Pairs are compared as sets, and the
pairs only one side found are scored by their exact Jaccard similarity, so
a disagreement can be told apart as a miss or a false pair.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import pyarrow as pa

from medray.data.dedup import NearDupConfig
from medray.data.minhash import band_keys, minhash_with_word_counts
from medray.data.near_dup_pairs import near_duplicate_pairs, smallest_in_components
from medray.met.normalize import normalize_text


def words_of(text: str) -> list[str]:
    """The words the signature kernel sees: normalised (lower case, punctuation as spaces), split."""
    return normalize_text(text).replace("|", " ").split()


def shingles_of(text: str, ngram: int) -> set[str]:
    words = words_of(text)
    if len(words) < ngram:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}


def exact_jaccard(a: str, b: str, ngram: int) -> float:
    sa, sb = shingles_of(a, ngram), shingles_of(b, ngram)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def plant_near_duplicates(texts: list[str], share: float = 0.1, seed: int = 0, max_edits: int = 3,
                          exact_share: float = 0.2) -> tuple[list[str], list[tuple[int, int]]]:
    """Texts followed by copies of `share` of them: exact, or with 1..max_edits words inserted,
    deleted or replaced. Returns (all texts, [(copy index, source index)])."""
    rng = random.Random(seed)
    vocabulary = sorted({w for t in texts[:2000] for w in t.split()}) or ["word"]
    out, planted = list(texts), []
    for source in sorted(rng.sample(range(len(texts)), int(len(texts) * share))):
        words = texts[source].split()
        if rng.random() >= exact_share:
            for _ in range(rng.randint(1, max_edits)):
                op, at = rng.choice(("insert", "delete", "replace")), rng.randrange(max(len(words), 1))
                if op == "insert" or not words:
                    words.insert(at, rng.choice(vocabulary))
                elif op == "delete" and len(words) > 1:
                    del words[at]
                else:
                    words[at] = rng.choice(vocabulary)
        planted.append((len(out), source))
        out.append(" ".join(words))
    return out, planted


def _rates(count_docs: int, size_bytes: int, words: int, cpu: float, wall: float) -> dict:
    cpu = max(cpu, 1e-9)
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "docs_per_s_per_core": round(count_docs / cpu),
            "mb_per_s_per_core": round(size_bytes / 1e6 / cpu, 2), "tokens_per_s_per_core": round(words / cpu)}


class _Clock:
    def __enter__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def _medray(ids: pa.Array, texts: pa.Array, cfg: NearDupConfig) -> dict:
    minhash_with_word_counts(texts.slice(0, 8), cfg)  # compiled code loaded before the clock starts
    band_keys(np.zeros((1, cfg.num_perm), np.uint32), cfg)
    with _Clock() as sig_clock:
        sig, words = minhash_with_word_counts(texts, cfg)
    with _Clock() as lsh_clock:
        a, b, counts = near_duplicate_pairs(ids, sig, cfg)
    return {"pairs": set(zip(a.tolist(), b.tolist())), "words": int(words.sum()), "sig": sig_clock,
            "lsh": lsh_clock, "candidate_pairs": counts["candidate_pairs"]}


def _datasketch(texts: list[str], cfg: NearDupConfig) -> dict:
    from datasketch import MinHash, MinHashLSH

    with _Clock() as shingle_clock:
        shingles = [[s.encode() for s in shingles_of(t, cfg.ngram)] for t in texts]
    with _Clock() as sig_clock:
        sketches = MinHash.bulk(shingles, num_perm=cfg.num_perm)  # its fast path: one set of permutations
    with _Clock() as lsh_clock:
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows))
        for i, (m, doc) in enumerate(zip(sketches, shingles)):
            if doc:
                lsh.insert(i, m)
        candidates = set()
        for i, (m, doc) in enumerate(zip(sketches, shingles)):
            if doc:
                candidates.update((min(i, j), max(i, j)) for j in lsh.query(m) if j != i)
        pairs = {(i, j) for i, j in candidates if sketches[i].jaccard(sketches[j]) >= cfg.threshold}
    return {"pairs": pairs, "shingle": shingle_clock, "sig": sig_clock, "lsh": lsh_clock,
            "candidate_pairs": len(candidates), "scheme": getattr(sketches[0], "scheme", "legacy") if sketches else None}


def _same_cluster(ids: pa.Array, pairs: set, planted: list[tuple[int, int]]) -> np.ndarray:
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    rep = smallest_in_components(ids, a, b)
    return np.array([rep[copy] == rep[source] for copy, source in planted], dtype=bool)


def _pair_report(texts: list[str], ours: set, theirs: set, cfg: NearDupConfig, limit: int = 20000) -> dict:
    """Both pair sets, and how many of each reach the threshold in exact Jaccard (over at most `limit` pairs)."""
    union = sorted(ours | theirs)[:limit]
    true = {p for p in union if exact_jaccard(texts[p[0]], texts[p[1]], cfg.ngram) >= cfg.threshold}
    both = ours & theirs
    return {"medray": len(ours), "datasketch": len(theirs), "both": len(both),
            "agreement": round(len(both) / max(len(ours | theirs), 1), 4), "exact_checked": len(union),
            "exact_at_least_threshold": {"medray": len(ours & true), "datasketch": len(theirs & true),
                                         "either": len(true)},
            "only_medray": len(ours - theirs), "only_datasketch": len(theirs - ours)}


def _planted_report(texts: list[str], ids: pa.Array, ours: set, theirs: set, planted: list[tuple[int, int]],
                    cfg: NearDupConfig) -> dict:
    """Planted copies found (same cluster as their source), overall and among those truly above the threshold."""
    above = np.array([exact_jaccard(texts[c], texts[s], cfg.ngram) >= cfg.threshold for c, s in planted], dtype=bool)
    found_ours, found_theirs = _same_cluster(ids, ours, planted), _same_cluster(ids, theirs, planted)
    return {"pairs": len(planted), "exact_at_least_threshold": int(above.sum()),
            "medray_found": int(found_ours.sum()), "datasketch_found": int(found_theirs.sum()),
            "medray_found_above_threshold": int((found_ours & above).sum()),
            "datasketch_found_above_threshold": int((found_theirs & above).sum())}


def compare_with_datasketch(texts: list[str], cfg: NearDupConfig | None = None,
                            planted: list[tuple[int, int]] | None = None) -> dict:
    """Time medray's signatures + LSH against datasketch (MinHash + MinHashLSH) on `texts`;
    pairs found by each, their agreement and, given `planted` (copy, source) pairs, how many each recovers."""
    import datasketch

    cfg = (cfg or NearDupConfig()).validate()
    ids = pa.array([f"{i:09d}" for i in range(len(texts))])
    arrow_texts = pa.array(texts, pa.large_string())
    size = int(sum(len(t.encode()) for t in texts))
    ours = _medray(ids, arrow_texts, cfg)
    theirs = _datasketch(texts, cfg)
    words = ours["words"]
    n = len(texts)
    ours_total = ours["sig"].cpu + ours["lsh"].cpu
    theirs_sig = theirs["shingle"].cpu + theirs["sig"].cpu
    theirs_total = theirs_sig + theirs["lsh"].cpu
    result = {
        "documents": n, "mb": round(size / 1e6, 2), "tokens": words,
        "config": {"ngram": cfg.ngram, "num_perm": cfg.num_perm, "bands": cfg.bands, "rows": cfg.rows,
                   "threshold": cfg.threshold, "max_bucket": cfg.max_bucket, "verify": cfg.verify},
        "medray": {
            "signatures": _rates(n, size, words, ours["sig"].cpu, ours["sig"].wall),
            "lsh_verify": {"cpu_s": round(ours["lsh"].cpu, 3), "candidate_pairs": ours["candidate_pairs"]},
            "total": _rates(n, size, words, ours_total, ours["sig"].wall + ours["lsh"].wall),
        },
        "datasketch": {
            "version": datasketch.__version__, "scheme": theirs["scheme"],
            "shingling_s": round(theirs["shingle"].cpu, 3),
            "signatures": _rates(n, size, words, theirs_sig, theirs["shingle"].wall + theirs["sig"].wall),
            "lsh_verify": {"cpu_s": round(theirs["lsh"].cpu, 3), "candidate_pairs": theirs["candidate_pairs"]},
            "total": _rates(n, size, words, theirs_total, theirs["shingle"].wall + theirs["sig"].wall + theirs["lsh"].wall),
        },
        "speedup": {"signatures": round(theirs_sig / max(ours["sig"].cpu, 1e-9), 1),
                    "total": round(theirs_total / max(ours_total, 1e-9), 1)},
        "pairs": _pair_report(texts, ours["pairs"], theirs["pairs"], cfg),
    }
    if planted:
        result["planted"] = _planted_report(texts, ids, ours["pairs"], theirs["pairs"], planted, cfg)
    return result


def run_bench(tree_path: str, size_mb: float = 20.0, seed: int = 0, share: float = 0.1,
              cfg: NearDupConfig | None = None) -> dict:
    """A generated clinical corpus of `size_mb` (see `medray.bench.corpus`) with planted near-duplicates."""
    from medray.bench.corpus import generate_documents
    from medray.met.tree import Tree

    base = list(generate_documents(Tree.load(tree_path), int(size_mb * 1e6 / (1 + share)), seed=seed))
    texts, planted = plant_near_duplicates(base, share=share, seed=seed)
    return compare_with_datasketch(texts, cfg, planted)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default="out/met/tree.parquet")
    parser.add_argument("--size-mb", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(run_bench(args.tree, args.size_mb, args.seed), indent=2))


if __name__ == "__main__":
    main()
