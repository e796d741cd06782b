"""OBER on hand-written sentences, the real CheXpert and NegBio sample reports, and as a Ray Data stage."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pytest

from medray.errors import ConfigError
from medray.medtrim import lexicon
from medray.medtrim import ober as ober_module
from medray.medtrim.ober import (
    NO_FINDING,
    Ober,
    OberConfig,
    OberStage,
    entities_from_json,
    entities_to_json,
)
from medray.met.build import build_tree
from medray.met.labels import CHEXPERT_NAMES

NOTHING = {NO_FINDING: {"adjectives": frozenset(), "directions": frozenset()}}


def ent(adjectives=(), directions=()) -> dict:
    return {"adjectives": frozenset(adjectives), "directions": frozenset(directions)}


@pytest.fixture(scope="module")
def ober() -> Ober:
    return Ober()


@pytest.mark.parametrize("text, expected", [
    # negation: a negated finding is not a finding
    ("No pneumothorax.", NOTHING),
    ("There is no evidence of pleural effusion or pneumothorax.", NOTHING),
    ("Heart size normal and lungs are clear. No edema or pneumonia. No effusion", NOTHING),
    ("Lungs are clear. No acute cardiopulmonary process.", NOTHING),
    # mixed: the negation stays in its own clause
    ("No effusion; mild cardiomegaly.", {"cardiomegaly": ent({"mild"})}),
    ("No pneumothorax or effusion, mild bibasilar atelectasis.",
     {"atelectasis": ent({"mild", "lower"}, {"bilateral"})}),
    ("There is no pneumothorax but a moderate left effusion.",
     {"pleural_effusion": ent({"moderate"}, {"left"})}),
    ("Cardiomegaly without overt edema.", {"cardiomegaly": ent()}),
    # attribution: each size and side to its own finding
    ("Small left effusion and large right pneumothorax.",
     {"pleural_effusion": ent({"small"}, {"left"}), "pneumothorax": ent({"large"}, {"right"})}),
    ("Mild cardiomegaly and moderate pulmonary edema.",
     {"cardiomegaly": ent({"mild"}), "edema": ent({"moderate"})}),
    ("Cardiomegaly is moderate and there is a small right effusion.",
     {"cardiomegaly": ent({"moderate"}), "pleural_effusion": ent({"small"}, {"right"})}),
    ("Moderate cardiomegaly with small bilateral pleural effusions, left greater than right.",
     {"cardiomegaly": ent({"moderate"}), "pleural_effusion": ent({"small"}, {"bilateral"})}),
    ("Bilateral pleural effusions, small.", {"pleural_effusion": ent({"small"}, {"bilateral"})}),
    ("Left effusion. Right effusion is also present.", {"pleural_effusion": ent((), {"bilateral"})}),
    # synonyms, canonical forms, adverbs of degree
    ("Enlarged cardiac silhouette.", {"cardiomegaly": ent()}),
    ("The heart is mildly enlarged.", {"cardiomegaly": ent({"mild"})}),
    ("Minimal plate-like atelectasis at the right base.", {"atelectasis": ent({"mild", "lower"}, {"right"})}),
    ("Extensive ill-defined opacities in both lungs.",
     {"lung_opacity": ent({"severe", "hazy"}, {"bilateral"})}),
    ("Tiny right apical pneumothorax, stable.", {"pneumothorax": ent({"small", "upper", "stable"}, {"right"})}),
    ("A 1 cm nodule in the left upper lobe.", {"lung_lesion": ent({"upper"}, {"left"})}),
    # devices are not findings
    ("Right PICC line in place. No acute process.", NOTHING),
])
def test_hand_written_sentences(ober, text, expected):
    assert ober.extract(text) == expected


def test_hedged_findings_kept_or_dropped(ober):
    text = "Possible small right pleural effusion. Moderate cardiomegaly."
    assert ober.extract(text) == {"cardiomegaly": ent({"moderate"}),
                                  "pleural_effusion": ent({"small"}, {"right"})}
    strict = Ober(OberConfig(uncertain="drop"))
    assert strict.extract(text) == {"cardiomegaly": ent({"moderate"})}
    assert strict.extract("Atelectasis versus consolidation in the left base.") == NOTHING
    assert ober.extract("Atelectasis versus consolidation in the left base.").keys() == {"atelectasis", "consolidation"}
    # a closing cue reaches the clause's last finding past the matcher's four-word window
    far = "A small nodule in the right middle lobe cannot be excluded."
    assert ober.extract(far) == {"lung_lesion": ent({"small", "middle"}, {"right"})}
    assert strict.extract(far) == NOTHING
    assert strict.extract("Large left pneumothorax with a pleural line cannot be excluded.") == NOTHING
    assert ober.extract("Small left effusion; pneumothorax not seen.") == {"pleural_effusion": ent({"small"}, {"left"})}


def test_clause_splitting():
    assert ober_module.split_clauses("Small left effusion and large right pneumothorax.") == [
        "Small left effusion", "and large right pneumothorax."]
    assert ober_module.split_clauses("No consolidation, effusion, or pneumothorax.") == [
        "No consolidation, effusion, or pneumothorax."]  # a negated list stays whole
    assert ober_module.split_clauses("Patchy, hazy left and right opacities; no effusion") == [
        "Patchy, hazy left and right opacities", "no effusion"]


def test_batch_matches_one_by_one_and_empty_reports(ober):
    texts = ["Mild cardiomegaly.", None, "", "  ...  ", "No pneumothorax.", "Small left effusion."]
    batch = ober.extract_batch(texts)
    assert batch == [None if t is None else ober.extract(t) for t in texts]
    assert batch[1] is None and batch[2] is None and batch[3] is None
    assert batch[0] == {"cardiomegaly": ent({"mild"})} and batch[4] == NOTHING


def test_json_round_trip(ober):
    entities = ober.extract("Small left effusion and large right pneumothorax.")
    text = entities_to_json(entities)
    assert json.loads(text) == {"pleural_effusion": {"adjectives": ["small"], "directions": ["left"]},
                                "pneumothorax": {"adjectives": ["large"], "directions": ["right"]}}
    assert entities_from_json(text) == entities
    assert entities_to_json(entities_from_json(text)) == text


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="ober.uncertain"):
        Ober(OberConfig(uncertain="maybe"))
    with pytest.raises(ConfigError, match="ober.tree"):
        Ober(OberConfig(tree=str(tmp_path / "missing.parquet")))


def test_tree_from_a_parquet_file(tmp_path, ober):
    tree, _ = build_tree([("radiology_lexicon", {})])
    tree.save(str(tmp_path / "tree.parquet"))
    from_file = Ober(OberConfig(tree=str(tmp_path / "tree.parquet")))
    text = "Moderate cardiomegaly with small bilateral pleural effusions. No pneumothorax."
    assert from_file.extract(text) == ober.extract(text) == {
        "cardiomegaly": ent({"moderate"}), "pleural_effusion": ent({"small"}, {"bilateral"})}


def test_stage_adds_entities_and_rejects_empty_reports():
    table = pa.table({"id": ["a", "b", "c"], "report": ["Mild cardiomegaly.", None, "No effusion."]})
    out = ober_module.ober_stage(table)
    assert out.column_names == ["id", "report", "entities", "reject_reason"]
    assert out["reject_reason"].to_pylist() == [None, "empty_report", None]
    entities = out["entities"].to_pylist()
    assert entities_from_json(entities[0]) == {"cardiomegaly": ent({"mild"})}
    assert entities[1] is None and entities_from_json(entities[2]) == NOTHING

    split = pa.table({"id": ["x", "y"], "findings": ["Small left effusion.", "  "],
                      "impression": ["Mild cardiomegaly.", None]})
    out = OberStage()(split)
    assert entities_from_json(out["entities"][0].as_py()) == {
        "cardiomegaly": ent({"mild"}), "pleural_effusion": ent({"small"}, {"left"})}
    assert out["reject_reason"].to_pylist() == [None, "empty_report"]
    with pytest.raises(ConfigError, match="text_column"):
        OberStage()(pa.table({"id": ["x"], "text": ["Mild cardiomegaly."]}))


def test_stage_on_ray_data_actor_pool(ray_local):
    import ray
    from ray.data import ActorPoolStrategy

    reports = ["Mild cardiomegaly.", "No pneumothorax.", "", "Large right pneumothorax."] * 5
    ds = ray.data.from_arrow(pa.table({"id": [str(i) for i in range(len(reports))], "report": reports}))
    out = ds.map_batches(OberStage, fn_constructor_args=(OberConfig(),), batch_format="pyarrow",
                         batch_size=8, compute=ActorPoolStrategy(size=1), num_cpus=1)
    rows = sorted(out.take_all(), key=lambda r: int(r["id"]))
    assert [r["reject_reason"] for r in rows[:4]] == [None, None, "empty_report", None]
    assert [r["entities"] for r in rows[:4]] == [
        entities_to_json({"cardiomegaly": ent({"mild"})}), entities_to_json(NOTHING), None,
        entities_to_json({"pneumothorax": ent({"large"}, {"right"})})]
    assert sum(r["reject_reason"] == "empty_report" for r in rows) == 5


# ---- real reports -------------------------------------------------------------------------------

def _precision_recall(pairs) -> tuple[float, float]:
    tp = sum(len(got & gold) for got, gold in pairs)
    return tp / max(1, sum(len(got) for got, _ in pairs)), tp / max(1, sum(len(gold) for _, gold in pairs))


def test_chexpert_sample_reports_against_gold(ober, shared_data):
    with open(shared_data / "reports" / "chexpert_labeled_reports.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pairs = []
    for row in rows:
        gold = {slug for slug, name in CHEXPERT_NAMES.items()
                if slug not in ober_module.EXCLUDED_CLASSES and row[name] in ("1.0", "-1.0")} or {NO_FINDING}
        pairs.append((set(ober.extract(row["Reports"])), gold))
    precision, recall = _precision_recall(pairs)
    print(f"\nCheXpert sample reports ({len(rows)}): OBER precision {precision:.3f}, recall {recall:.3f}")
    assert len(rows) == 4 and precision >= 0.9 and recall >= 0.9
    assert ober.extract(rows[3]["Reports"]) == {"cardiomegaly": ent({"mild", "stable"})}
    assert {"mild", "patchy"} <= ober.extract(rows[2]["Reports"])["lung_opacity"]["adjectives"]


def test_negbio_sample_reports(ober, shared_data):
    folder = shared_data / "reports" / "negbio"
    assert ober.extract((folder / "00000086.txt").read_text()) == NOTHING  # "no pneumothorax", "stable chest"
    # "mild cardiomegaly"; "no evidence of focal infiltrate, effusion or pneumothorax"; a PICC line
    assert ober.extract((folder / "00019248.txt").read_text()) == {"cardiomegaly": ent({"mild"})}


def test_lexicon_covers_medtrim_adjectives(shared_data):
    path = shared_data / "lexicons" / "medtrim_ontology.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    mapping = json.loads(path.read_text())["ADJECTIVE_MAPPING"]
    known = [word for word in mapping if lexicon.known_surface(word.replace("-", " "))]
    coverage = len(known) / len(mapping)
    print(f"\nMedTrim ADJECTIVE_MAPPING surfaces read by medray's lexicon: {len(known)}/{len(mapping)} "
          f"= {coverage:.1%}; missing: {sorted(set(mapping) - set(known))}")
    assert coverage >= 0.85
    assert lexicon.severity_level({"moderate", "patchy"}) == 2 and lexicon.severity_level({"focal"}) == 0


# ---- phantom reports against their true labels ------------------------------------------------

def _phantom_scores(entities: list[dict], studies: list, certainties: set[str]) -> dict[str, dict[str, float]]:
    """Per class: precision and recall of the class, and accuracy of severity, side and zone on hits."""
    from medray.mm.phantom import FINDING_CLASSES

    counts = {c: {"tp": 0, "fp": 0, "fn": 0, "severity": 0, "side": 0, "zone": 0} for c in FINDING_CLASSES}
    for got, study in zip(entities, studies):
        truth = [f for f in study.findings if f.certainty in certainties]
        for cls in FINDING_CLASSES:
            mine = [f for f in truth if f.name == cls]
            if cls in got and mine:
                counts[cls]["tp"] += 1
                adjectives, directions = got[cls]["adjectives"], got[cls]["directions"]
                counts[cls]["severity"] += {f.severity for f in mine} <= adjectives
                counts[cls]["side"] += directions == lexicon.canonical_side(f.side for f in mine if f.side)
                counts[cls]["zone"] += {f.zone for f in mine if f.zone} <= adjectives
            elif cls in got:
                counts[cls]["fp"] += 1
            elif mine:
                counts[cls]["fn"] += 1
    scores = {}
    for cls, n in counts.items():
        hits = max(1, n["tp"])
        scores[cls] = {"precision": n["tp"] / max(1, n["tp"] + n["fp"]), "recall": n["tp"] / max(1, n["tp"] + n["fn"]),
                       "severity": n["severity"] / hits, "side": n["side"] / hits, "zone": n["zone"] / hits,
                       "support": n["tp"] + n["fn"]}
    return scores


def test_phantom_reports_against_true_labels(ober):
    from medray.mm.phantom import sample_study

    studies = [sample_study(0, i, size=32) for i in range(300)]
    entities = ober.extract_batch([s.report for s in studies])
    scores = _phantom_scores(entities, studies, {"present", "uncertain"})
    print("\nOBER on 300 phantom reports (uncertain kept): class precision / recall, "
          "severity / side / zone accuracy on hits")
    for cls, s in scores.items():
        print(f"  {cls:17s} n={s['support']:3d}  P {s['precision']:.3f}  R {s['recall']:.3f}  "
              f"severity {s['severity']:.3f}  side {s['side']:.3f}  zone {s['zone']:.3f}")
    for cls, s in scores.items():
        assert s["support"] >= 20, cls
        assert s["precision"] >= 0.97 and s["recall"] >= 0.97, (cls, s)
        assert s["severity"] >= 0.95 and s["side"] >= 0.95 and s["zone"] >= 0.95, (cls, s)

    normal = [e for e, s in zip(entities, studies) if not s.findings]
    assert normal and all(e == NOTHING for e in normal)
    negated = sum(len(s.negated) for s in studies)
    leaked = sum(cls in e for e, s in zip(entities, studies) for cls in s.negated)
    print(f"  negated mentions: {negated}, read as findings: {leaked}")
    assert negated > 300 and leaked == 0


def test_phantom_hedged_findings_dropped_on_request():
    from medray.mm.phantom import sample_study

    studies = [sample_study(0, i, size=32) for i in range(300)]
    strict = Ober(OberConfig(uncertain="drop")).extract_batch([s.report for s in studies])
    hedged = sum(f.certainty == "uncertain" for s in studies for f in s.findings)
    scores = _phantom_scores(strict, studies, {"present"})
    recall = sum(s["recall"] * s["support"] for s in scores.values()) / sum(s["support"] for s in scores.values())
    precision = min(s["precision"] for s in scores.values())
    print(f"\nuncertain: drop on {hedged} hedged findings: worst class precision {precision:.3f}, "
          f"recall of certain findings {recall:.3f}")
    assert hedged >= 30 and precision >= 0.95 and recall >= 0.97
