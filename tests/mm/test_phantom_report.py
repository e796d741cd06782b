"""Phantom reports state every label so that a lexicon can read it back, in varied phrasing.

Checked two ways: sentence by sentence against the project's lexicon (surface, severity, side,
zone, negation and hedge cues), and end to end through the project's own matcher and CheXpert
labeller on a tree built from the radiology lexicon.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from medray.met.cues import CUES, POST_NEG, POST_UNC, PRE_NEG, PRE_UNC
from medray.met.labels import CHEXPERT_NAMES, observation_labels
from medray.met.normalize import normalize_term
from medray.met.sources.radiology_lexicon import ADJECTIVES, DIRECTIONS, OBSERVATIONS
from medray.mm.pairs import findings_text, report_sections
from medray.mm.phantom import FINDING_CLASSES, sample_study
from medray.mm.phantom_report import NORMAL_IMPRESSION

SURFACES = {o.slug: [normalize_term(s) for s in o.surfaces] for o in OBSERVATIONS}
ABSENT_FORMS = {o.slug: [normalize_term(s) for s in o.absent_forms] for o in OBSERVATIONS}
ADJECTIVE_OF = {normalize_term(s): canon for canon, forms in ADJECTIVES.items() for s in forms}
DIRECTION_OF = {normalize_term(s): canon for canon, forms in DIRECTIONS.items() for s in forms}
NEGATION = [normalize_term(c) for c in CUES[PRE_NEG] + CUES[POST_NEG]]
HEDGE = [normalize_term(c) for c in CUES[PRE_UNC] + CUES[POST_UNC]]


@pytest.fixture(scope="module")
def studies():
    return [sample_study(5, i) for i in range(300)]


def has(sentence: str, phrase: str) -> bool:
    return f" {phrase} " in f" {sentence} "


def canon(sentence: str, table: dict[str, str]) -> set[str]:
    return {value for phrase, value in table.items() if has(sentence, phrase)}


def sentences(text: str) -> list[str]:
    return [normalize_term(s) for s in re.split(r"(?<=\.)\s+", text) if s.strip()]


def mentions(sentence: str, name: str) -> bool:
    return any(has(sentence, s) for s in SURFACES[name] + ABSENT_FORMS[name])


def test_every_label_is_stated_with_its_words(studies):
    for study in studies:
        said = sentences(report_sections(study.report)["FINDINGS"])
        for f in study.findings:
            expected_directions = {d for d in (f.side, f.zone) if d}
            matching = [s for s in said if mentions(s, f.name)
                        and f.severity in canon(s, ADJECTIVE_OF)
                        and expected_directions <= canon(s, DIRECTION_OF)]
            assert matching, (f, study.report)
            hedged = any(has(s, cue) for s in matching for cue in HEDGE)
            negated = any(has(s, cue) for s in matching for cue in NEGATION)
            assert hedged == (f.certainty == "uncertain") and not negated, (f, matching)
        for name in study.negated:
            assert any(mentions(s, name) and (any(has(s, c) for c in NEGATION)
                                              or any(has(s, a) for a in ABSENT_FORMS[name])) for s in said), name
        unmentioned = set(FINDING_CLASSES) - {f.name for f in study.findings} - set(study.negated)
        text = " ".join(sentences(findings_text(study.report)))
        assert not [n for n in unmentioned if mentions(text, n)], study.report


def test_normal_studies_have_the_normal_impression(studies):
    for study in studies:
        impression = report_sections(study.report)["IMPRESSION"]
        assert (impression == NORMAL_IMPRESSION) == (not study.findings), study.report
    assert 40 < sum(not s.findings for s in studies) < 80


def test_layout_is_mimic_like(studies):
    report = studies[0].report
    assert report.splitlines()[0].strip() == "FINAL REPORT"
    assert list(report_sections(report)) == ["EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON",
                                             "FINDINGS", "IMPRESSION"]
    assert max(len(line) for line in report.splitlines()) <= 79


def test_phrasing_varies(studies):
    """Many sentence shapes per class once the severity and side words are blanked out."""
    shapes: dict[str, set[str]] = {}
    for study in studies:
        for s in sentences(report_sections(study.report)["FINDINGS"]):
            for f in study.findings:
                if any(has(s, surface) for surface in SURFACES[f.name]):
                    words = [w for w in s.split() if w not in ADJECTIVE_OF and w not in DIRECTION_OF]
                    shapes.setdefault(f.name, set()).add(" ".join(words))
    assert all(len(shapes[name]) >= 6 for name in FINDING_CLASSES), {k: len(v) for k, v in shapes.items()}
    negations = Counter(s for study in studies for s in sentences(report_sections(study.report)["FINDINGS"])
                        if any(has(s, c) for c in ("no", "not")))
    assert len(negations) >= 20


def test_the_project_matcher_reads_the_labels_back(studies):
    """Present -> 1, hedged -> -1, negated -> 0, unmentioned -> None, for every class and study."""
    from medray.met.build import build_tree
    from medray.met.matcher import Matcher

    tree, _ = build_tree([("radiology_lexicon", {})])
    matcher = Matcher(tree)
    found = expected = agreed = 0
    for study in studies:
        labels = observation_labels(matcher.match(findings_text(study.report)), tree)
        truth = {CHEXPERT_NAMES[n]: 0 for n in study.negated}
        truth.update({CHEXPERT_NAMES[f.name]: 1 if f.certainty == "present" else -1 for f in study.findings})
        got = {k: v for k, v in labels.items() if v is not None and k != "No Finding"}
        found, expected = found + len(got), expected + len(truth)
        agreed += sum(got.get(k) == v for k, v in truth.items())
        assert labels["No Finding"] == (None if study.findings else 1)
    precision, recall = agreed / found, agreed / expected
    print(f"matcher vs phantom labels: precision {precision:.3f}, recall {recall:.3f} over {expected} labels")
    assert precision == recall == 1.0
