"""MedTrim evaluation: Precision@R, relevance, AUC/ACC/F1 by hand, and a tiny model on phantom pairs."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medray.errors import ConfigError
from medray.medtrim import metrics
from medray.medtrim.evaluate import evaluate_model, flat_metrics, print_evaluation, study_labels
from medray.medtrim.metrics import (
    best_threshold,
    binary_scores,
    chance_precision,
    labels_from_entities,
    labels_from_json,
    precision_at_r,
    relevance,
    relevance_keys,
    retrieval_report,
    roc_auc,
    zero_shot_report,
)

# ---- Precision@R on a 3 x 4 toy -----------------------------------------------------------------
#
# gallery g0=(1,0) g1=(0,1) g2=(1,1)/sqrt2 g3=(-1,0); cosine similarities (s = 1/sqrt2 = 0.707):
#   q0=(1,0):  g0 1,  g1 0,  g2 s,  g3 -1   -> order g0, g2, g1, g3
#   q1=(0,1):  g0 0,  g1 1,  g2 s,  g3 0    -> order g1, g2, then g0 and g3 TIED at 0
#   q2=(1,1):  g0 s,  g1 s,  g2 1,  g3 -s   -> order g2, then g0 and g1 TIED at s, g3
# relevant: q0 {g0, g3}, q1 {g0, g2}, q2 {g1}
# A tie shares its places by its share of relevant items (the expected precision of a random
# order among the tied):
#   P@1 = (1 + 0 + 0) / 3                                             = 1/3
#   P@2 = (1/2 + 1/2 + (0 + 1 * 1/2)/2) / 3 = (0.5 + 0.5 + 0.25) / 3   = 5/12
#   P@3 = (1/3 + (1 + 1 * 1/2)/3 + 1/3) / 3 = (1/3 + 1/2 + 1/3) / 3    = 7/18
#   P@10 clamps to the 4 gallery items: (2/4 + 2/4 + 1/4) / 3         = 5/12 = chance
QUERIES = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
GALLERY = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
RELEVANT = np.array([[1, 0, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
EXPECTED = {1: 1 / 3, 2: 5 / 12, 3: 7 / 18, 10: 5 / 12}


def test_precision_at_r_matches_the_hand_computation():
    got = precision_at_r(QUERIES, GALLERY, RELEVANT, ranks=(1, 2, 3, 10))
    assert got == pytest.approx(EXPECTED, abs=1e-12)
    assert chance_precision(RELEVANT, ranks=(1, 10)) == pytest.approx({1: 5 / 12, 10: 5 / 12})


def test_precision_at_r_is_independent_of_chunking_scale_and_gallery_order():
    one_row_at_a_time = precision_at_r(QUERIES * 3.0, GALLERY, RELEVANT, (1, 2, 3, 10), max_elements=1)
    assert one_row_at_a_time == pytest.approx(EXPECTED, abs=1e-12)
    order = [3, 1, 2, 0]  # ties are shared, not broken by position
    permuted = precision_at_r(QUERIES, GALLERY[order], RELEVANT[:, order], (1, 2, 3, 10))
    assert permuted == pytest.approx(EXPECTED, abs=1e-12)


def test_collapsed_embeddings_score_exactly_chance():
    rng = np.random.default_rng(0)
    relevant = rng.uniform(size=(7, 30)) < 0.3
    flat = precision_at_r(np.ones((7, 4)), np.ones((30, 4)), relevant, ranks=(1, 5, 50))
    assert flat == pytest.approx(chance_precision(relevant, ranks=(1, 5, 50)), abs=1e-12)
    assert flat[1] == pytest.approx(relevant.sum() / (7 * 30))


def test_precision_at_r_rejects_mismatched_shapes_and_bad_values():
    with pytest.raises(ValueError, match="relevance is 3 x 4"):
        precision_at_r(QUERIES[:2], GALLERY, RELEVANT)
    with pytest.raises(ValueError, match="NaN"):
        precision_at_r(np.full((3, 2), np.nan), GALLERY, RELEVANT)
    with pytest.raises(ValueError, match="positive"):
        precision_at_r(QUERIES, GALLERY, RELEVANT, ranks=(0,))


# ---- relevance ----------------------------------------------------------------------------------

EFF_SMALL_LEFT, CARDIO_MILD = ("pleural_effusion", "small", "left"), ("cardiomegaly", "mild", None)
STUDIES = [
    frozenset(),                                                      # 0 normal
    frozenset(),                                                      # 1 normal
    frozenset([EFF_SMALL_LEFT, CARDIO_MILD]),                         # 2
    frozenset([CARDIO_MILD, EFF_SMALL_LEFT]),                         # 3 = 2, listed the other way
    frozenset([("pleural_effusion", "large", "left"), CARDIO_MILD]),  # 4 severity differs from 2
    frozenset([("pleural_effusion", "small", "right"), CARDIO_MILD]),  # 5 side differs from 2
    frozenset([EFF_SMALL_LEFT]),                                      # 6 a subset of 2
]


def _groups(matrix: np.ndarray) -> list[set[int]]:
    return [set(np.flatnonzero(row).tolist()) for row in matrix]


def test_relevance_disease_mode_compares_class_sets_and_normal_matches_normal():
    groups = _groups(relevance(STUDIES, STUDIES, "disease"))
    assert groups[0] == groups[1] == {0, 1}
    assert groups[2] == groups[3] == groups[4] == groups[5] == {2, 3, 4, 5}
    assert groups[6] == {6}


def test_relevance_fine_mode_tells_severity_and_side_apart():
    groups = _groups(relevance(STUDIES, STUDIES, "fine"))
    assert groups[0] == {0, 1}
    assert groups[2] == groups[3] == {2, 3}
    assert groups[4] == {4} and groups[5] == {5} and groups[6] == {6}
    q, g = relevance_keys(STUDIES[:3], STUDIES, "fine")
    assert np.array_equal(q[:, None] == g[None, :], relevance(STUDIES[:3], STUDIES, "fine"))
    with pytest.raises(ValueError, match="mode"):
        relevance(STUDIES, STUDIES, "coarse")


def test_labels_from_json_counts_uncertain_findings_and_ignores_negated():
    record = {"study_id": "1", "findings": [
        {"name": "pleural_effusion", "severity": "small", "side": "right", "certainty": "uncertain", "zone": None},
        {"name": "cardiomegaly", "severity": "mild", "side": None, "certainty": "present", "zone": None}],
        "negated": ["pneumothorax"]}
    assert labels_from_json(json.dumps(record)) == {("pleural_effusion", "small", "right"), CARDIO_MILD}
    assert labels_from_json({"findings": [], "negated": ["edema"]}) == frozenset()


def test_labels_from_entities_reads_severity_and_side_from_ober_descriptors():
    entities = {"pleural_effusion": {"adjectives": ["small", "layering"], "directions": ["left"]},
                "atelectasis": {"adjectives": ["mild", "moderate", "lower"], "directions": ["left", "right"]},
                "cardiomegaly": {"adjectives": [], "directions": []}}
    assert labels_from_entities(json.dumps(entities)) == {
        ("pleural_effusion", "small", "left"), ("atelectasis", "moderate", "bilateral"), ("cardiomegaly", None, None)}
    assert labels_from_entities({"no_finding": {"adjectives": [], "directions": []}}) == frozenset()


# ---- AUC, ACC, F1 -------------------------------------------------------------------------------

def _pairwise_auc(scores, targets) -> float:
    pos, neg = scores[targets], scores[~targets]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def test_auc_by_hand_with_a_tie():
    # positives 0.35, 0.8, 0.4; negatives 0.1, 0.4. Ordered pairs: 0.35>0.1, 0.35<0.4, 0.8>0.1,
    # 0.8>0.4, 0.4>0.1, 0.4=0.4 (half) -> 4.5 / 6 = 0.75. By ranks: 0.1:1, 0.35:2, 0.4:3.5, 0.4:3.5,
    # 0.8:5; positives 2 + 5 + 3.5 = 10.5; (10.5 - 3*4/2) / (3*2) = 0.75.
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    targets = np.array([0, 0, 1, 1, 1], dtype=bool)
    assert roc_auc(scores, targets) == pytest.approx(0.75)
    rng = np.random.default_rng(3)
    many, labels = rng.integers(0, 5, 40).astype(float), rng.uniform(size=40) < 0.4  # many ties
    assert roc_auc(many, labels) == pytest.approx(_pairwise_auc(many, labels))
    assert roc_auc(scores, np.ones(5, bool)) is None


def test_acc_f1_and_best_threshold_by_hand():
    # TP 2 (rows 0, 4), FP 1 (row 1), FN 1 (row 3), TN 1 (row 2): ACC 3/5, F1 = 4 / (4 + 1 + 1)
    got = binary_scores(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1]))
    assert got == pytest.approx({"acc": 0.6, "f1": 2 / 3})
    assert binary_scores(np.zeros(3), np.zeros(3)) == {"acc": 1.0, "f1": None}
    # cuts -1.3 (all positive, F1 6/7), -0.2 (top 3, F1 1), 0.05 (4/5), 0.35 (1/2): -0.2 wins
    assert best_threshold(np.array([-0.3, -0.1, 0.2, 0.5]), np.array([0, 1, 1, 1])) == pytest.approx(-0.2)


def test_zero_shot_report_per_class_and_macro():
    scores = np.array([[0.3, -0.2], [-0.1, 0.4], [0.2, 0.1], [-0.4, -0.3]])
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    out = zero_shot_report(scores, targets, ["a", "b"])
    # class a: predicted rows 0, 2 (score > 0) = targets -> ACC 1, F1 1, AUC 1
    assert out["a"] == {"acc": 1.0, "f1": 1.0, "auc": 1.0, "threshold": 0.0, "positives": 2}
    # class b: predicted rows 1, 2 = targets -> perfect too; pairs (0.4,-0.2),(0.4,-0.3),(0.1,..) all right
    assert out["b"]["acc"] == 1.0 and out["b"]["auc"] == 1.0
    shifted = zero_shot_report(scores, targets, ["a", "b"], thresholds={"b": 0.2})
    # b at 0.2: predicts only row 1 -> TP 1, FN 1 -> ACC 3/4, F1 2/3; AUC does not move
    assert shifted["b"]["acc"] == 0.75 and shifted["b"]["f1"] == pytest.approx(2 / 3) and shifted["b"]["auc"] == 1.0
    assert shifted["macro"] == pytest.approx({"acc": 0.875, "auc": 1.0, "f1": (1 + 2 / 3) / 2})


# ---- perfect and random embeddings on phantom labels --------------------------------------------

def _phantom_labels(n: int) -> list[frozenset]:
    from medray.mm.phantom import sample_findings

    out = []
    for i in range(n):
        findings = sample_findings(np.random.default_rng([7, i]))
        out.append(frozenset((f.name, f.severity, f.side) for f in findings))
    return out


def test_perfect_embeddings_score_one_and_random_ones_score_chance():
    labels = _phantom_labels(1000)
    q, _ = relevance_keys(labels, labels, "fine")
    perfect = np.eye(q.max() + 1)[q]  # one direction per fine label set
    report = retrieval_report(perfect, perfect, labels)
    for direction in ("i2t", "t2i"):
        assert report[direction]["fine"][1] == 1.0 and report[direction]["disease"][1] == 1.0
    noise = np.random.default_rng(1).normal(size=(1000, 32))
    random_report = retrieval_report(noise, np.random.default_rng(2).normal(size=(1000, 32)), labels)
    for mode in ("disease", "fine"):
        chance = random_report["chance"][mode][10]
        assert 0.0 < chance < 0.2
        for r in (10, 20, 50):
            assert abs(random_report["i2t"][mode][r] - chance) < 0.03
    assert report["chance"] == random_report["chance"]


# ---- evaluate_model on phantom pairs with a tiny model ------------------------------------------

@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from medray.medtrim.model import MedTrimModel, MedTrimModelConfig
    from medray.mm.pairs import read_pairs
    from medray.mm.phantom import write_phantoms

    root = str(tmp_path_factory.mktemp("phantom"))
    write_phantoms(60, root, seed=3, size=64, splits=(0.5, 0.0, 0.5))
    pairs, rejects = read_pairs(root)
    assert pairs.num_rows == 60 and rejects.num_rows == 0
    return pairs, MedTrimModel(MedTrimModelConfig.tiny(image_size=64, proj_dim=16))


def _in_unit_interval(value) -> bool:
    return value is None or (0.0 <= value <= 1.0 and not math.isnan(value))


def test_evaluate_model_on_phantom_pairs(phantom, capsys):
    pairs, model = phantom
    model.train()
    result = evaluate_model(model, pairs, split="test", batch_size=16)
    assert model.training  # handed back in the mode it came in
    assert set(result) >= {"i2t", "t2i", "chance", "zero_shot", "best_thresholds", "n", "rejects"}
    assert result["n"] == 30 and result["rejects"] == [] and result["labels_source"] == "labels"
    test_rows = pairs.filter(pc.equal(pairs.column("split"), "test")).column("labels").to_pylist()
    labels = [labels_from_json(x) for x in test_rows]
    for mode in ("disease", "fine"):
        assert result["chance"][mode] == pytest.approx(chance_precision(relevance(labels, labels, mode)))
        for direction in ("i2t", "t2i"):
            assert list(result[direction][mode]) == [1, 10, 20, 50]
            assert all(_in_unit_interval(v) for v in result[direction][mode].values())
    zero = result["zero_shot"]
    present = {name for study in labels for name, _, _ in study}
    assert set(zero) - {"macro"} == present == set(result["best_thresholds"])
    assert all(_in_unit_interval(v[k]) for v in zero.values() for k in ("acc", "auc", "f1"))
    assert sum(v["positives"] for c, v in zero.items() if c != "macro") == sum(len({n for n, _, _ in s}) for s in labels)
    flat = flat_metrics(result)
    assert flat["i2t_fine_p10"] == result["i2t"]["fine"][10] and "zero_shot_auc" in flat
    print_evaluation(result)
    shown = capsys.readouterr().out
    assert "P@10" in shown and "zero-shot" in shown and "macro" in shown
    assert f"{result['i2t']['fine'][10]:.3f}" in shown


def test_undecodable_image_and_empty_text_go_to_rejects(phantom, tmp_path):
    pairs, model = phantom
    rows = pairs.filter(pc.equal(pairs.column("split"), "test")).to_pylist()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    rows[0]["image_path"] = str(broken)
    rows[1]["findings"] = "   "
    result = evaluate_model(model, pa.Table.from_pylist(rows, pairs.schema), batch_size=8)
    reasons = {r["id"]: r["reason"] for r in result["rejects"]}
    assert reasons == {rows[0]["id"]: "image_decode", rows[1]["id"]: "empty_report"}
    assert result["n"] == 28 and result["rejects"][0]["detail"]


def test_rows_without_labels_fall_back_to_ober(phantom):
    pairs, _ = phantom
    rows = pairs.slice(0, 20).to_pylist()
    truth = [labels_from_json(r["labels"]) for r in rows]
    for r in rows:
        r["labels"] = None
    read, rejects, source = study_labels(rows)
    assert source == "ober" and rejects == []
    agree = np.mean([metrics.label_key(a, "disease") == metrics.label_key(b, "disease") for a, b in zip(read, truth)])
    assert agree >= 0.8  # OBER reads the phantom reports' classes nearly always


def test_bad_arguments_fail_before_any_work(phantom):
    pairs, model = phantom
    with pytest.raises(ConfigError, match="'split'.*splits present: test, train"):
        evaluate_model(model, pairs, split="validate")
    with pytest.raises(ConfigError, match="'pairs'.*image_path"):
        evaluate_model(model, pairs.drop_columns(["image_path"]))
    with pytest.raises(ConfigError, match="'ranks'"):
        evaluate_model(model, pairs, ranks=(0, 10))


def test_cli_evaluates_a_saved_model_on_a_pairs_folder(phantom, tmp_path):
    from typer.testing import CliRunner

    from medray.cli import app
    from medray.mm.phantom import write_phantoms

    _, model = phantom
    write_phantoms(20, str(tmp_path / "pairs"), seed=5, size=64, splits=(0.5, 0.0, 0.5))
    model.save(str(tmp_path / "model"))
    result = CliRunner().invoke(app, ["medtrim", "evaluate", str(tmp_path / "model"), str(tmp_path / "pairs"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 10 and report["split"] == "test"
    assert set(report["i2t"]["fine"]) == {"1", "10", "20", "50"}
    assert all(0.0 <= v <= 1.0 for v in report["t2i"]["disease"].values())
