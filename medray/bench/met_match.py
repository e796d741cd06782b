"""`medray bench met-match`: matcher throughput with assertions, beside a baseline, and build cost.

Throughput is words per CPU-second of this process (the matcher is
single-threaded, so that is per core) and per wall second; the baseline
runs in the same process on a slice of the same corpus, and medray is
timed on that slice too so the ratio compares like with like. Automaton
build time and memory are measured in fresh child processes (RSS before
and after the build), for the full tree and for a synthetic tree.
"""

from __future__ import annotations

import importlib.util
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from medray.bench.corpus import generate_documents
from medray.errors import MedrayError
from medray.met.matcher import Matcher
from medray.met.tree import Tree

TARGET_TOKENS_PER_S = 5_000_000
TARGET_SPEEDUP = 10.0
BATCH_DOCS = 1000


def _timed_match(matcher: Matcher, docs: list[str]) -> dict:
    words = hits = 0
    assertions: dict[str, int] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(docs), BATCH_DOCS):
        table, n = matcher.count_tokens_and_match(docs[i:i + BATCH_DOCS])
        words += n
        hits += table.num_rows
        for a, c in zip(*_value_counts(table)):
            assertions[a] = assertions.get(a, 0) + c
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"tokens": words, "hits": hits, "assertions": assertions, "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "tokens_per_s_per_core": round(words / max(cpu, 1e-9)),
            "tokens_per_s_wall": round(words / max(wall, 1e-9))}


def _value_counts(table):
    if not table.num_rows:
        return [], []
    vc = table.column("assertion").value_counts()
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def _spacy_baseline(surfaces: list[str], docs: list[str]) -> dict:
    import spacy
    from spacy.matcher import PhraseMatcher

    nlp = spacy.blank("en")
    start = time.perf_counter()
    pm = PhraseMatcher(nlp.vocab, attr="LOWER")
    pm.add("TERM", list(nlp.tokenizer.pipe(surfaces, batch_size=2000)))
    build = time.perf_counter() - start
    hits = tokens = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for doc in nlp.tokenizer.pipe(docs, batch_size=256):
        tokens += len(doc)
        hits += len(pm(doc))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"name": "spaCy PhraseMatcher (attr=LOWER, tokenizer included, no assertions)",
            "build_s": round(build, 2), "hits": hits, "spacy_tokens": tokens, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def _regex_baseline(surfaces: list[str], docs: list[str], budget_s: float = 30.0) -> dict:
    import re

    from medray.met.normalize import normalize_text

    start = time.perf_counter()
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(s) for s in sorted(surfaces, key=len, reverse=True)) + r")\b")
    build = time.perf_counter() - start
    hits, used = 0, []
    wall, cpu = time.perf_counter(), time.process_time()
    for doc in docs:  # normalised like medray's input, so both see the same words
        hits += sum(1 for _ in pattern.finditer(normalize_text(doc).replace("|", " ")))
        used.append(doc)
        if time.perf_counter() - wall > budget_s:
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"name": "compiled regex alternation (longest first, word boundaries, no assertions)",
            "build_s": round(build, 2), "hits": hits, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "documents_used": len(used)}


def _ahocorasick_baseline(surfaces: list[str], docs: list[str]) -> dict:
    """A character-level Aho-Corasick automaton (pyahocorasick) over the normalised text, longest matches."""
    import ahocorasick

    from medray.met.normalize import normalize_text

    start = time.perf_counter()
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for i, surface in enumerate(surfaces):
        automaton.add_word(f" {surface} ", i)
    automaton.make_automaton()
    build = time.perf_counter() - start
    hits = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for doc in docs:  # words joined by one space, so " term " only matches whole words
        text = " " + " ".join(normalize_text(doc).replace("|", " ").split()) + " "
        hits += sum(1 for _ in automaton.iter_long(text))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"name": "pyahocorasick character automaton (whole words, longest, no assertions)",
            "build_s": round(build, 2), "hits": hits, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def _baseline(kind: str, matcher: Matcher, docs: list[str]) -> dict:
    surfaces = list(matcher.surfaces)
    if kind == "auto":
        try:
            import spacy  # noqa: F401

            kind = "spacy"
        except ImportError:
            kind = "regex"
    run = {"spacy": _spacy_baseline, "regex": _regex_baseline, "ahocorasick": _ahocorasick_baseline}.get(kind)
    if run is None:
        raise MedrayError(f"unknown baseline {kind!r}: choose auto, spacy, regex or ahocorasick")
    result = run(surfaces, docs)
    used = docs[: result.get("documents_used", len(docs))]
    ours = _timed_match(matcher, used)  # the same documents, counted with the same word definition
    result["tokens"] = ours["tokens"]
    result["tokens_per_s_per_core"] = round(ours["tokens"] / max(result["cpu_s"], 1e-9))
    result["medray_on_same_slice"] = ours
    return result


def _build_in_child(kind: str, arg, seed: int) -> dict:
    import psutil

    proc = psutil.Process()
    tree = Tree.load(arg) if kind == "tree" else synthetic_tree(arg, seed)
    before = proc.memory_info().rss
    start = time.perf_counter()
    matcher = Matcher(tree)
    seconds = time.perf_counter() - start
    after = proc.memory_info().rss
    return {"entities": len(tree), "surfaces": len(matcher), "vocabulary_words": matcher.stats.words,
            "build_s": round(seconds, 2), "rss_added_mb": round((after - before) / 2**20, 1),
            "rss_total_mb": round(after / 2**20, 1)}


def measure_build(kind: str, arg, seed: int = 0) -> dict:
    """Matcher build time and memory in a fresh process (spawned, so nothing is shared)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_build_in_child, kind, arg, seed).result()


def synthetic_tree(n: int, seed: int = 0) -> Tree:
    """n entities named with 1-4 pseudo-words from a 200k-word vocabulary, under the four axes."""
    import pyarrow as pa

    from medray.met.tree import AXES, ROOT_ID, SCHEMA, axis_node_id

    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghjklmnprstvz" for b in ("a", "e", "i", "o", "u", "ae", "io", "ou")]
    vocab = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(200_000)})
    names = set()
    while len(names) < n:
        names.add(" ".join(rng.choice(vocab) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    names = sorted(names)
    axes = [AXES[i % 4] for i in range(n)]
    ids = [f"SYN:{i}" for i in range(n)]
    empty = [[] for _ in range(n)]
    table = pa.table({
        "node_id": [ROOT_ID, *(axis_node_id(a) for a in AXES), *ids],
        "parent_id": [None, *([ROOT_ID] * 4), *(axis_node_id(a) for a in axes)],
        "axis": [None, *AXES, *axes],
        "level": [0, 1, 1, 1, 1, *([2] * n)],
        "name": ["root", *AXES, *names],
        "synonyms": [[]] * 5 + empty, "codes": [[]] * 5 + empty, "sources": [[]] * 5 + [["synthetic"]] * n,
        "absent_forms": [[]] * 5 + empty, "provenance": [""] * (n + 5),
    }, schema=SCHEMA)
    return Tree(table)


def run_bench(tree: Tree, tree_path: str, *, size_mb: float = 50.0, synthetic: int = 1_000_000,
              baseline_mb: float = 2.0, baseline: str = "auto", seed: int = 0, progress=print) -> dict:
    progress("building the matcher over the full tree ...")
    matcher = Matcher(tree)
    progress(f"generating a {size_mb:g} MB corpus ...")
    docs = list(generate_documents(tree, int(size_mb * 1e6), seed=seed))
    size = sum(len(d) for d in docs)
    progress(f"matching {len(docs)} documents ...")
    ours = _timed_match(matcher, docs)
    slice_docs, acc = [], 0
    for d in docs:
        if acc >= baseline_mb * 1e6:
            break
        slice_docs.append(d)
        acc += len(d)
    progress(f"baseline ({baseline}) on {acc / 1e6:.1f} MB ...")
    base = _baseline(baseline, matcher, slice_docs)
    same_slice = base["medray_on_same_slice"]["tokens_per_s_per_core"]
    speedup = same_slice / max(base["tokens_per_s_per_core"], 1)
    others = {}
    if baseline != "ahocorasick" and importlib.util.find_spec("ahocorasick"):
        progress("second baseline (pyahocorasick) on the same slice ...")
        other = _baseline("ahocorasick", matcher, slice_docs)
        other["speedup"] = round(other["medray_on_same_slice"]["tokens_per_s_per_core"] / max(other["tokens_per_s_per_core"], 1), 1)
        others["ahocorasick"] = other
    progress("matcher build time and memory (fresh processes) ...")
    builds = {"full_tree": measure_build("tree", tree_path, seed)}
    if synthetic:
        builds[f"synthetic_{synthetic}"] = measure_build("synthetic", synthetic, seed)
    return {
        "benchmark": "met-match",
        "cpu": os.cpu_count(),
        "corpus": {"bytes": size, "documents": len(docs), "tokens": ours["tokens"], "seed": seed},
        "matcher": {**ours, "surfaces": len(matcher), "with_assertions": True},
        "baseline": base,
        "speedup_vs_baseline": round(speedup, 1),
        "other_baselines": others,
        "targets": {
            "tokens_per_s_per_core": TARGET_TOKENS_PER_S,
            "speedup": TARGET_SPEEDUP,
            "tokens_per_s_per_core_met": ours["tokens_per_s_per_core"] >= TARGET_TOKENS_PER_S,
            "speedup_met": speedup >= TARGET_SPEEDUP,
        },
        "build": builds,
    }
