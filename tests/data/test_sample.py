"""Tree-guided sampling: counts, the plan, the stage and the coverage report."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medray.data.sample import (
    SAMPLED_OUT,
    SampleConfig,
    SampleStage,
    SamplingPlan,
    plan_from_batches,
    record_uniforms,
    solve_scale,
)
from medray.data.sample_report import sampling_report
from medray.data.tree_counts import (
    ALL_ROW,
    UNTAGGED_ROW,
    AncestorIndex,
    merge_counts,
    node_counts,
    node_rows,
)
from medray.errors import ConfigError, MedrayError


def tagged(rows: list[tuple[str, list[str], int]], **extra) -> pa.Table:
    ids, nodes, tokens = zip(*rows) if rows else ((), (), ())
    columns = {"id": pa.array(ids, pa.string()), "text": pa.array(["x"] * len(ids), pa.string()),
               "nodes": pa.array(nodes, pa.list_(pa.string())), "n_tokens": pa.array(tokens, pa.int64())}
    return pa.table({**columns, **{k: pa.array(v) for k, v in extra.items()}})


def as_dict(counts: pa.Table) -> dict[str, tuple[int, int]]:
    return {r["node_id"]: (r["docs"], r["tokens"]) for r in counts.to_pylist()}


def zipf_corpus(n_docs: int = 20_000, n_nodes: int = 300, seed: int = 7) -> pa.Table:
    """A skewed tagged corpus: node ranks drawn with p ~ 1/rank^1.2, 0-4 nodes per document."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, n_nodes + 1, dtype=np.float64) ** -1.2
    p /= p.sum()
    k = rng.integers(0, 5, n_docs)
    offsets = np.zeros(n_docs + 1, np.int32)
    np.cumsum(k, out=offsets[1:])
    names = pa.array([f"Z:{i:04d}" for i in range(n_nodes)])
    nodes = pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(rng.choice(n_nodes, size=int(k.sum()), p=p))))
    ids = pa.array([f"zipf.jsonl:{i}" for i in range(n_docs)])
    return pa.table({"id": ids, "nodes": nodes, "n_tokens": pa.array(rng.integers(50, 1000, n_docs))})


def splits(table: pa.Table, sizes: list[int]) -> list[pa.Table]:
    out, start = [], 0
    for size in sizes:
        out.append(table.slice(start, size))
        start += size
    out.append(table.slice(start))
    return out


def run(plan: SamplingPlan, batches: list[pa.Table]) -> tuple[pa.Table, pa.Table]:
    stage = SampleStage(plan)
    results = [stage(b) for b in batches]
    return pa.concat_tables([r.kept for r in results]), pa.concat_tables([r.dropped for r in results])


@pytest.fixture(scope="module")
def zipf() -> pa.Table:
    return zipf_corpus()


# ---- counts ---------------------------------------------------------------------


def test_node_counts_by_hand():
    table = tagged([("a", ["A", "B"], 10), ("b", ["A", "A"], 20), ("c", [], 30), ("d", ["C", None], 5)])
    assert as_dict(node_counts(table)) == {
        "A": (2, 30), "B": (1, 10), "C": (1, 5),  # "A" twice in one document counts once; null entries are skipped
        ALL_ROW: (4, 65), UNTAGGED_ROW: (1, 30),
    }


def test_counts_after_sampling_count_distinct_docs_and_every_copy():
    sampled = tagged([("a", ["A"], 10), ("a", ["A"], 10), ("a", ["A"], 10), ("b", ["A", "B"], 4), ("c", [], 7), ("c", [], 7)],
                     copy=pa.array([0, 1, 2, 0, 0, 1], pa.int32()))
    assert as_dict(node_counts(sampled)) == {"A": (2, 34), "B": (1, 4), ALL_ROW: (3, 48), UNTAGGED_ROW: (1, 14)}


def test_merge_counts_is_independent_of_the_split(zipf):
    whole = merge_counts([node_counts(zipf)])
    for sizes in ([1000] * 19, [1, 2, 3, 9000, 7], [13_333]):
        assert merge_counts([node_counts(b) for b in splits(zipf, sizes)]).equals(whole)
    assert whole.column("node_id").to_pylist() == sorted(whole.column("node_id").to_pylist())
    assert as_dict(whole)[ALL_ROW] == (zipf.num_rows, int(pc.sum(zipf["n_tokens"]).as_py()))
    empty = merge_counts([])
    assert empty.num_rows == 0 and empty.column_names == ["node_id", "docs", "tokens"]
    assert as_dict(node_counts(zipf.slice(0, 0))) == {ALL_ROW: (0, 0), UNTAGGED_ROW: (0, 0)}


def test_ancestors_lift_parents_but_not_root_or_axes(tiny_tree):
    table = tagged([("a", ["D:j90", "T:pe"], 10), ("b", ["D:j93", "D:j90"], 20), ("c", ["X:not_in_tree"], 40)])
    counts = as_dict(node_counts(table, AncestorIndex(tiny_tree)))
    assert counts == {"D:j90": (2, 30), "T:pe": (1, 10), "D:j93": (1, 20), "X:not_in_tree": (1, 40),
                      "D:pleura": (2, 30), "D:resp": (2, 30),  # a document naming two children counts once
                      ALL_ROW: (3, 70), UNTAGGED_ROW: (0, 0)}
    with pytest.raises(ConfigError, match="sample.ancestors"):
        SamplingPlan.from_counts(merge_counts([node_counts(table)]), SampleConfig(ancestors=True))


def test_ancestor_plan_uses_the_expanded_node_set(tiny_tree):
    # D:pleura is named alone by one document but is the parent of everything else: with ancestors on it is common.
    table = tagged([(f"j90:{i}", ["D:j90"], 10) for i in range(8)] + [("pleura", ["D:pleura"], 10)])
    cfg = SampleConfig(temperature=2.0, ancestors=True)
    plan = plan_from_batches([table], cfg, tiny_tree)
    lifted = dict(zip(table["id"].to_pylist(), plan.raw_factors(table)))
    flat = plan_from_batches([table], SampleConfig(temperature=2.0), tiny_tree)
    named = dict(zip(table["id"].to_pylist(), flat.raw_factors(table)))
    # named only: pleura has 10 of 90 tokens, j90 80 -> m = (10/80)^(-1/2) = sqrt(8), rarest, lifted most
    assert named["pleura"] == pytest.approx(math.sqrt(8)) and named["j90:0"] == pytest.approx(1.0)
    # with ancestors pleura and resp hold all 90 tokens: the pleura document is the common one now
    assert lifted["pleura"] == pytest.approx(1.0) and lifted["j90:0"] == pytest.approx(math.sqrt(90 / 80))


# ---- the plan -------------------------------------------------------------------


def test_solve_scale_by_hand():
    # min(4s, 2) + s + s = 3 -> s = 0.5 (the first item reaches the cap exactly)
    assert solve_scale(np.array([4.0, 1.0, 1.0]), np.array([1, 1, 1]), 2, 1.0) == pytest.approx(0.5)
    # uncapped: 10 * (2s) + 30 * s = 0.5 * 40 -> s = 0.4
    assert solve_scale(np.array([2.0, 1.0]), np.array([10, 30]), 4, 0.5) == pytest.approx(0.4)
    # cap binds on the heavy item: min(3s, 1) * 30 + 1s * 10 = 40 -> s = 1
    assert solve_scale(np.array([3.0, 1.0]), np.array([30, 10]), 1, 1.0) == pytest.approx(1.0)


def test_multipliers_and_combine_by_hand():
    # tokens A = 90, B = 10 -> p = .9, .1; T = 2: m = (p / .9)^(1/2 - 1) -> m_A = 1, m_B = 3
    table = tagged([("a", ["A"], 80), ("ab", ["A", "B"], 10), ("none", [], 10)])
    counts = merge_counts([node_counts(table)])
    by_max = SamplingPlan.from_counts(counts, SampleConfig(temperature=2.0))
    by_mean = SamplingPlan.from_counts(counts, SampleConfig(temperature=2.0, combine="mean"))
    assert dict(zip(by_max.node_ids.to_pylist(), by_max.multipliers)) == pytest.approx({"A": 1.0, "B": 3.0})
    assert by_max.raw_factors(table)[:2] == pytest.approx([1.0, 3.0]) and np.isnan(by_max.raw_factors(table)[2])
    assert by_mean.raw_factors(table)[:2] == pytest.approx([1.0, 2.0])
    # calibrated: s * (80 * 1 + 10 * 3) = 90 tagged tokens -> s = 9/11; the untagged document keeps target = 1
    plan = by_max.calibrate(pa.concat_tables([by_max.profile(table)]))
    assert plan.calibrated and plan.scale == pytest.approx(9 / 11, rel=1e-3)
    assert plan.factors(table) == pytest.approx([9 / 11, 27 / 11, 1.0], rel=1e-3)


def test_temperature_one_and_target_one_keep_everything_once(zipf):
    plan = plan_from_batches([zipf], SampleConfig(temperature=1.0, target=1.0))
    kept, dropped = run(plan, [zipf])
    assert dropped.num_rows == 0
    assert kept["id"].equals(zipf["id"]) and set(kept["copy"].to_pylist()) == {0}


def test_expected_output_matches_target_and_repeats_are_capped(zipf):
    tokens = zipf["n_tokens"].to_numpy()
    for target in (1.0, 0.6):
        cfg = SampleConfig(temperature=10.0, max_repeat=3, target=target, seed=1)
        plan = plan_from_batches(splits(zipf, [5000] * 3), cfg)
        assert (plan.factors(zipf) * tokens).sum() / tokens.sum() == pytest.approx(target, rel=1e-3)
        kept, dropped = run(plan, [zipf])
        assert pc.sum(kept["n_tokens"]).as_py() / tokens.sum() == pytest.approx(target, rel=0.03)
        per_doc = kept.group_by("id").aggregate([("copy", "count")])["copy_count"].to_numpy()
        assert per_doc.max() == 3 and kept["copy"].to_numpy().max() == 2  # the cap is reached and never passed
        assert len(per_doc) + dropped.num_rows == zipf.num_rows
        assert set(dropped["reason"].to_pylist()) == {SAMPLED_OUT}
    uncalibrated = SamplingPlan.from_counts(merge_counts([node_counts(zipf)]), cfg)
    assert not uncalibrated.calibrated and plan.calibrated


def test_realised_copies_follow_the_factors(zipf):
    plan = plan_from_batches([zipf], SampleConfig(temperature=3.0))
    f, r = plan.factors(zipf), plan.copies(zipf)
    assert np.all((r == np.floor(f)) | (r == np.floor(f) + 1))
    assert r.mean() == pytest.approx(f.mean(), rel=0.02)
    u = record_uniforms(zipf["id"], 0)
    assert u.min() >= 0 and u.max() < 1 and u.mean() == pytest.approx(0.5, abs=0.01)
    assert np.histogram(u, bins=10, range=(0, 1))[0] == pytest.approx([zipf.num_rows / 10] * 10, rel=0.08)
    assert np.array_equal(record_uniforms(pa.chunked_array([zipf["id"].combine_chunks()[:5], zipf["id"].combine_chunks()[5:]]), 0), u)
    assert np.mean(record_uniforms(zipf["id"], 1) == u) < 0.001  # another seed, other draws


def test_output_is_independent_of_batch_and_shard_layout(zipf):
    cfg = SampleConfig(temperature=4.0, seed=3)
    plan_a = plan_from_batches([zipf], cfg)
    plan_b = plan_from_batches(splits(zipf, [1, 4999, 3000, 7]), cfg)
    assert plan_a.scale == plan_b.scale and np.array_equal(plan_a.multipliers, plan_b.multipliers)
    kept_a, dropped_a = run(plan_a, [zipf])
    kept_b, dropped_b = run(plan_b, splits(zipf, [777] * 20))
    kept_c, dropped_c = run(pickle.loads(pickle.dumps(plan_a)), splits(zipf, [10_000, 1]))
    assert kept_a.equals(kept_b) and kept_a.equals(kept_c)
    assert dropped_a.equals(dropped_b) and dropped_a.equals(dropped_c)
    assert dropped_a.num_rows > 1000 and pc.max(kept_a["copy"]).as_py() >= 1


def test_stage_output_and_counters(zipf):
    plan = plan_from_batches([zipf], SampleConfig(temperature=3.0))
    result = SampleStage(plan, SampleConfig(temperature=3.0))(zipf)
    r = plan.copies(zipf)
    assert result.kept.num_rows == r.sum() and result.dropped.num_rows == (r == 0).sum()
    assert result.reason_counts() == {SAMPLED_OUT: int((r == 0).sum())}
    assert result.counts == {"copies_added": int(r.sum() - (r > 0).sum()), "docs_repeated": int((r > 1).sum())}
    assert result.kept.num_rows - result.counts["copies_added"] + result.dropped.num_rows == zipf.num_rows
    first = result.kept.filter(pc.equal(result.kept["copy"], 0))
    assert first["id"].to_pylist() == zipf.filter(pa.array(r > 0))["id"].to_pylist()
    assert as_dict(node_counts(result.kept))[ALL_ROW][0] == first.num_rows
    with pytest.raises(MedrayError, match="different sample config"):
        SampleStage(plan, SampleConfig(temperature=2.0))
    with pytest.raises(MedrayError, match="already carry"):
        SampleStage(plan)(result.kept)
    empty = SampleStage(plan)(zipf.slice(0, 0))
    assert empty.kept.num_rows == 0 and "copy" in empty.kept.column_names


def test_errors_name_the_column_or_key(zipf):
    with pytest.raises(MedrayError, match="'nodes'"):
        node_counts(zipf.drop(["nodes"]))
    with pytest.raises(MedrayError, match="n_tokens, n_words"):
        node_counts(zipf.drop(["n_tokens"]))
    words = zipf.rename_columns(["id", "nodes", "n_words"])
    assert merge_counts([node_counts(words)]).equals(merge_counts([node_counts(zipf)]))
    plan = plan_from_batches([zipf], SampleConfig())
    with pytest.raises(MedrayError, match="'id' has nulls"):
        plan.copies(tagged([(None, ["A"], 3)]))
    for kwargs, key in (({"temperature": 0}, "sample.temperature"), ({"max_repeat": 0}, "sample.max_repeat"),
                        ({"target": 5.0}, "sample.target"), ({"combine": "min"}, "sample.combine"),
                        ({"tail_quantile": 1.5}, "sample.tail_quantile")):
        with pytest.raises(ConfigError, match=key):
            SampleConfig(**kwargs)


# ---- the report -----------------------------------------------------------------


def test_report_by_hand():
    before = node_counts(tagged([("d1", ["A"], 40), ("d2", ["A", "B"], 20), ("d3", ["C"], 10), ("d4", [], 30)]))
    after = node_counts(tagged([("d1", ["A"], 40), ("d3", ["C"], 10), ("d3", ["C"], 10), ("d3", ["C"], 10), ("d4", [], 30)],
                               copy=pa.array([0, 0, 1, 2, 0], pa.int32())))
    cfg = SampleConfig(tail_quantile=0.5, min_docs_k=1, backfill_min_docs=2)
    report = sampling_report(before, after, cfg)

    def h(*p):
        return -sum(x * math.log2(x) for x in p)

    # node token mass before: A 60, B 20, C 10; after: A 40, C 30. Tail: floor(0.5 * 3) = 1 node, the one
    # with fewest docs (B and C tie at 1; C has fewer tokens). Head: A.
    assert report["tail_nodes"] == 1 and report["head_node"] == "A" and report["mass"] == "tokens"
    assert report["before"] == pytest.approx({
        "docs": 4, "tokens": 100, "untagged_docs": 1, "untagged_tokens": 30, "nodes_covered": 3, "nodes_with_k_docs": 3,
        "entropy_bits": h(6 / 9, 2 / 9, 1 / 9), "entropy_normalised": h(6 / 9, 2 / 9, 1 / 9) / math.log2(3),
        "tail_token_share": 1 / 9, "head_token_share": 6 / 9})
    assert report["after"] == pytest.approx({
        "docs": 3, "tokens": 100, "untagged_docs": 1, "untagged_tokens": 30, "nodes_covered": 2, "nodes_with_k_docs": 2,
        "entropy_bits": h(4 / 7, 3 / 7), "entropy_normalised": h(4 / 7, 3 / 7) / math.log2(3),
        "tail_token_share": 3 / 7, "head_token_share": 4 / 7})
    assert report["output_ratio"] == 1.0
    assert [(b["node_id"], b["need"], b["docs_before"], b["docs_after"], b["tokens_after"]) for b in report["backfill"]] == [
        ("B", 2, 1, 0, 0), ("A", 1, 2, 1, 40), ("C", 1, 1, 1, 30)]
    assert report["backfill_total"] == 3 and report["backfill_unmentioned"] == 0
    assert json.loads(json.dumps(report)) == report  # plain data, ready for MLflow


def test_sampling_flattens_a_skewed_corpus(zipf):
    before = merge_counts([node_counts(zipf)])
    reports = {}
    for t in (0.5, 1.0, 3.0):
        cfg = SampleConfig(temperature=t, max_repeat=4, min_docs_k=5)
        kept, _ = run(plan_from_batches([zipf], cfg), splits(zipf, [4000] * 4))
        reports[t] = sampling_report(before, merge_counts([node_counts(kept)]), cfg)
    hot, natural, cold = reports[3.0], reports[1.0], reports[0.5]
    b, a = hot["before"], hot["after"]
    assert a["entropy_bits"] > b["entropy_bits"] + 0.3 and a["entropy_normalised"] > b["entropy_normalised"]
    assert a["tail_token_share"] > 1.5 * b["tail_token_share"]
    assert a["head_token_share"] < 0.85 * b["head_token_share"]
    assert a["tokens"] == pytest.approx(b["tokens"], rel=0.03)
    assert natural["after"]["entropy_bits"] == pytest.approx(natural["before"]["entropy_bits"], abs=1e-9)
    assert cold["after"]["tail_token_share"] < cold["before"]["tail_token_share"]  # T < 1 sharpens toward the head
    assert a["nodes_covered"] <= b["nodes_covered"] and a["nodes_with_k_docs"] <= b["nodes_with_k_docs"]


def test_backfill_lists_the_planted_sparse_nodes_with_tree_names(tiny_tree):
    rows = [(f"pe:{i}", ["T:pe", "T:lung"], 100) for i in range(300)] + [(f"j90:{i}", ["D:j90"], 100) for i in range(60)]
    rows += [("ptx:0", ["T:ptx", "T:pe"], 80), ("ptx:1", ["T:ptx"], 90), ("j93:0", ["D:j93"], 50), ("none", [], 40)]
    corpus = tagged(rows)
    cfg = SampleConfig(temperature=3.0, backfill_min_docs=5, backfill_limit=0)
    kept, _ = run(plan_from_batches([corpus], cfg, tiny_tree), [corpus])
    report = sampling_report(node_counts(corpus), node_counts(kept), cfg, tree=tiny_tree)
    listed = {b["node_id"]: b for b in report["backfill"]}
    assert listed["T:ptx"] == {"node_id": "T:ptx", "need": 3, "docs_before": 2, "docs_after": 2, "tokens_after": 4 * 80 + 4 * 90,
                               "name": "Pneumothorax", "axis": "symptom", "level": 2}
    assert listed["D:j93"] == {"node_id": "D:j93", "need": 4, "docs_before": 1, "docs_after": 1, "tokens_after": 4 * 50,
                               "name": "Spontaneous pneumothorax", "axis": "disease", "level": 4}
    unmentioned = ["T:cm", "T:scol", "D:resp", "D:pleura"]
    # named-but-thin nodes first (neediest first), then the unnamed ones (shallowest first)
    assert [b["node_id"] for b in report["backfill"]] == ["D:j93", "T:ptx", "D:resp", "T:cm", "T:scol", "D:pleura"]
    assert all(listed[n]["need"] == 5 and listed[n]["docs_before"] == 0 for n in unmentioned)
    assert listed["T:cm"]["name"] == "Cardiomegaly" and report["backfill_unmentioned"] == 4
    assert not {"T:pe", "T:lung", "D:j90", "MET:root", "MET:symptom"} & listed.keys()
    assert report["after"]["tail_token_share"] > report["before"]["tail_token_share"]
    assert len(sampling_report(node_counts(corpus), node_counts(kept), SampleConfig(backfill_limit=2), tree=tiny_tree)["backfill"]) == 2
    assert node_rows(node_counts(corpus)).num_rows == 5
