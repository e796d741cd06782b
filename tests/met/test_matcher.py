"""The entity matcher: gold-labelled real reports on the full tree, unit cases on a tiny one."""

from __future__ import annotations

import csv
import pickle

import pyarrow as pa
import pytest

from medray.errors import MedrayError
from medray.met.labels import CHEXPERT_NAMES, observation_labels
from medray.met.matcher import HIT_SCHEMA, Matcher

GOLD = {"1.0": 1, "0.0": 0, "-1.0": -1, "": None}


def one(hits: list[dict], surface: str) -> dict:
    """The single hit with this surface (case-insensitive)."""
    found = [h for h in hits if h["surface"].lower() == surface.lower()]
    assert len(found) == 1, (surface, hits)
    return found[0]


def assertions(matcher: Matcher, text: str) -> dict[str, str]:
    """surface (lower case) -> assertion; checks every span maps back to the text."""
    hits = matcher.match(text)
    for h in hits:
        assert text[h["start"] : h["end"]] == h["surface"], h
    return {h["surface"].lower(): h["assertion"] for h in hits}


# ---- real reports, full tree ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chexpert_rows(shared_data):
    with open(
        shared_data / "reports" / "chexpert_labeled_reports.csv", newline="", encoding="utf-8"
    ) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    return rows


@pytest.fixture(scope="module")
def negbio(shared_data):
    folder = shared_data / "reports" / "negbio"
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


def test_chexpert_gold_labels(chexpert_rows, met_matcher, met_tree):
    columns = [c for c in chexpert_rows[0] if c != "Reports"]
    assert len(columns) == 14 and "No Finding" in columns
    assert set(columns) == set(CHEXPERT_NAMES.values()) | {"No Finding"}
    for row in chexpert_rows:
        text = row["Reports"]
        hits = met_matcher.match(text)
        for h in hits:
            assert text[h["start"] : h["end"]] == h["surface"]
        labels = observation_labels(hits, met_tree)
        gold = {c: GOLD[row[c].strip()] for c in columns}
        assert {c: labels[c] for c in columns} == gold, text


def test_chexpert_report_details(chexpert_rows, met_matcher):
    # "Heart size normal and lungs are clear. No edema or pneumonia. No effusion"
    first = chexpert_rows[0]["Reports"]
    hits = met_matcher.match(first)
    assert one(hits, "Heart size normal") == {
        "node_id": "HP:0001640",
        "start": 0,
        "end": 17,
        "surface": "Heart size normal",
        "assertion": "absent",
    }
    assert one(hits, "effusion")["node_id"] == "HP:0002202"
    assert one(hits, "effusion")["assertion"] == "absent"
    assert one(hits, "pneumonia")["assertion"] == "absent"
    second = chexpert_rows[1]["Reports"]
    got = {(h["surface"], h["assertion"]) for h in met_matcher.match(second)}
    assert {
        ("pleural effusion", "present"),
        ("atelectasis", "present"),
        ("effusion", "present"),
        ("Cardiomegaly", "present"),
        ("edema", "absent"),
    } <= got
    third = chexpert_rows[2]["Reports"]
    a = assertions(met_matcher, third)
    assert a["airspace disease"] == "present"
    assert a["atelectasis"] == a["consolidation"] == "uncertain"


def test_negbio_00000086(negbio, met_matcher, met_tree):
    text = negbio["00000086.txt"]
    hits = met_matcher.match(text)
    ptx = one(hits, "pneumothorax")
    assert ptx["assertion"] == "absent"  # "no\npneumothorax": the cue ends the line before
    assert text[ptx["start"] - 3 : ptx["start"]] == "no\n"
    assert met_tree.node(ptx["node_id"]).name == "Pneumothorax"
    scoliosis = one(hits, "scoliosis")
    assert scoliosis["assertion"] == "present"
    assert met_tree.node(scoliosis["node_id"]).name == "Scoliosis"
    labels = observation_labels(hits, met_tree)
    assert labels["Pneumothorax"] == 0
    assert labels["No Finding"] == 1


def test_negbio_00019248(negbio, met_matcher, met_tree):
    text = negbio["00019248.txt"]
    hits = met_matcher.match(text)
    a = {h["surface"].lower(): h["assertion"] for h in hits}
    # "no evidence of focal infiltrate, effusion or pneumothorax."
    assert a["infiltrate"] == a["effusion"] == a["pneumothorax"] == "absent"
    assert a["cardiomegaly"] == "present"
    assert one(hits, "picc") == {
        "node_id": "MEDRAY:finding/support_devices",
        "start": 36,
        "end": 40,
        "surface": "picc",
        "assertion": "present",
    }
    labels = observation_labels(hits, met_tree)
    assert labels["Support Devices"] == 1
    assert labels["Cardiomegaly"] == 1
    assert labels["Lung Opacity"] == labels["Pleural Effusion"] == labels["Pneumothorax"] == 0
    assert labels["No Finding"] is None
    assert labels["Fracture"] is None


def test_full_batch_equals_per_text(chexpert_rows, negbio, met_matcher):
    texts = [r["Reports"] for r in chexpert_rows] + [None] + list(negbio.values())
    table = met_matcher.match_batch(pa.array(texts, pa.string()))
    assert table.schema.equals(HIT_SCHEMA)
    rows = table.to_pylist()
    for i, text in enumerate(texts):
        expected = met_matcher.match(text) if text is not None else []
        got = [{k: v for k, v in r.items() if k != "doc"} for r in rows if r["doc"] == i]
        assert got == expected, i
    assert sorted({r["doc"] for r in rows}) == [0, 1, 2, 3, 5, 6]


def test_full_matcher_pickles(negbio, met_matcher):
    clone = pickle.loads(pickle.dumps(met_matcher))
    for text in negbio.values():
        assert clone.match(text) == met_matcher.match(text)
    assert len(clone) == len(met_matcher)


def test_full_matcher_stats(met_matcher):
    stats = met_matcher.stats
    assert stats.surfaces == len(met_matcher) > 100_000
    assert stats.absent_forms > 10
    assert stats.words > 10_000


# ---- unit cases on the tiny tree ---------------------------------------------------------------


def test_needs_a_tree():
    with pytest.raises(MedrayError):
        Matcher(None)


def test_spans_map_back_with_non_ascii_and_whitespace(tiny_matcher):
    text = "Größe: 3 cm — Lunge 😀 bds.  Pleural\n\n  effusion and\n  pleural   effusions;\tpneumothorax"
    hits = tiny_matcher.match(text)
    for h in hits:
        assert text[h["start"] : h["end"]] == h["surface"]
    # "Pleural" and "effusion" are in different paragraphs (a blank line): no two-word match
    assert [(h["surface"], h["node_id"]) for h in hits] == [
        ("effusion", "T:pe"),
        ("pleural   effusions", "T:pe"),
        ("pneumothorax", "T:ptx"),
    ]
    hit = hits[1]
    assert (hit["start"], hit["end"]) == (text.index("pleural   effusions"), text.index(";"))


def test_wrapped_line_still_matches(tiny_matcher):
    hits = tiny_matcher.match("small pleural\n effusion")
    assert [(h["surface"], h["start"], h["end"]) for h in hits] == [("pleural\n effusion", 6, 23)]


def test_longest_match_wins(tiny_matcher):
    hits = tiny_matcher.match("Left pleural effusion.")
    assert [(h["surface"], h["node_id"], h["start"], h["end"]) for h in hits] == [
        ("pleural effusion", "T:pe", 5, 21),
    ]


def test_word_boundaries(tiny_matcher):
    assert tiny_matcher.match("xeffusionsx") == []
    assert tiny_matcher.match("effusionsx xpneumothorax") == []
    assert [h["surface"] for h in tiny_matcher.match("(effusions)")] == ["effusions"]
    assert [h["surface"] for h in tiny_matcher.match("pleural-effusion")] == ["pleural-effusion"]


def test_adjacent_terms_both_found(tiny_matcher):
    hits = tiny_matcher.match("pleural effusion pneumothorax scoliosis")
    assert [(h["node_id"], h["start"], h["end"]) for h in hits] == [
        ("T:pe", 0, 16),
        ("T:ptx", 17, 29),
        ("T:scol", 30, 39),
    ]


def test_sentence_end_stops_negation(tiny_matcher):
    assert assertions(tiny_matcher, "No pneumothorax. Pleural effusion is present.") == {
        "pneumothorax": "absent",
        "pleural effusion": "present",
    }
    assert assertions(tiny_matcher, "No pneumothorax; scoliosis") == {
        "pneumothorax": "absent",
        "scoliosis": "present",
    }
    assert assertions(tiny_matcher, "No pneumothorax\n\nscoliosis")["scoliosis"] == "present"


def test_negation_crosses_a_wrapped_line(tiny_matcher):
    assert assertions(tiny_matcher, "no\npneumothorax") == {"pneumothorax": "absent"}


def test_termination_word_stops_negation(tiny_matcher):
    assert assertions(tiny_matcher, "No pneumothorax but a small pleural effusion") == {
        "pneumothorax": "absent",
        "pleural effusion": "present",
    }
    assert assertions(tiny_matcher, "no pneumothorax, however scoliosis") == {
        "pneumothorax": "absent",
        "scoliosis": "present",
    }


def test_negation_lists(tiny_matcher):
    assert assertions(tiny_matcher, "no pneumothorax or effusion") == {
        "pneumothorax": "absent",
        "effusion": "absent",
    }
    assert assertions(tiny_matcher, "No evidence of pneumothorax, possible effusion") == {
        "pneumothorax": "absent",
        "effusion": "uncertain",
    }
    assert assertions(tiny_matcher, "without pneumothorax")["pneumothorax"] == "absent"
    assert assertions(tiny_matcher, "effusion, not pneumothorax") == {
        "effusion": "present",
        "pneumothorax": "absent",
    }


def test_negation_window(tiny_matcher):
    # a pre-cue reaches 8 words ahead
    assert assertions(tiny_matcher, "no a b c d e f g h pneumothorax")["pneumothorax"] == "absent"
    assert (
        assertions(tiny_matcher, "no a b c d e f g h i pneumothorax")["pneumothorax"] == "present"
    )


def test_post_cues(tiny_matcher):
    assert assertions(tiny_matcher, "pneumothorax is not excluded") == {"pneumothorax": "uncertain"}
    assert assertions(tiny_matcher, "effusion has resolved") == {"effusion": "absent"}
    assert assertions(tiny_matcher, "Pneumothorax is absent.") == {"pneumothorax": "absent"}
    assert assertions(tiny_matcher, "pneumothorax cannot be excluded") == {
        "pneumothorax": "uncertain"
    }
    # a post-cue in the next sentence governs nothing
    assert assertions(tiny_matcher, "Small effusion. Pneumothorax has resolved.") == {
        "effusion": "present",
        "pneumothorax": "absent",
    }


def test_pre_uncertainty(tiny_matcher):
    assert assertions(tiny_matcher, "possible effusion") == {"effusion": "uncertain"}
    assert assertions(tiny_matcher, "may represent pneumothorax") == {"pneumothorax": "uncertain"}


def test_pseudo_negation(tiny_matcher):
    assert assertions(tiny_matcher, "no change in the pleural effusion") == {
        "pleural effusion": "present"
    }
    assert assertions(tiny_matcher, "No interval change in pneumothorax.") == {
        "pneumothorax": "present"
    }


def test_decimal_numbers_do_not_end_a_sentence(tiny_matcher):
    # "2.5" is one measurement, not a sentence end: the "no" still governs the finding
    assert assertions(tiny_matcher, "no 2.5 cm pneumothorax") == {"pneumothorax": "absent"}
    assert assertions(tiny_matcher, "No effusion, 1.5 cm pneumothorax") == {
        "effusion": "absent",
        "pneumothorax": "absent",
    }
    # but a period after a number, followed by a space, does
    assert assertions(tiny_matcher, "No effusion since 2019. Pneumothorax is seen.") == {
        "effusion": "absent",
        "pneumothorax": "present",
    }
    # and numbered list items are sentences of their own
    assert assertions(tiny_matcher, "1. No effusion. 2. Pneumothorax.") == {
        "effusion": "absent",
        "pneumothorax": "present",
    }


def test_absent_forms(tiny_matcher):
    hits = tiny_matcher.match("Heart size normal, no enlarged heart.")
    assert [(h["node_id"], h["surface"], h["assertion"]) for h in hits] == [
        ("T:cm", "Heart size normal", "absent"),
        ("T:cm", "enlarged heart", "absent"),
    ]
    assert assertions(tiny_matcher, "The heart is enlarged. Enlarged heart.") == {
        "enlarged heart": "present"
    }


def test_empty_and_unknown_text(tiny_matcher):
    assert tiny_matcher.match("") == []
    assert tiny_matcher.match("   \n\n  ") == []
    assert tiny_matcher.match("nothing to see here.") == []
    empty = tiny_matcher.match_batch([])
    assert empty.num_rows == 0 and empty.schema.equals(HIT_SCHEMA)


def test_batch_with_null_and_doc_indices(tiny_matcher):
    texts = ["No pneumothorax.", None, "pleural effusion", "", "nothing", "effusion; scoliosis"]
    table = tiny_matcher.match_batch(pa.array(texts, pa.string()))
    assert table.schema.equals(HIT_SCHEMA)
    assert table.column("doc").to_pylist() == [0, 2, 5, 5]
    rows = table.to_pylist()
    for i, text in enumerate(texts):
        expected = tiny_matcher.match(text) if text is not None else []
        assert [
            {k: v for k, v in r.items() if k != "doc"} for r in rows if r["doc"] == i
        ] == expected
    # a chunked array and a plain list give the same table
    chunked = pa.chunked_array([texts[:3], texts[3:]], pa.string())
    assert tiny_matcher.match_batch(chunked).equals(table)
    assert tiny_matcher.match_batch(texts).equals(table)


def test_documents_never_share_a_sentence(tiny_matcher):
    # the first document ends with a negation cue; it must not reach into the second
    table = tiny_matcher.match_batch(["There is no", "pneumothorax", "pleural", "effusion"])
    assert table.to_pylist() == [
        {
            "doc": 1,
            "node_id": "T:ptx",
            "start": 0,
            "end": 12,
            "surface": "pneumothorax",
            "assertion": "present",
        },
        {
            "doc": 3,
            "node_id": "T:pe",
            "start": 0,
            "end": 8,
            "surface": "effusion",
            "assertion": "present",
        },
    ]


def test_tiny_matcher_pickles(tiny_matcher):
    text = "No pneumothorax. Small pleural effusion, possible scoliosis. Heart size normal."
    clone = pickle.loads(pickle.dumps(tiny_matcher))
    assert clone.match(text) == tiny_matcher.match(text)
    assert len(clone.match(text)) == 4
    assert (clone.pre_window, clone.post_window, clone.min_chars) == (8, 4, 3)
    assert len(clone) == len(tiny_matcher)


def test_axes_filter_and_window_options(tiny_tree):
    symptoms_only = Matcher(tiny_tree, axes=["symptom"])
    assert {h["node_id"] for h in symptoms_only.match("lungs: encysted pleurisy, effusion")} == {
        "T:pe"
    }
    everything = Matcher(tiny_tree)
    assert {h["node_id"] for h in everything.match("lungs: encysted pleurisy, effusion")} == {
        "T:lung",
        "D:j90",
        "T:pe",
    }
    narrow = Matcher(tiny_tree, pre_window=2)
    assert narrow.match("no a b pneumothorax")[0]["assertion"] == "absent"
    assert narrow.match("no a b c pneumothorax")[0]["assertion"] == "present"
    clone = pickle.loads(pickle.dumps(narrow))
    assert clone.match("no a b c pneumothorax")[0]["assertion"] == "present"


def test_tiny_labels(tiny_tree, tiny_matcher):
    labels = observation_labels(
        tiny_matcher.match("No pneumothorax. Possible pleural effusion."), tiny_tree
    )
    assert labels["Pneumothorax"] == 0
    assert labels["Pleural Effusion"] == -1
    assert labels["No Finding"] is None
    assert labels["Cardiomegaly"] is None
    labels = observation_labels([], tiny_tree)
    assert labels["No Finding"] == 1
    assert all(v is None for k, v in labels.items() if k != "No Finding")
    assert len(labels) == 14


# ---- regressions of fixed defects ----------------------------------------------------------


@pytest.mark.parametrize("gap", ["\r\n\r\n", "\n \n"])
def test_blank_line_variants_end_a_sentence(tiny_matcher, gap):
    assert assertions(tiny_matcher, f"No pneumothorax{gap}Pleural effusion.") == {
        "pneumothorax": "absent",
        "pleural effusion": "present",
    }


@pytest.mark.parametrize(
    "text", ["肺 pleural effusion。", "pleural\u3000effusion", "pleural effusion\uff0c"]
)
def test_cjk_punctuation_is_a_word_boundary(tiny_matcher, text):
    assert [h["node_id"] for h in tiny_matcher.match(text)] == ["T:pe"]
