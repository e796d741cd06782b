"""MedTrim's score S on hand-worked meta-entities, and the batched matrix against it.

Default weights g0, g1, g2 = 0.85, 0.10, 0.05 (they sum to 1, so normalising changes nothing).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from medray.errors import ConfigError
from medray.medtrim.score import NO_FINDING, canonical_json, parse_entities, score, score_matrix
from medray.medtrim.settings import ScoreConfig

CLASSES = ["pleural_effusion", "cardiomegaly", "consolidation", "lung_opacity", "pneumothorax",
           "lung_lesion", "atelectasis", "edema"]
SEVERITIES = ["mild", "moderate", "severe", "small", "large"]
SIDES = ["left", "right", "bilateral"]


def ent(**classes) -> dict:
    """ent(pleural_effusion=("small", "left")) -> one class with adjectives {small}, directions {left};
    a value of () means the class with no descriptors."""
    out = {}
    for name, facts in classes.items():
        adj, side = (facts + (None, None))[:2]
        out[name] = {"adjectives": [adj] if adj else [], "directions": [side] if side else []}
    return out


NONE = {NO_FINDING: {"adjectives": [], "directions": []}}


def test_identical_reports_score_one():
    a = ent(pleural_effusion=("small", "left"), atelectasis=("mild", "right"))
    # Jaccard 2/2, adjectives (1 + 1)/2, directions (1 + 1)/2 -> 0.85 + 0.10 + 0.05
    assert score(a, a) == pytest.approx(1.0)


def test_no_finding_against_no_finding_is_one():
    # one shared class, both descriptor sets empty on both sides: IoU(empty, empty) = 1 -> 1.0
    assert score(NONE, NONE) == pytest.approx(1.0)
    # an empty object is OBER's "nothing found" too
    assert score({}, NONE) == pytest.approx(1.0)


def test_no_shared_class_scores_zero():
    # Jaccard 0/2; the descriptor means sum over shared classes only -> 0
    assert score(ent(pleural_effusion=("small", "left")), ent(cardiomegaly=())) == 0.0
    assert score(NONE, ent(edema=("mild", "bilateral"))) == 0.0


def test_same_class_different_descriptors():
    # Jaccard 1/1 = 1; adjectives IoU({small}, {large}) = 0; directions IoU({left}, {right}) = 0
    # -> 0.85 * 1 + 0.10 * 0 + 0.05 * 0 = 0.85
    assert score(ent(pleural_effusion=("small", "left")),
                 ent(pleural_effusion=("large", "right"))) == pytest.approx(0.85)


def test_empty_descriptor_sets_count_as_agreement():
    # cardiomegaly has no side: directions IoU(empty, empty) = 1
    # adjectives IoU({mild}, {}) = 0/1 = 0 -> 0.85 + 0.10 * 0 + 0.05 * 1 = 0.90
    assert score(ent(cardiomegaly=("mild",)), ent(cardiomegaly=())) == pytest.approx(0.90)
    # both unqualified: 0.85 + 0.10 + 0.05
    assert score(ent(cardiomegaly=()), ent(cardiomegaly=())) == pytest.approx(1.0)


def test_partial_overlap_with_a_partial_adjective_match():
    a = ent(pleural_effusion=("small", "left"), cardiomegaly=())
    b = {"pleural_effusion": {"adjectives": ["small", "moderate"], "directions": ["left"]}}
    # classes {pe, cm} vs {pe}: Jaccard 1/2
    # adjectives: pe IoU({small}, {small, moderate}) = 1/2, over the 2 classes of the union -> 1/4
    # directions: pe IoU({left}, {left}) = 1 over 2 -> 1/2
    # S = 0.85 * 0.5 + 0.10 * 0.25 + 0.05 * 0.5 = 0.425 + 0.025 + 0.025 = 0.475
    assert score(a, b) == pytest.approx(0.475)
    assert score(b, a) == pytest.approx(0.475)


def test_two_shared_classes_average_their_descriptors():
    a = ent(pleural_effusion=("small", "left"), atelectasis=("mild", "right"))
    b = ent(pleural_effusion=("small", "right"), atelectasis=("severe", "right"))
    # Jaccard 2/2 = 1; adjectives (pe 1 + atelectasis 0)/2 = 0.5; directions (pe 0 + at 1)/2 = 0.5
    # -> 0.85 + 0.05 + 0.025 = 0.925
    assert score(a, b) == pytest.approx(0.925)


def test_means_run_over_the_class_union_so_the_score_is_symmetric():
    a = ent(pleural_effusion=("small", "left"))
    b = ent(pleural_effusion=("small", "left"), cardiomegaly=())
    # Jaccard 1/2; adjectives 1/2 and directions 1/2 (one matching class of two)
    # -> 0.425 + 0.05 + 0.025 = 0.5 both ways. (Dividing by the anchor's class count, as the
    # reference code does, would give 0.575 from a and 0.5 from b.)
    assert score(a, b) == pytest.approx(0.5)
    assert score(b, a) == pytest.approx(0.5)


def test_weights_are_normalised_and_selectable():
    a = ent(pleural_effusion=("small", "left"), cardiomegaly=())
    b = ent(pleural_effusion=("large", "left"))
    # Jaccard 1/2, adjectives 0/2, directions 1/2
    assert score(a, b) == pytest.approx(0.85 * 0.5 + 0.05 * 0.5)
    assert score(a, b, ScoreConfig(1.7, 0.2, 0.1)) == pytest.approx(score(a, b))  # same ratios
    assert score(a, b, (1.0, 0.0, 0.0)) == pytest.approx(0.5)  # Jaccard only
    assert score(a, b, (0.0, 0.0, 2.0)) == pytest.approx(0.5)  # directions only


def test_json_cells_and_mappings_agree():
    a = ent(pleural_effusion=("small", "left"), edema=("mild", "bilateral"))
    text = canonical_json(a)
    assert json.loads(text) == {"edema": {"adjectives": ["mild"], "directions": ["bilateral"]},
                                "pleural_effusion": {"adjectives": ["small"], "directions": ["left"]}}
    assert parse_entities(text) == parse_entities(a)
    assert score(text, a) == pytest.approx(1.0)


@pytest.mark.parametrize("cell, problem", [
    (None, "null"),
    ("{not json", "not JSON"),
    ('["pleural_effusion"]', "object of classes"),
    ('{"pleural_effusion": {"adjectives": "small"}}', "pleural_effusion.adjectives"),
    ('{"pleural_effusion": {"directions": [1]}}', "strings only"),
    ('{"pleural_effusion": 3}', "expected an object"),
])
def test_malformed_entities_raise_value_error_naming_the_problem(cell, problem):
    with pytest.raises(ValueError, match=problem):
        parse_entities(cell)


@pytest.mark.parametrize("cfg, key", [
    (ScoreConfig(g0=-0.1), "score.g0"),
    (ScoreConfig(g1=float("nan")), "score.g1"),
    (ScoreConfig(g2="x"), "score.g2"),
    (ScoreConfig(0.0, 0.0, 0.0), "score.g0"),
])
def test_score_config_names_the_bad_key(cfg, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        cfg.check()


def random_entities(rng: random.Random) -> dict:
    if rng.random() < 0.15:
        return NONE
    return {c: {"adjectives": rng.sample(SEVERITIES, rng.randint(0, 2)),
                "directions": rng.sample(SIDES, rng.randint(0, 2))}
            for c in rng.sample(CLASSES, rng.randint(1, 4))}


def test_score_matrix_equals_the_scalar_score_on_random_reports():
    rng = random.Random(7)
    reports = [random_entities(rng) for _ in range(200)]
    weights = ScoreConfig(0.7, 0.2, 0.1)
    matrix = score_matrix(reports, weights)
    assert matrix.shape == (200, 200) and matrix.dtype == np.float32
    exact = score_matrix(reports, weights, dtype=np.float64)
    scalar = np.array([[score(a, b, weights) for b in reports] for a in reports])
    assert np.array_equal(exact, scalar)  # same sums in the same order: bit for bit
    np.testing.assert_allclose(matrix, scalar, rtol=0, atol=1e-6)
    assert np.array_equal(exact, exact.T)
    assert np.allclose(np.diag(exact), 1.0)
    assert 0.0 <= exact.min() and exact.max() <= 1.0 + 1e-12
    # the sample is not degenerate: zeros, ones off the diagonal, and values in between
    off = exact[~np.eye(200, dtype=bool)]
    assert (off == 0).any() and np.isclose(off, 1).any() and ((off > 0.3) & (off < 0.9)).mean() > 0.05


def test_score_matrix_of_an_empty_batch():
    assert score_matrix([]).shape == (0, 0)
