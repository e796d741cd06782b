"""Phantom studies: deterministic, labels balanced, and every label visibly changes the pixels it names.

Effects are measured by redrawing one patient (same anatomy, noise and finding shapes) with and
without a finding, in the lung zones of `phantom_anatomy.zone_mask`. Image left is the patient's right.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medray.mm.phantom import (
    FINDING_CLASSES,
    NORMAL_FRACTION,
    SEVERITIES,
    SIDES,
    Finding,
    sample_findings,
    sample_study,
)
from medray.mm.phantom_anatomy import HEART_RATIO, lung_borders, outward, zone_mask

SIZE = 224


def zone_mean(img: np.ndarray, study, side: str, zone: str) -> float:
    return float(img[zone_mask(study.anatomy, SIZE, side, zone)].mean())


def same_pixels(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> bool:
    return bool(np.array_equal(a[mask], b[mask]))


def across_variance(img: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the horizontal gradient: lines crossing the rows (markings), not the ribs along them."""
    grad = img.astype(float)[:, 2:] - img.astype(float)[:, :-2]
    return float(grad[mask[:, 1:-1]].var())


@pytest.fixture(scope="module")
def patient():
    return sample_study(11, 5)


def test_same_seed_and_index_give_the_same_study():
    a, b = sample_study(7, 3), sample_study(7, 3)
    assert a.image.dtype == np.uint8 and a.image.shape == (SIZE, SIZE)
    assert a.image.tobytes() == b.image.tobytes()
    assert (a.report, a.findings, a.negated, a.image_id) == (b.report, b.findings, b.negated, b.image_id)


def test_another_index_or_seed_gives_another_study():
    a, b, c = sample_study(7, 3), sample_study(7, 4), sample_study(8, 3)
    assert len({a.study_id, b.study_id}) == 2 and a.study_id == c.study_id == "50000003"
    assert len({a.image_id, b.image_id, c.image_id}) == 3
    for other in (b, c):
        assert np.abs(a.image.astype(int) - other.image.astype(int)).mean() > 2
        assert a.report != other.report


def test_size_changes_resolution_not_labels():
    small, full = sample_study(7, 3, size=128), sample_study(7, 3)
    assert small.image.shape == (128, 128)
    assert (small.findings, small.report) == (full.findings, full.report)


def test_labels_are_balanced_with_a_fifth_normal():
    draws = [sample_findings(np.random.default_rng([0, i])) for i in range(4000)]
    normal = sum(not d for d in draws) / len(draws)
    assert abs(normal - NORMAL_FRACTION) < 0.03
    per_class = Counter(f.name for d in draws for f in d)
    share = {name: per_class[name] / len(draws) for name in FINDING_CLASSES}
    assert all(0.13 < s < 0.22 for s in share.values()), share
    findings = [f for d in draws for f in d]
    assert 0.12 < sum(f.certainty == "uncertain" for f in findings) / len(findings) < 0.18
    for name in FINDING_CLASSES:
        mine = [f for f in findings if f.name == name]
        assert {f.severity for f in mine} == set(SEVERITIES[name])
        assert {f.side for f in mine} == set(SIDES[name])
    # one hemithorax never holds both free air and fluid
    for d in draws:
        sides = {f.name: f.side for f in d}
        if "pneumothorax" in sides and "pleural_effusion" in sides:
            assert sides["pleural_effusion"] not in (sides["pneumothorax"], "bilateral")


def test_left_effusion_brightens_the_left_base_by_severity_and_leaves_the_right_alone(patient):
    base = patient.redraw([])
    means = {}
    right_lower = zone_mask(patient.anatomy, SIZE, "right", "lower")
    for severity in SEVERITIES["pleural_effusion"]:
        img = patient.redraw([Finding("pleural_effusion", severity, "left")])
        means[severity] = zone_mean(img, patient, "left", "lower") - zone_mean(base, patient, "left", "lower")
        assert same_pixels(img, base, right_lower)
        assert np.array_equal(img[:, : SIZE // 2 - 8], base[:, : SIZE // 2 - 8])  # the patient's right half
    assert 5 < means["small"] < means["moderate"] - 5 < means["large"] - 10, means


def test_cardiomegaly_widens_the_heart_to_its_cardiothoracic_ratio(patient):
    a = patient.anatomy

    def ratio(img: np.ndarray) -> float:
        row = int(a.heart_v * SIZE)
        bright = img[row - 2: row + 3].astype(float).mean(axis=0) > 120
        left = right = int(a.midline * SIZE)
        while left > 0 and bright[left - 1]:
            left -= 1
        while right < SIZE - 1 and bright[right + 1]:
            right += 1
        return (right - left + 1) / (2 * a.thorax_half * SIZE)

    measured = {"normal": ratio(patient.redraw([]))}
    assert abs(measured["normal"] - a.heart_ratio) < 0.04
    for severity in SEVERITIES["cardiomegaly"]:
        measured[severity] = ratio(patient.redraw([Finding("cardiomegaly", severity, None)]))
        assert abs(measured[severity] - HEART_RATIO[severity]) < 0.04, measured
    assert measured["normal"] < measured["mild"] < measured["moderate"] < measured["severe"]


def test_pneumothorax_darkens_the_apex_and_removes_its_markings():
    """Markings run across the apex; ribs run along it: the horizontal gradient sees the markings."""
    ratios = []
    for index in range(4):
        study = sample_study(21, index)
        base, a = study.redraw([]), study.anatomy
        for side in ("right", "left"):
            _, lateral = lung_borders(a, SIZE, side)
            t = outward(a, side, (np.arange(SIZE) + 0.5)[None, :] / SIZE)
            upper = zone_mask(a, SIZE, side, "upper")
            band = upper & (t > lateral - 0.05) & (t < lateral - 0.015)  # inside the air, off the walls
            small = study.redraw([Finding("pneumothorax", "small", side, zone="upper")])
            large = study.redraw([Finding("pneumothorax", "large", side, zone="upper")])
            assert large[band].mean() < base[band].mean() - 10
            assert large[upper].mean() < small[upper].mean() < base[upper].mean()
            ratios.append(across_variance(large, band) / across_variance(base, band))
            other = "left" if side == "right" else "right"
            assert same_pixels(large, base, zone_mask(a, SIZE, other, "upper"))
    assert max(ratios) < 1.0 and np.mean(ratios) < 0.9, ratios


@pytest.mark.parametrize("name, zone", [("consolidation", "lower"), ("lung_opacity", "middle"),
                                        ("lung_lesion", "upper"), ("atelectasis", "lower")])
def test_parenchymal_findings_brighten_their_zone_more_with_severity(patient, name, zone):
    base = patient.redraw([])
    gains = []
    for severity in SEVERITIES[name]:
        img = patient.redraw([Finding(name, severity, "right", zone=zone)])
        gains.append(zone_mean(img, patient, "right", zone) - zone_mean(base, patient, "right", zone))
        assert same_pixels(img, base, zone_mask(patient.anatomy, SIZE, "left", zone))
    assert gains[0] > 0.5 and all(b > a + 0.5 for a, b in zip(gains, gains[1:])), gains


def test_edema_hazes_both_lungs_by_severity(patient):
    base = patient.redraw([])
    for side in ("right", "left"):
        gains = [zone_mean(patient.redraw([Finding("edema", s, "bilateral")]), patient, side, "middle")
                 - zone_mean(base, patient, side, "middle") for s in SEVERITIES["edema"]]
        assert 5 < gains[0] < gains[1] - 3 < gains[2] - 6, gains


def test_uncertainty_is_in_the_report_not_the_pixels(patient):
    finding = Finding("consolidation", "moderate", "left", "present", "middle")
    hedged = Finding("consolidation", "moderate", "left", "uncertain", "middle")
    assert np.array_equal(patient.redraw([finding]), patient.redraw([hedged]))
