"""Near-duplicate removal on a corpus with planted copies: found, nothing else removed, same on Ray."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medray.bench.neardup import compare_with_datasketch, exact_jaccard
from medray.config import load_config
from medray.data.dedup import REASON, MinHashStage, NearDupConfig, NearDupFilter
from medray.data.minhash import EMPTY, band_keys, minhash_signatures
from medray.data.near_dup_pairs import find_near_duplicates, near_dup_counts
from medray.data.near_dup_ray import near_duplicates_ray
from medray.data.stage import run_stages
from medray.errors import ConfigError

SYLLABLES = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]


def _corpus(seed: int = 7) -> tuple[list[str], list[str], dict[str, str], list[str]]:
    """ids, texts, planted {copy id: source id}, hard negatives (share 40-75% of a document's words).

    Sources are `d...`; copies (`e...` edited, `x...` exact, `p...` case and
    punctuation changed) sort after them, so their source is the id kept.
    """
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(4000)})

    def words(n: int) -> list[str]:
        return [rng.choice(vocab) for _ in range(n)]

    docs = {f"d{i:03d}": words(200) for i in range(120)}
    planted: dict[str, str] = {}
    for k, source in enumerate(sorted(rng.sample(sorted(docs), 40))):
        copy = list(docs[source])
        for _ in range(rng.randint(1, 3)):
            op, at = rng.choice(("insert", "delete", "replace")), rng.randrange(len(copy))
            if op == "insert":
                copy.insert(at, rng.choice(vocab))
            elif op == "delete":
                del copy[at]
            else:
                copy[at] = rng.choice(vocab)
        docs[f"e{k:03d}"] = copy
        planted[f"e{k:03d}"] = source
    for k, source in enumerate(["d003", "d010", "d010", "d077"]):
        docs[f"x{k:03d}"] = list(docs[source])
        planted[f"x{k:03d}"] = source
    texts = {i: " ".join(w) for i, w in docs.items()}
    texts["p000"] = texts["d050"].upper().replace(" ", ", ", 20) + "."
    planted["p000"] = "d050"
    negatives = []
    for k, (source, shared) in enumerate(zip(sorted(rng.sample(range(120), 20)), [80, 120, 150] * 7)):
        texts[f"n{k:03d}"] = " ".join(docs[f"d{source:03d}"][:shared] + words(200 - shared))
        negatives.append(f"n{k:03d}")
    texts.update({"s000": "Chest X-ray normal.", "s001": "chest x ray: NORMAL", "z000": "", "z001": " ... "})
    planted["s001"] = "s000"  # shorter than the n-gram: one shingle of all its words
    ids = sorted(texts)
    return ids, [texts[i] for i in ids], planted, negatives


CORPUS = _corpus()


def _dropped(table: pa.Table) -> dict[str, str]:
    gone = table.filter(pc.invert(table["keep"])) if "keep" in table.column_names else table
    return dict(zip(gone["id"].to_pylist(), gone["dup_of"].to_pylist()))


def test_planted_near_duplicates_found_and_nothing_else_removed():
    ids, texts, planted, negatives = CORPUS
    by_id = dict(zip(ids, texts))
    edited = [exact_jaccard(by_id[c], by_id[s], 5) for c, s in planted.items() if c.startswith("e")]
    assert 0.8 <= min(edited) < 0.9  # the edits leave real near-duplicates, not copies
    hard = [exact_jaccard(by_id[n], by_id[s], 5) for n in negatives for s in ids if s.startswith("d")]
    assert 0.3 < max(hard) < 0.7

    result = find_near_duplicates(ids, texts, NearDupConfig())
    assert _dropped(result) == planted  # every copy, each pointing at its source, and nothing else
    kept = dict(zip(result["id"].to_pylist(), result["keep"].to_pylist()))
    assert all(kept[n] for n in negatives) and kept["z000"] and kept["z001"]  # no words: never a duplicate
    clusters = dict(zip(result["id"].to_pylist(), result["cluster"].to_pylist()))
    assert clusters["x001"] == clusters["x002"] == clusters["d010"] == "d010"
    counts = near_dup_counts(result)
    assert counts[REASON] == len(planted) and counts["verified_pairs"] <= counts["candidate_pairs"]


def test_verification_keeps_documents_that_only_share_a_band():
    ids, texts, planted, negatives = CORPUS
    loose = dict(bands=32, threshold=0.8)  # 4 rows per band: pairs from Jaccard ~0.4 collide
    unverified = _dropped(find_near_duplicates(ids, texts, NearDupConfig(**loose, verify=False)))
    verified = find_near_duplicates(ids, texts, NearDupConfig(**loose))
    assert set(unverified) - set(planted) and set(unverified) - set(planted) <= set(negatives)
    assert _dropped(verified) == planted
    assert near_dup_counts(verified)["candidate_pairs"] > near_dup_counts(verified)["verified_pairs"]


def test_signatures_normalise_text_and_estimate_jaccard():
    cfg = NearDupConfig()
    sig = minhash_signatures(["The chest X-ray, today: NORMAL.", "the chest x ray today normal", "", None,
                              "Pleural effusion", "pleural effusions"], cfg)
    assert sig.dtype == np.uint32 and sig.shape == (6, 128)
    assert (sig[0] == sig[1]).all() and (sig[2] == EMPTY).all() and (sig[3] == EMPTY).all()
    assert (sig[4] != EMPTY).all() and (sig[4] == sig[5]).mean() < 0.1
    assert (sig[0] == minhash_signatures(pa.chunked_array([["x"], ["The chest X-ray, today: NORMAL."]]), cfg)[1]).all()

    ids, texts, planted, _ = CORPUS
    by_id = dict(zip(ids, texts))
    pairs = [(c, s) for c, s in planted.items() if c.startswith("e")]
    a = minhash_signatures([by_id[c] for c, _ in pairs], cfg)
    b = minhash_signatures([by_id[s] for _, s in pairs], cfg)
    truth = np.array([exact_jaccard(by_id[c], by_id[s], 5) for c, s in pairs])
    error = (a == b).mean(axis=1) - truth
    assert abs(error.mean()) < 0.02 and np.abs(error).max() < 4 * np.sqrt(0.15 * 0.85 / 128)
    keys = band_keys(np.vstack([a, b]), cfg)
    assert keys.dtype == np.uint64 and keys.shape == (2 * len(pairs), 16)


def test_same_result_whatever_the_batches_and_order():
    ids, texts, _, _ = CORPUS
    cfg = NearDupConfig(seed=3)
    whole = minhash_signatures(texts, cfg)
    parts = np.vstack([minhash_signatures(texts[i:i + 37], cfg) for i in range(0, len(texts), 37)])
    assert (whole == parts).all()
    order = random.Random(1).sample(range(len(ids)), len(ids))
    shuffled = find_near_duplicates([ids[i] for i in order], [texts[i] for i in order], cfg)
    assert _dropped(shuffled) == _dropped(find_near_duplicates(ids, texts, cfg))
    assert not (minhash_signatures(texts[:5], NearDupConfig(seed=4)) == whole[:5]).all()


def test_large_buckets_pair_with_their_smallest_id_only():
    ids, texts, planted, _ = CORPUS
    capped = find_near_duplicates(ids, texts, NearDupConfig(max_bucket=2))
    assert _dropped(capped) == planted  # d010 and its two copies: a bucket of 3, paired through d010
    assert near_dup_counts(capped)["oversized_buckets"] > 0


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="'bands'.*divide num_perm") as err:
        NearDupConfig(num_perm=128, bands=10)
    assert err.value.key == "bands"
    with pytest.raises(ConfigError) as err:
        load_config(NearDupConfig, overrides=["threshold=1.5"])
    assert err.value.key == "threshold"
    cfg = NearDupConfig()
    cfg.bands = 7
    with pytest.raises(ConfigError) as err:
        cfg.validate(prefix="dedup.near.")
    assert err.value.key == "dedup.near.bands"
    with pytest.raises(ConfigError) as err:
        NearDupConfig(max_bucket=1).validate()
    assert err.value.key == "max_bucket"


def test_minhash_stage_and_filter_account_for_every_record():
    ids, texts, planted, _ = CORPUS
    table = pa.table({"id": ids, "text": texts, "source": ["t"] * len(ids), "meta": ["{}"] * len(ids)})
    dropped = pa.table({"id": list(planted), "dup_of": list(planted.values())})
    kept, results = run_stages([MinHashStage(NearDupConfig()), NearDupFilter(dropped)], table)
    (_, signed), (_, filtered) = results
    assert signed.kept.column("minhash").type == pa.list_(pa.uint32(), 128)
    assert signed.counts == {"minhash_docs": len(ids), "minhash_no_words": 2}
    assert kept.num_rows + filtered.dropped.num_rows == len(ids) and "minhash" not in kept.column_names
    assert set(filtered.dropped["reason"].to_pylist()) == {REASON}
    assert dict(zip(filtered.dropped["id"].to_pylist(), filtered.dropped["dup_of"].to_pylist())) == planted


def test_ray_matches_local_from_text_and_from_stored_signatures(ray_local):
    import ray.data

    ids, texts, planted, _ = CORPUS
    cfg = NearDupConfig(max_bucket=2)
    local = find_near_duplicates(ids, texts, cfg)
    table = pa.table({"id": ids, "text": texts})
    blocks = [table.slice(i, 50) for i in range(0, table.num_rows, 50)]
    from_text = near_duplicates_ray(ray.data.from_arrow(blocks), cfg, num_partitions=2, batch_size=40)
    assert _dropped(from_text) == _dropped(local) == planted
    assert from_text["id"].to_pylist() == sorted(planted)
    assert near_dup_counts(from_text) == near_dup_counts(local)

    stage = MinHashStage(cfg)  # signatures made while streaming, grouped later from the stored column
    signed = [stage(block).kept.select(["id", "minhash"]) for block in blocks[::-1]]
    from_signatures = near_duplicates_ray(ray.data.from_arrow(signed), cfg, num_partitions=3, batch_size=64)
    assert from_signatures.equals(from_text.replace_schema_metadata(from_signatures.schema.metadata))
    with pytest.raises(ConfigError) as err:
        near_duplicates_ray(ray.data.from_arrow(signed), NearDupConfig(seed=9), num_partitions=2)
    assert err.value.key == "seed"


def test_compare_with_datasketch_reports_both_sides():
    ids, texts, planted, _ = CORPUS
    index = {i: k for k, i in enumerate(ids)}
    report = compare_with_datasketch(texts, NearDupConfig(), [(index[c], index[s]) for c, s in planted.items()])
    assert report["documents"] == len(texts) and report["tokens"] > 30_000
    assert report["medray"]["signatures"]["mb_per_s_per_core"] > 0
    assert report["speedup"]["signatures"] > 1.0
    assert report["pairs"]["medray"] >= len(planted) - 2 and report["pairs"]["agreement"] > 0.8
    assert report["planted"]["medray_found"] == len(planted)
