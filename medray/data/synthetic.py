"""A generated medical corpus with planted defects and its ground truth.

Why: the text engine's tests, `make demo` and `medray bench data` need a
corpus where the right answer is known. Clean documents (clinical notes,
radiology reports, textbook sections, patient leaflets; `synthetic_docs`)
are built from the tree's own names and synonyms, each about a few nodes
drawn from a Zipf law, so node frequencies are skewed the way real corpora
are and tree-guided sampling has something to fix. Defects
(`synthetic_defects`) are planted at known lines, each with the reason the
pipeline should give: exact and near duplicates, junk for every rule,
keyword spam, personal identifiers inside good documents, malformed lines.

The output is JSONL files cycling through plain, .gz and .zst, plus
`ground_truth.json` beside them. Record ids are `<file name>:<1-based
line>`, the reader's ids. Records come in chunks of 2,000, each spread over
all files in contiguous parts; a chunk depends only on (seed, chunk number),
so output is byte-identical for a seed (gzip mtime 0, no names in headers)
whatever the number of worker processes, and `size_mb` mode streams
hundreds of MB with flat memory and the same defect rates.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import multiprocessing
import os
import pickle
import random
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from json.encoder import encode_basestring

import numpy as np
import pyarrow as pa

from medray import storage
from medray.data import synthetic_text as txt
from medray.data.synthetic_defects import (  # noqa: F401  (re-exported: the measures the ground truth names)
    ASSUMED_THRESHOLDS,
    DEFINITIONS,
    JUNK_RULES,
    MALFORMED,
    NEAR_DUP_MIN_JACCARD,
    Junk,
    exact_key,
    exact_variant,
    insert_pii,
    jaccard,
    malformed_line,
    near_duplicate,
    shingles,
    text_stats,
)
from medray.data.synthetic_docs import CLEAN_KIND_WEIGHTS, CLEAN_KINDS, Composer
from medray.errors import MedrayError
from medray.met.tree import Tree

GROUND_TRUTH = "ground_truth.json"
CHUNK_RECORDS = 2000
EXTENSIONS = (".jsonl", ".jsonl.gz", ".jsonl.zst")
RULES = {
    "exact_duplicate": "records whose exact_key is equal form a group; the first in (file name order, line order) is kept, "
                       "the others are exact_duplicate. Copies always come after their original.",
    "near_duplicate": "each planted cluster is an original plus 1-3 edited copies (a few words changed, inserted or "
                      "deleted); the original comes first in (file name order, line order) and is the one expected kept.",
    "blank_lines": "empty or whitespace-only lines are not records: skipped without a reject, still counted as lines, "
                   "so later ids keep their physical line numbers.",
    "pii": "pii documents are clean documents with identifiers inserted; they are expected kept (scrubbed), with the "
           "exact number of identifiers of each kind listed per document.",
    "expected": "every record expected not to reach the output, with its reason; every other record is expected kept.",
    "junk": "each junk document breaks exactly one rule of `thresholds` by a wide margin (its measures are listed).",
}
# kind -> (rate per record, minimum per chunk). Copies, junk and malformed lines are
# records; blank lines are extra lines.
PLANT_RATES = {
    "exact_duplicate": (0.02, 3),
    "near_duplicate": (0.02, 3),
    "pii": (0.02, 3),
    "too_short": (0.005, 2),
    "too_long": (0.001, 2),
    "symbol_ratio": (0.005, 2),
    "digit_ratio": (0.005, 2),
    "repeated_lines": (0.005, 2),
    "boilerplate": (0.005, 2),
    "language": (0.006, 3),
    "low_quality": (0.01, 3),
    "bad_json": (0.002, 4),
    "missing_text": (0.001, 3),
    "text_not_string": (0.002, 4),
    "bad_encoding": (0.001, 2),
}
BLANK_RATE = (0.001, 2)
_FROM_CLEAN = frozenset({"clean", "pii", "symbol_ratio", "boilerplate", *MALFORMED})  # made from a clean text
_STATS_SAMPLE = 500  # clean documents of the first chunk measured for clean_stats
_KIND_URL = {"clinical_note": "ehr.example.org/notes", "radiology_report": "pacs.example.org/reports",
             "textbook": "books.example.org/medicine", "patient_education": "patients.example.org/leaflets"}


def load_ground_truth(out_dir: str) -> dict:
    return json.loads(storage.read_text(storage.join(str(out_dir), GROUND_TRUTH)))


def plant_count(kind: str, n: int) -> int:
    rate, least = PLANT_RATES[kind]
    return max(least, round(rate * n))


def blank_count(n: int, plant: bool) -> int:
    return max(BLANK_RATE[1], round(BLANK_RATE[0] * n)) if plant else 0


def file_names(files: int) -> list[str]:
    return [f"part-{i:03d}{EXTENSIONS[i % len(EXTENSIONS)]}" for i in range(files)]


def _split(n_lines: int, files: int) -> list[int]:
    """Lines of a chunk per file: contiguous parts, as equal as possible."""
    return [n_lines // files + (1 if i < n_lines % files else 0) for i in range(files)]


def _plan(n: int, rng: random.Random, plant: bool) -> list[str]:
    """What each record of a chunk is; copies never sit in the first tenth (they need originals)."""
    cats: list[str] = []
    if plant:
        for kind in PLANT_RATES:
            cats += [kind] * plant_count(kind, n)
        if 2 * len(cats) > n:
            raise MedrayError(f"n_docs={n} is too small to plant every defect: use at least {2 * len(cats)}")
    cats += ["clean"] * (n - len(cats))
    rng.shuffle(cats)
    half, start = n // 2, rng.randrange(n - n // 2)
    for i in range(max(1, n // 10)):
        if cats[i] in ("exact_duplicate", "near_duplicate"):  # swap with a clean record of the second half
            j = next(j for k in range(n - half) if cats[j := half + (start + k) % (n - half)] == "clean")
            cats[i], cats[j] = cats[j], cats[i]
    return cats


# ---- the ground truth ----------------------------------------------------------------------------


@dataclass
class _Truth:
    """The ground truth of a chunk, or of the corpus once chunks are merged in order."""

    record_doc_nodes: bool
    expected: dict[str, str] = field(default_factory=dict)
    exact: list[dict] = field(default_factory=list)
    near: list[dict] = field(default_factory=list)
    junk: list[dict] = field(default_factory=list)
    low_quality: list[dict] = field(default_factory=list)
    pii_docs: dict[str, dict[str, int]] = field(default_factory=dict)
    malformed: list[dict] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    doc_nodes: dict[str, list[str]] = field(default_factory=dict)
    node_counts: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    clean_stats: list[dict] = field(default_factory=list)
    kept: int = 0

    def keep(self, rid: str, kind: str, nodes: list[str]) -> None:
        self.kept += 1
        self.kinds[kind] += 1
        self.node_counts.update(nodes)
        if self.record_doc_nodes:
            self.doc_nodes[rid] = nodes

    def merge(self, other: _Truth) -> None:
        for name in ("exact", "near", "junk", "low_quality", "malformed", "blank", "clean_stats"):
            getattr(self, name).extend(getattr(other, name))
        for name in ("expected", "pii_docs", "doc_nodes"):
            getattr(self, name).update(getattr(other, name))
        self.node_counts.update(other.node_counts)
        self.kinds.update(other.kinds)
        self.kept += other.kept


# ---- one chunk -----------------------------------------------------------------------------------


@dataclass
class _Original:
    rid: str
    text: str
    kind: str
    url: str
    words: int
    copies: int = 0


@dataclass
class _Chunk:
    parts: list[bytes]  # per file, newline-terminated lines
    records: list[int]
    blank: list[int]
    truth: _Truth


class _ChunkMaker:
    """Makes chunk `index` from (seed, index) alone, so chunks can be made in any process and order."""

    def __init__(self, composer: Composer, seed: int, plant: bool, names: list[str], record_doc_nodes: bool):
        self.composer, self.junk = composer, Junk(composer)
        self.seed, self.plant, self.names, self.record_doc_nodes = seed, plant, names, record_doc_nodes
        self.short_quota = plant_count("too_short", CHUNK_RECORDS)  # too_short documents numbered per chunk

    def make(self, index: int, n: int, first_lines: list[int]) -> _Chunk:
        """Chunk `index` of `n` records; `first_lines[f]` is the number of lines already in file f."""
        rng = random.Random(f"chunk:{self.seed}:{index}")
        np_rng = np.random.default_rng([self.seed, index])
        cats = _plan(n, rng, self.plant)
        n_blank = blank_count(n, self.plant)
        lines: list[str | None] = list(cats)
        for pos in sorted(rng.sample(range(n + n_blank), n_blank)):
            lines.insert(pos, None)
        where = [(f, first_lines[f] + j + 1) for f, size in enumerate(_split(len(lines), len(self.names)))
                 for j in range(size)]
        # every clean document of the chunk, and one per record made from a clean text, in one batch
        kinds = np_rng.choice(np.asarray(CLEAN_KINDS, dtype=object), sum(c in _FROM_CLEAN for c in cats),
                              p=CLEAN_KIND_WEIGHTS).tolist()
        docs = iter(self.composer.compose_many(kinds, np_rng, rng))
        truth = _Truth(self.record_doc_nodes)
        state = {"fresh": [], "exact_duplicate": [], "near_duplicate": [], "short": index * self.short_quota}
        out: list[list[bytes]] = [[] for _ in self.names]
        records, blank = [0] * len(self.names), [0] * len(self.names)
        for cat, (f, line) in zip(lines, where):
            rid = f"{self.names[f]}:{line}"
            if cat is None:
                out[f].append(b"" if rng.random() < 0.5 else b"   ")
                blank[f] += 1
                truth.blank.append(rid)
                continue
            records[f] += 1
            made = next(docs) if cat in _FROM_CLEAN else None
            out[f].append(self._record(cat, rid, rng, made, state, truth, index == 0))
        parts = [b"\n".join(rows) + b"\n" if rows else b"" for rows in out]
        return _Chunk(parts, records, blank, truth)

    def _record(self, cat: str, rid: str, rng: random.Random, made, state: dict, truth: _Truth,
                sample_stats: bool) -> bytes:
        """One record's line; `made` is a composed (text, nodes, words, kind) for the kinds in _FROM_CLEAN."""
        if cat in ("clean", "pii"):
            text, nodes, words, kind = made
            url = f"https://{_KIND_URL[kind]}/{rng.getrandbits(40):010x}"
            if cat == "pii":
                text, counts = insert_pii(text, rng)
                truth.pii_docs[rid] = counts
            else:
                state["fresh"].append(_Original(rid, text, kind, url, words))
                if sample_stats and len(truth.clean_stats) < _STATS_SAMPLE:
                    truth.clean_stats.append(text_stats(text))
            truth.keep(rid, kind, nodes)
            return _json_line(text, kind, url)
        if cat in ("exact_duplicate", "near_duplicate"):
            orig = _pick_original(cat, rng, state["fresh"], state[cat])
            if orig is None:  # nothing to copy yet: a clean document instead
                kind = rng.choice(CLEAN_KINDS)
                return self._record("clean", rid, rng, (*self.composer.compose(kind, rng), 0, kind), state, truth,
                                    sample_stats)
            orig.copies += 1
            if cat == "exact_duplicate":
                text, variant = exact_variant(orig.text, rng)
                truth.exact.append({"id": rid, "of": orig.rid, "variant": variant})
            else:
                text, score, ops = near_duplicate(orig.text, rng)
                truth.near.append({"id": rid, "of": orig.rid, "jaccard": score, "edits": ops})
            truth.expected[rid] = cat
            return _json_line(text, orig.kind, orig.url)
        if cat in JUNK_RULES or cat == "low_quality":
            number = state["short"]
            state["short"] += cat == "too_short"
            text, kind = self.junk.make(cat, rng, made[0] if made else "", number)
            entry = {"id": rid, "reason": cat, "variant": kind, **text_stats(text)}
            (truth.low_quality if cat == "low_quality" else truth.junk).append(entry)
            truth.expected[rid] = cat
            return _json_line(text, kind, f"https://web.example.com/{kind}/{rng.getrandbits(32):08x}")
        data, variant = malformed_line(cat, rng, made[0])
        truth.malformed.append({"id": rid, "reason": cat, "variant": variant})
        truth.expected[rid] = cat
        return data


def _pick_original(cat: str, rng: random.Random, fresh: list[_Original], cluster: list[_Original]) -> _Original | None:
    """A clean document of the chunk to copy: often a new one, sometimes one already copied (bigger clusters)."""
    grown = [o for o in cluster if o.copies < 3]
    if grown and rng.random() < 0.3:
        return rng.choice(grown)
    min_words = 200 if cat == "near_duplicate" else 0  # a few edits then stay far above the Jaccard threshold
    if fresh:
        start = rng.randrange(len(fresh))
        for k in range(len(fresh)):
            i = (start + k) % len(fresh)
            if fresh[i].words >= min_words:
                orig = fresh.pop(i)
                cluster.append(orig)
                return orig
    return rng.choice(grown) if grown else None


def _json_line(text: str, kind: str, url: str) -> bytes:
    """`{"text": ..., "kind": ..., "source_url": ...}`; kind and url never need escaping."""
    return f'{{"text": {encode_basestring(text)}, "kind": "{kind}", "source_url": "{url}"}}'.encode()


# ---- worker processes ----------------------------------------------------------------------------

_WORKER_MAKER: _ChunkMaker | None = None


def _init_worker(maker_pickle: bytes | None) -> None:
    global _WORKER_MAKER
    if maker_pickle is not None:  # spawned: forked workers inherit the maker
        _WORKER_MAKER = pickle.loads(maker_pickle)


def _make_in_worker(index: int, n: int, first_lines: list[int]) -> _Chunk:
    return _WORKER_MAKER.make(index, n, first_lines)


def _inside_ray() -> bool:
    """A Ray driver or worker holds threads a fork must not copy: generate in-process there."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def _chunks(maker: _ChunkMaker, sizes, workers: int):
    """Chunks in order, made here or by `workers` processes with a bounded number in flight.

    Workers fork where the platform can (nothing to re-import or pickle, and
    no `__main__` guard needed in the caller's script); else they spawn.
    Inside a Ray process chunks are made in-process.
    """
    global _WORKER_MAKER
    files = len(maker.names)
    lines = [0] * files

    def jobs():
        for index, n in enumerate(sizes):
            yield index, n, list(lines)
            for f, size in enumerate(_split(n + blank_count(n, maker.plant), files)):
                lines[f] += size

    if workers <= 1 or _inside_ray():
        for index, n, first in jobs():
            yield maker.make(index, n, first)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    _WORKER_MAKER = maker
    init = None if method == "fork" else pickle.dumps(maker)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                               initializer=_init_worker, initargs=(init,))
    pending = []
    try:
        for job in jobs():
            pending.append(pool.submit(_make_in_worker, *job))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()
    finally:  # also when the caller stops early (target size reached): drop what is still queued
        pool.shutdown(wait=True, cancel_futures=True)
        _WORKER_MAKER = None


# ---- output files --------------------------------------------------------------------------------


class _KeepOpen(io.RawIOBase):
    """Lets the zstd stream close without closing the atomic file beneath it."""

    def __init__(self, raw):
        self.raw = raw

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self.raw.write(b)


def _open_outputs(out_dir: str, names: list[str], stack: contextlib.ExitStack) -> list:
    streams = []
    for name in names:
        raw = stack.enter_context(storage.atomic_output_stream(storage.join(out_dir, name)))
        if name.endswith(".gz"):
            stream = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6))
        elif name.endswith(".zst"):
            stream = stack.enter_context(pa.CompressedOutputStream(pa.PythonFile(_KeepOpen(raw), mode="w"), "zstd"))
        else:
            stream = raw
        streams.append(stream)
    return streams


# ---- the corpus ----------------------------------------------------------------------------------


def generate_corpus(tree: Tree, out_dir: str, *, n_docs: int = 2000, files: int = 4, seed: int = 0,
                    size_mb: float | None = None, plant: bool = True, skew: float = 1.1,
                    record_doc_nodes: bool | None = None, workers: int | None = None) -> dict:
    """Write a JSONL corpus with planted defects to `out_dir` (local or s3://); return its ground truth.

    `n_docs` records (blank lines come on top), or with `size_mb` about that
    many MB (1e6 bytes) of uncompressed JSONL at the same defect rates.
    Files cycle through .jsonl, .jsonl.gz, .jsonl.zst. `skew` is the Zipf
    exponent of node mentions (0: uniform). `record_doc_nodes` (default:
    only without `size_mb`) lists every kept document's nodes in the ground
    truth. `workers` processes make chunks (default: one, or up to 8 but
    one fewer than the cores for `size_mb` >= 64); the output does not
    depend on it.
    """
    if files < 1:
        raise MedrayError(f"files must be at least 1, got {files}")
    if size_mb is None and n_docs < 1:
        raise MedrayError(f"n_docs must be at least 1, got {n_docs}")
    if workers is None:
        # one core stays with this process, which compresses and writes
        workers = max(1, min((os.cpu_count() or 1) - 1, 8)) if size_mb is not None and size_mb >= 64 else 1
    out_dir = str(out_dir)
    t0 = time.perf_counter()
    names = file_names(files)
    record_nodes = size_mb is None if record_doc_nodes is None else record_doc_nodes
    maker = _ChunkMaker(Composer(tree, seed, skew), seed, plant, names, record_nodes)
    setup_s = time.perf_counter() - t0
    if size_mb is None:
        n_chunks = -(-n_docs // CHUNK_RECORDS)
        sizes = [n_docs // n_chunks + (1 if i < n_docs % n_chunks else 0) for i in range(n_chunks)]
    else:
        sizes = iter(lambda: CHUNK_RECORDS, None)  # until the target size is reached
    truth = _Truth(record_nodes)
    lines, records, blank, written = [0] * files, [0] * files, [0] * files, [0] * files
    with contextlib.ExitStack() as stack:
        streams = _open_outputs(out_dir, names, stack)
        for chunk in stack.enter_context(contextlib.closing(_chunks(maker, sizes, workers))):
            for f, part in enumerate(chunk.parts):
                streams[f].write(part)
                written[f] += len(part)
                lines[f] += part.count(b"\n")
                records[f] += chunk.records[f]
                blank[f] += chunk.blank[f]
            truth.merge(chunk.truth)
            if size_mb is not None and sum(written) >= size_mb * 1e6:
                break
    gen_s = time.perf_counter() - t0 - setup_s
    table = [{"path": name, "compression": {".gz": "gzip", ".zst": "zstd"}.get(name[name.rfind("."):]),
              "lines": lines[i], "records": records[i], "blank_lines": blank[i], "bytes": written[i]}
             for i, name in enumerate(names)]
    gt = _ground_truth(truth, table, seed=seed, skew=skew, n_docs=n_docs if size_mb is None else None,
                       size_mb=size_mb, plant=plant, files=files)
    storage.write_text(storage.join(out_dir, GROUND_TRUTH), json.dumps(gt, indent=1 if size_mb is None else None))
    # not in the file, which must be the same for a seed: how long this run took
    gt["timing"] = {"setup_s": round(setup_s, 3), "generate_s": round(gen_s, 3), "workers": workers,
                    "mb_per_s": round(sum(written) / 1e6 / max(gen_s, 1e-9), 2)}
    return gt


def _ground_truth(truth: _Truth, table: list[dict], **params) -> dict:
    by_reason = Counter(truth.expected.values())
    pii_totals: Counter = Counter()
    for counts in truth.pii_docs.values():
        pii_totals.update(counts)
    node_counts = dict(sorted(truth.node_counts.items(), key=lambda kv: (-kv[1], kv[0])))
    values = sorted(node_counts.values())
    clean = truth.clean_stats
    return {
        "version": 1,
        "params": params,
        "id_format": "<file name relative to the corpus directory>:<1-based line number>",
        "files": table,
        "rules": RULES,
        "thresholds": ASSUMED_THRESHOLDS,
        "definitions": DEFINITIONS,
        "boilerplate_markers": list(txt.BOILERPLATE_MARKERS),
        "counts": {
            "lines": sum(f["lines"] for f in table), "records": sum(f["records"] for f in table),
            "blank_lines": len(truth.blank), "expected_kept": truth.kept, "pii_docs": len(truth.pii_docs),
            "rejected": sum(by_reason[r] for r in MALFORMED),
            "by_reason": dict(sorted(by_reason.items())),
            "kept_by_kind": dict(sorted(truth.kinds.items())),
        },
        "expected": truth.expected,
        "exact_duplicates": truth.exact,
        "near_duplicates": truth.near,
        "junk": truth.junk,
        "low_quality": truth.low_quality,
        "malformed": truth.malformed,
        "blank_lines": truth.blank,
        "pii": {"formats": txt.PII_FORMATS, "totals": {k: pii_totals.get(k, 0) for k in ("email", "phone", "mrn", "dob")},
                "docs": truth.pii_docs},
        "clean_stats": {"sampled_docs": len(clean), **({
            "min_words": min(s["words"] for s in clean), "max_words": max(s["words"] for s in clean),
            **{f"max_{k}": max(s[k] for s in clean)
               for k in ("symbol_ratio", "digit_ratio", "duplicate_line_fraction", "boilerplate_line_fraction")},
        } if clean else {})},
        "nodes": {
            "skew": params["skew"],
            "kept_docs": truth.kept,
            "distinct": len(node_counts),
            "top_share": round(values[-1] / max(truth.kept, 1), 4) if values else 0.0,
            "median_share": round(values[len(values) // 2] / max(truth.kept, 1), 4) if values else 0.0,
            "doc_counts": node_counts,
            **({"docs": truth.doc_nodes} if truth.record_doc_nodes else {}),
        },
    }
