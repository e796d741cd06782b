"""The generated corpus: every planted defect is where the ground truth says, and nothing else is."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections import Counter, defaultdict

import pytest

from medray import storage
from medray.data.synthetic import generate_corpus
from medray.data.synthetic_chunk import CHUNK_RECORDS, PLANT_RATES, blank_count, plant_count
from medray.data.synthetic_defects import (
    ASSUMED_THRESHOLDS,
    JUNK_RULES,
    MALFORMED,
    NEAR_DUP_MIN_JACCARD,
    exact_key,
    jaccard,
    shingles,
    text_stats,
)
from medray.data.synthetic_truth import GROUND_TRUTH, load_ground_truth
from medray.errors import MedrayError

N_DOCS = 2000

# Reference patterns for the planted identifiers (the formats in the ground truth's pii.formats).
PII_REFERENCE = {
    "email": re.compile(r"\b[a-z0-9.]+@[a-z0-9.-]+\.[a-z]{2,}\b"),
    "phone": re.compile(r"(?:\+1 )?(?:\(\d{3}\) |\d{3}[-.])555[-.]01\d\d\b"),
    "mrn": re.compile(r"(?:MRN: |MRN #|medical record number )\d{7,9}\b"),
    "dob": re.compile(r"(?:DOB:? \d\d/\d\d/\d{4}|date of birth \d{4}-\d\d-\d\d)\b"),
}
ENGLISH_FUNCTION_WORDS = {"the", "and", "of", "with", "for", "are", "this", "that", "which"}  # none is French, German or Spanish


def read_lines(root: str, gt: dict) -> dict[str, bytes]:
    """id -> raw line (without its newline), decompressing as the reader would."""
    out = {}
    for f in gt["files"]:
        with storage.open_input_stream(storage.join(root, f["path"])) as stream:
            data = stream.read()
        assert data.endswith(b"\n")
        lines = data[:-1].split(b"\n")
        assert len(lines) == f["lines"]
        out.update({f"{f['path']}:{i}": line for i, line in enumerate(lines, 1)})
    return out


def order(rid: str) -> tuple[str, int]:
    path, line = rid.rsplit(":", 1)
    return path, int(line)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_tree):
    root = str(tmp_path_factory.mktemp("synthetic") / "corpus")
    t0 = time.perf_counter()
    gt = generate_corpus(tiny_tree, root, n_docs=N_DOCS, seed=3)
    print(f"\n{N_DOCS} records in {time.perf_counter() - t0:.2f} s, timing {gt['timing']}")
    lines = read_lines(root, gt)
    texts = {}
    for rid, raw in lines.items():
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            texts[rid] = record["text"]
    return {"root": root, "gt": gt, "lines": lines, "texts": texts}


def test_files_formats_and_counts(corpus):
    gt, lines = corpus["gt"], corpus["lines"]
    assert [f["path"] for f in gt["files"]] == ["part-000.jsonl", "part-001.jsonl.gz", "part-002.jsonl.zst", "part-003.jsonl"]
    assert [f["compression"] for f in gt["files"]] == [None, "gzip", "zstd", None]
    raw1 = open(f"{corpus['root']}/part-001.jsonl.gz", "rb").read(10)
    assert raw1[:2] == b"\x1f\x8b" and raw1[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    assert open(f"{corpus['root']}/part-002.jsonl.zst", "rb").read(4) == b"\x28\xb5\x2f\xfd"
    counts = gt["counts"]
    assert counts["records"] == N_DOCS
    assert counts["lines"] == len(lines) == N_DOCS + counts["blank_lines"]
    assert counts["blank_lines"] == blank_count(N_DOCS, True) == len(gt["blank_lines"])
    assert all(f["records"] > 0.2 * N_DOCS for f in gt["files"])
    expected_by_reason = {k: plant_count(k, N_DOCS) for k in PLANT_RATES if k != "pii"}
    assert counts["by_reason"] == expected_by_reason
    assert counts["pii_docs"] == plant_count("pii", N_DOCS) == len(gt["pii"]["docs"])
    assert counts["rejected"] == sum(expected_by_reason[r] for r in MALFORMED)
    assert counts["expected_kept"] == N_DOCS - len(gt["expected"])
    assert set(gt["nodes"]["docs"]) == set(lines) - set(gt["expected"]) - set(gt["blank_lines"])
    assert json.loads(storage.read_text(f"{corpus['root']}/{GROUND_TRUTH}")) == {k: v for k, v in gt.items() if k != "timing"}
    assert load_ground_truth(corpus["root"])["counts"] == counts


def test_malformed_lines_are_really_malformed(corpus):
    gt, lines = corpus["gt"], corpus["lines"]
    seen = Counter()
    for entry in gt["malformed"]:
        raw, reason = lines[entry["id"]], entry["reason"]
        seen[reason] += 1
        if reason == "bad_encoding":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            continue
        text = raw.decode("utf-8")
        if reason == "bad_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
            continue
        record = json.loads(text)
        assert isinstance(record, dict)
        if reason == "missing_text":
            assert "text" not in record
        else:
            assert reason == "text_not_string" and "text" in record and not isinstance(record["text"], str)
    assert set(seen) == set(MALFORMED)
    for rid in gt["blank_lines"]:
        assert lines[rid].strip() == b""
    # every other line is a valid record with string text
    bad = set(gt["blank_lines"]) | {e["id"] for e in gt["malformed"]}
    assert set(corpus["texts"]) == set(lines) - bad


def test_exact_duplicates_are_the_only_shared_keys(corpus):
    gt, texts = corpus["gt"], corpus["texts"]
    groups = defaultdict(list)
    for rid, text in texts.items():
        groups[exact_key(text)].append(rid)
    shared = {tuple(sorted(ids, key=order)) for ids in groups.values() if len(ids) > 1}
    planted = defaultdict(list)
    for d in gt["exact_duplicates"]:
        planted[d["of"]].append(d["id"])
        assert exact_key(texts[d["id"]]) == exact_key(texts[d["of"]])
        assert order(d["of"]) < order(d["id"])  # the original comes first
        assert gt["expected"][d["id"]] == "exact_duplicate" and d["of"] not in gt["expected"]
    assert shared == {tuple(sorted([orig, *copies], key=order)) for orig, copies in planted.items()}
    variants = Counter(d["variant"] for d in gt["exact_duplicates"])
    assert set(variants) == {"identical", "case", "spacing", "flattened", "padded"}
    assert any(texts[d["id"]] != texts[d["of"]] for d in gt["exact_duplicates"])
    files = {d["id"].split(":")[0] != d["of"].split(":")[0] for d in gt["exact_duplicates"]}
    assert files == {True, False}  # copies both within a file and across files


def test_near_duplicates_close_and_clean_documents_far_apart(corpus):
    gt, texts = corpus["gt"], corpus["texts"]
    assert len(gt["near_duplicates"]) == plant_count("near_duplicate", N_DOCS)
    for d in gt["near_duplicates"]:
        score = jaccard(texts[d["id"]], texts[d["of"]])
        assert score == pytest.approx(d["jaccard"], abs=1e-4)
        assert score >= NEAR_DUP_MIN_JACCARD > ASSUMED_THRESHOLDS["near_duplicate_jaccard"]
        assert exact_key(texts[d["id"]]) != exact_key(texts[d["of"]])
        assert order(d["of"]) < order(d["id"])
        assert 1 <= len(d["edits"]) <= 3
    assert max(Counter(d["of"] for d in gt["near_duplicates"]).values()) >= 2  # some clusters hold several copies
    # kept documents, pairwise: far below the near-duplicate threshold
    kept = sorted(gt["nodes"]["docs"], key=order)
    sample = random.Random(0).sample(kept, 150)
    sets = {rid: shingles(texts[rid]) for rid in sample}
    scores = [jaccard(sets[a], sets[b]) for a, b in itertools.combinations(sample, 2)]
    print(f"\nclean pairs: {len(scores)}, max jaccard {max(scores):.3f}, mean {sum(scores) / len(scores):.3f}")
    assert max(scores) < 0.5
    assert sum(scores) / len(scores) < 0.1


def test_junk_breaks_exactly_its_own_rule(corpus):
    gt, texts = corpus["gt"], corpus["texts"]
    th = ASSUMED_THRESHOLDS

    def broken(stats: dict) -> set[str]:
        out = set()
        if stats["words"] < th["min_words"]:
            out.add("too_short")
        if stats["words"] > th["max_words"]:
            out.add("too_long")
        for rule, key, limit in (("symbol_ratio", "symbol_ratio", "max_symbol_ratio"),
                                 ("digit_ratio", "digit_ratio", "max_digit_ratio"),
                                 ("repeated_lines", "duplicate_line_fraction", "max_duplicate_line_fraction"),
                                 ("boilerplate", "boilerplate_line_fraction", "max_boilerplate_line_fraction")):
            if stats[key] > th[limit]:
                out.add(rule)
        return out

    rules = Counter()
    for entry in gt["junk"]:
        stats = text_stats(texts[entry["id"]])
        assert stats == {k: entry[k] for k in stats}
        rules[entry["reason"]] += 1
        if entry["reason"] == "language":
            assert broken(stats) == set()
            words = re.findall(r"[a-zà-ÿ]+", texts[entry["id"]].lower())
            assert sum(w in ENGLISH_FUNCTION_WORDS for w in words) <= 0.02 * len(words)
            assert entry["variant"] in {"foreign_fr", "foreign_de", "foreign_es"}
        else:
            assert broken(stats) == {entry["reason"]}, (entry, stats)
    assert rules == Counter({r: plant_count(r, N_DOCS) for r in JUNK_RULES})
    assert {e["variant"] for e in gt["junk"] if e["reason"] == "language"} == {"foreign_fr", "foreign_de", "foreign_es"}
    assert len({exact_key(texts[e["id"]]) for e in gt["junk"] if e["reason"] == "too_short"}) == plant_count("too_short", N_DOCS)
    for entry in gt["low_quality"]:  # spam passes every rule: only the quality classifier can catch it
        assert broken(text_stats(texts[entry["id"]])) == set()
    # every kept document passes every rule, with room to spare
    for rid in gt["nodes"]["docs"]:
        stats = text_stats(texts[rid])
        assert 100 <= stats["words"] <= 600, (rid, stats)
        assert stats["symbol_ratio"] < 0.1 and stats["digit_ratio"] < 0.1, (rid, stats)  # identifiers hold digits
        assert stats["duplicate_line_fraction"] == 0 and stats["boilerplate_line_fraction"] == 0, rid
    assert gt["clean_stats"]["sampled_docs"] == 500
    assert gt["clean_stats"]["min_words"] >= 100 and gt["clean_stats"]["max_words"] <= 600


def test_pii_counts_are_exact(corpus):
    gt, texts = corpus["gt"], corpus["texts"]
    totals = Counter()
    for rid, counts in gt["pii"]["docs"].items():
        found = {kind: len(p.findall(texts[rid])) for kind, p in PII_REFERENCE.items()}
        assert found == counts, rid
        assert sum(counts.values()) >= 1
        totals.update(counts)
    assert dict(totals) == gt["pii"]["totals"] and all(totals.values())
    pii_docs = set(gt["pii"]["docs"])
    for rid in gt["nodes"]["docs"]:  # no identifier anywhere else among the kept documents
        if rid not in pii_docs:
            assert not any(p.search(texts[rid]) for p in PII_REFERENCE.values()), rid
            assert "@" not in texts[rid]


def test_planted_nodes_are_what_the_matcher_finds(corpus, tiny_matcher):
    gt, texts = corpus["gt"], corpus["texts"]
    ids = sorted(gt["nodes"]["docs"])
    hits = tiny_matcher.match_batch([texts[i] for i in ids]).select(["doc", "node_id"]).to_pydict()
    found = defaultdict(set)
    for d, node in zip(hits["doc"], hits["node_id"]):
        found[ids[d]].add(node)
    assert {i: sorted(found[i]) for i in ids} == gt["nodes"]["docs"]
    counts = Counter(n for nodes in gt["nodes"]["docs"].values() for n in nodes)
    assert dict(counts) == gt["nodes"]["doc_counts"]


def test_node_mentions_are_skewed(corpus, tiny_tree, tmp_path):
    gt = corpus["gt"]
    nodes = gt["nodes"]
    assert nodes["top_share"] >= 1.5 * nodes["median_share"]
    disease = [c for n, c in nodes["doc_counts"].items() if n.startswith("D:")]
    assert max(disease) >= 2.0 * min(disease)
    flat = generate_corpus(tiny_tree, str(tmp_path / "flat"), n_docs=600, seed=3, skew=0.0, plant=False)
    assert flat["counts"]["records"] == flat["counts"]["expected_kept"] == 600 and not flat["expected"]
    flat_disease = [c for n, c in flat["nodes"]["doc_counts"].items() if n.startswith("D:")]
    assert max(flat_disease) <= 1.4 * min(flat_disease)
    kinds = gt["counts"]["kept_by_kind"]
    assert set(kinds) == {"clinical_note", "radiology_report", "textbook", "patient_education"}


def test_same_seed_same_bytes(tiny_tree, tmp_path):
    def files(root):
        return {p.name: p.read_bytes() for p in sorted((tmp_path / root).iterdir())}

    generate_corpus(tiny_tree, str(tmp_path / "a"), n_docs=400, files=3, seed=11)
    generate_corpus(tiny_tree, str(tmp_path / "b"), n_docs=400, files=3, seed=11)
    generate_corpus(tiny_tree, str(tmp_path / "c"), n_docs=400, files=3, seed=12)
    a, b, c = files("a"), files("b"), files("c")
    assert set(a) == {"part-000.jsonl", "part-001.jsonl.gz", "part-002.jsonl.zst", GROUND_TRUTH}
    assert a == b
    assert all(a[name] != c[name] for name in a)


def test_size_mode_rates_workers_and_speed(tiny_tree, tmp_path):
    t0 = time.perf_counter()
    gt = generate_corpus(tiny_tree, str(tmp_path / "one"), size_mb=8, seed=5, workers=1)
    wall = time.perf_counter() - t0
    written = sum(f["bytes"] for f in gt["files"])
    assert 8e6 <= written < 8e6 + 6e6  # stops after the chunk that reaches the target
    chunks = gt["counts"]["records"] // CHUNK_RECORDS
    assert gt["counts"]["records"] == chunks * CHUNK_RECORDS
    assert gt["counts"]["by_reason"] == {k: chunks * plant_count(k, CHUNK_RECORDS) for k in PLANT_RATES if k != "pii"}
    assert "docs" not in gt["nodes"] and sum(gt["nodes"]["doc_counts"].values()) > 0
    print(f"\nsize_mb=8: {written / 1e6:.1f} MB in {wall:.2f} s wall, "
          f"{gt['timing']['mb_per_s']} MB/s generating (after {gt['timing']['setup_s']} s setup)")
    gt2 = generate_corpus(tiny_tree, str(tmp_path / "two"), size_mb=8, seed=5, workers=2)
    for f in gt["files"]:
        assert (tmp_path / "one" / f["path"]).read_bytes() == (tmp_path / "two" / f["path"]).read_bytes()
    assert gt2["expected"] == gt["expected"]


def test_too_small_a_corpus_is_refused(tiny_tree, tmp_path):
    with pytest.raises(MedrayError, match="too small to plant"):
        generate_corpus(tiny_tree, str(tmp_path / "x"), n_docs=60)
    gt = generate_corpus(tiny_tree, str(tmp_path / "y"), n_docs=60, plant=False)
    assert gt["counts"]["records"] == gt["counts"]["expected_kept"] == 60


def test_written_to_s3_as_locally(tiny_tree, tmp_path, s3_prefix):
    local = generate_corpus(tiny_tree, str(tmp_path / "local"), n_docs=300, files=3, seed=2)
    remote = generate_corpus(tiny_tree, s3_prefix, n_docs=300, files=3, seed=2)
    assert load_ground_truth(s3_prefix) == {k: v for k, v in local.items() if k != "timing"}
    for f in remote["files"]:
        assert storage.read_bytes(storage.join(s3_prefix, f["path"])) == (tmp_path / "local" / f["path"]).read_bytes()
    assert len(read_lines(s3_prefix, remote)) == remote["counts"]["lines"]
