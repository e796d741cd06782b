"""Cleaning rules on planted junk and real-looking clinical text; hashes; PII scrubbing."""

from __future__ import annotations

import pickle
from collections import Counter

import pyarrow as pa
import pytest

from medray.data.clean import REASONS, ExactHashStage, RulesConfig, RulesStage
from medray.data.pii import scrub_pii
from medray.data.stage import RECORD_SCHEMA
from medray.data.text_stats import normalized_text_hash, text_stats
from medray.errors import ConfigError

CLINICAL = (
    "CHEST RADIOGRAPH, PA AND LATERAL\n"
    "Indication: 67-year-old man with cough and fever for 3 days.\n"
    "Findings: There is a small left pleural effusion with adjacent atelectasis. The heart size is normal. "
    "No pneumothorax. Blood pressure 120/80 mmHg, heart rate 88 bpm, SpO2 94% on 2 L.\n"
    "Impression: Small left pleural effusion, possibly parapneumonic (ICD-10 J90). A 2.5 cm nodule in the "
    "right upper lobe has been stable since 2019; follow-up CT in 6-12 months is recommended. "
    "Continue amoxicillin 500 mg three times daily."
)
ABBREVIATED = ("Hx HTN, DM2. CXR neg. Abd soft NT ND. Plan: f/u 2 wks, labs CBC BMP, recheck in clinic. "
               "Pt stable, d/c home today with meds as listed above.")
FRENCH = ("Radiographie thoracique : petit épanchement pleural gauche avec atélectasie adjacente. La taille du cœur "
          "est normale. Pas de pneumothorax. Une surveillance par scanner dans six mois est recommandée.")
GERMAN = ("Röntgen-Thorax: kleiner linksseitiger Pleuraerguss mit angrenzender Atelektase. Die Herzgröße ist normal. "
          "Kein Pneumothorax. Eine Verlaufskontrolle mittels CT in sechs Monaten wird empfohlen.")
SPANISH = ("Radiografía de tórax: pequeño derrame pleural izquierdo con atelectasia adyacente. El tamaño cardíaco es "
           "normal. Sin neumotórax. Se recomienda un control con tomografía en seis meses.")

JUNK = {
    "boilerplate": ("We use cookies to improve your experience on this site.\nAccept all cookies\n"
                    "Home | About us | Contact | Login | Search\nSubscribe to our newsletter for weekly health tips!\n"
                    "Privacy Policy | Terms of Use\nCopyright © 2024 HealthSite Inc. All rights reserved.\n"
                    "Flu season is here."),
    "too_short": "Normal chest radiograph.",
    "symbol_ratio": "$$$ BEST DEALS $$$ ### *** >>> CLICK <<< ### $$$ @@@ ~~~ ^^^ ||| {{{ }}} === ### pills ***",
    "digit_ratio": "Order numbers: 4839 2931 8842 1193 5520 7731 9902 3318 6645 2207 8853 1149 6620 3391 7780",
    "repeated_lines": "\n".join(["Discount medical supplies shipped overnight to your door"] * 6 + ["Order today."]),
    "language": FRENCH,
}

PII_TEXT = (
    "Patient John, DOB: 01/02/1960, MRN 1234567, seen today. Reach him at john.smith@mail.com or "
    "jsmith@hospital.org, phone 555-123-4567 or +44 20 7946 0958. SSN 123-45-6789. Medical record #: 55512345. "
    "Date of birth: March 3, 1961. Fax: (617) 555-0199."
)
PII_SCRUBBED = (
    "Patient John, DOB: [DOB], MRN [MRN], seen today. Reach him at [EMAIL] or "
    "[EMAIL], phone [PHONE] or [PHONE]. SSN [SSN]. Medical record #: [MRN]. "
    "Date of birth: [DOB]. Fax: [PHONE]."
)
CLINICAL_NUMBERS = (
    "Findings: 2.5 cm nodule; BP 120/80 mmHg; ICD-10 J90 and ICD-10-CM I10; metoprolol 25 mg twice daily; "
    "smoker since 1998; HR 72; Hb 13.5 g/dL; seen on 03/15/2021; EF 55-60%; +2 pitting edema; 1:100 dilution; "
    "T 37.2 °C; WBC 7.2 x 10^9/L; CPT 71046; platelets 150 000-450 000; born in 1960; call back in 2 weeks; "
    "SpO2 95% on 2 L; 10 mg/kg q8h; 8.0 x 10.5 x 12.0 cm"
)


def _table(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"id": [f"t.jsonl:{i}" for i in range(n)], "text": texts,
                     "source": ["t.jsonl"] * n, "meta": ["{}"] * n}, schema=RECORD_SCHEMA)


@pytest.fixture(scope="module")
def rules() -> RulesStage:
    stage = RulesStage()
    stage.setup()
    return stage


def test_each_rule_drops_its_planted_junk_and_keeps_clinical_text(rules):
    names = list(JUNK)
    result = rules(_table([CLINICAL, ABBREVIATED, *JUNK.values()]))
    reasons = dict(zip(result.dropped.column("id").to_pylist(), result.dropped.column("reason").to_pylist()))
    assert reasons == {f"t.jsonl:{i + 2}": name for i, name in enumerate(names)}
    assert result.kept.column("id").to_pylist() == ["t.jsonl:0", "t.jsonl:1"]
    assert result.kept.column("text")[0].as_py() == CLINICAL  # already clean: unchanged
    assert result.dropped.column("text").to_pylist() == list(JUNK.values())  # dropped as they came
    assert result.kept.num_rows + result.dropped.num_rows == 2 + len(JUNK)


def test_too_long_and_reason_order():
    stage = RulesStage(RulesConfig(max_words=40, languages=[]))
    result = stage(_table([CLINICAL, JUNK["boilerplate"], " ".join(["word"] * 30)]))
    assert result.dropped.column("reason").to_pylist() == ["too_long", "boilerplate"]
    assert result.kept.column("text").to_pylist() == [" ".join(["word"] * 30)]
    assert REASONS.index("boilerplate") < REASONS.index("too_short") < REASONS.index("language")


def test_non_english_medical_text_is_dropped_as_language(rules):
    result = rules(_table([FRENCH, GERMAN, SPANISH, CLINICAL]))
    assert result.dropped.column("reason").to_pylist() == ["language"] * 3
    assert result.kept.column("id").to_pylist() == ["t.jsonl:3"]
    assert result.counts["language_marker_accepted"] == 1  # CLINICAL: English by its marker words
    assert result.counts["language_detector_calls"] == 3


def test_other_allowed_languages_and_no_language_rule():
    french_ok = RulesStage(RulesConfig(languages=["fr"]))
    assert french_ok(_table([FRENCH, GERMAN])).kept.column("text").to_pylist() == [FRENCH]
    anything = RulesStage(RulesConfig(languages=[]))
    assert anything(_table([FRENCH, GERMAN])).kept.num_rows == 2


def test_normalisation_and_boilerplate_lines_removed_from_kept_text(rules):
    raw = ("Skip to main content\r\n"
           "Home » Health » Cardiology\r\n"
           "Atrial  fibrillation is the most common sustained arrhythmia in adults.   \r\n\r\n\r\n\r\n"
           "Anticoagulation with apixaban 5 mg twice daily reduces the risk of stroke\u00a0in most patients.\x07\r\n"
           "Read more\r\n"
           "Cafe\u0301 staff were trained to recognise the symptoms of stroke. \u200b\r\n"
           "© 2024 Heart Journal. All rights reserved.")
    result = rules(_table([raw]))
    assert result.kept.column("text")[0].as_py() == (
        "Atrial  fibrillation is the most common sustained arrhythmia in adults.\n\n"
        "Anticoagulation with apixaban 5 mg twice daily reduces the risk of stroke in most patients.\n"
        "Caf\u00e9 staff were trained to recognise the symptoms of stroke.")
    assert result.counts["boilerplate_chars_removed"] == len("Skip to main content\nHome » Health » Cardiology\n"
                                                     "Read more\n© 2024 Heart Journal. All rights reserved.")


def test_lines_that_only_mention_a_phrase_are_content(rules):
    text = ("The hospital's privacy policy was revised after the audit, and clinicians now document consent for "
            "every telehealth visit together with the indication and the name of the supervising physician on call.\n"
            "Outcomes differed in terms of use of mechanical ventilation.\n"
            "Help with search strategies came from the library.")
    result = rules(_table([text]))
    assert result.kept.column("text").to_pylist() == [text]
    assert result.counts["boilerplate_chars_removed"] == 0


def test_boilerplate_prefilter_gives_the_same_text_as_the_full_pattern_on_every_text():
    import pyarrow.compute as pc

    from medray.data.text_normalize import build_boilerplate

    config = RulesConfig()
    boilerplate = build_boilerplate(config.boilerplate_phrases, config.boilerplate_lines, config.boilerplate_context_chars)
    texts = pa.array([CLINICAL, JUNK["boilerplate"], "Home | About | Contact\nAspirin 81 mg daily.", "Read more",
                      "x" * 150 + " click here " + "y" * 150, "Click HERE\nTroponin was normal.", "", ABBREVIATED,
                      "Advertisement\n\nSponsored content\nWarfarin dosing"])
    removed = boilerplate.remove(texts)
    assert removed.to_pylist() == pc.replace_substring_regex(texts, boilerplate.pattern, "").to_pylist()
    assert removed.to_pylist()[5] == "Troponin was normal."  # the check really removed something
    assert removed.to_pylist()[4] == texts[4].as_py()  # a phrase inside a long line is content


def test_pii_counts_are_exact_and_placeholders_typed(rules):
    scrubbed, counts = scrub_pii(pa.array([PII_TEXT]))
    assert scrubbed[0].as_py() == PII_SCRUBBED
    assert counts == Counter(pii_email=2, pii_dob=2, pii_mrn=2, pii_phone=3, pii_ssn=1)
    result = rules(_table([PII_TEXT + " " + CLINICAL]))
    assert result.kept.column("text")[0].as_py() == PII_SCRUBBED + " " + CLINICAL
    assert {k: v for k, v in result.counts.items() if k.startswith("pii_")} == counts


def test_clinical_numbers_survive_scrubbing():
    scrubbed, counts = scrub_pii(pa.array([CLINICAL_NUMBERS, CLINICAL]))
    assert scrubbed.to_pylist() == [CLINICAL_NUMBERS, CLINICAL]
    assert sum(counts.values()) == 0


def test_scrub_only_the_kinds_asked_for():
    scrubbed, counts = scrub_pii(pa.array([PII_TEXT]), ["email"])
    assert scrubbed[0].as_py() == PII_TEXT.replace("john.smith@mail.com", "[EMAIL]").replace("jsmith@hospital.org", "[EMAIL]")
    assert counts == Counter(pii_email=2)


def test_counts_reconcile_and_batch_splits_do_not_change_output(rules):
    texts = [CLINICAL, PII_TEXT + " " + CLINICAL, *JUNK.values(), GERMAN, ABBREVIATED, CLINICAL.upper()] * 3
    whole = rules(_table(texts))
    assert whole.kept.num_rows + whole.dropped.num_rows == len(texts)
    assert whole.reason_counts() == Counter({r: 3 for r in JUNK} | {"language": 6})
    table = _table(texts)
    kept, dropped, counts = [], [], Counter()
    for start in range(0, len(texts), 4):
        part = rules(table.slice(start, 4))
        kept.append(part.kept)
        dropped.append(part.dropped)
        counts.update(part.counts)
    assert pa.concat_tables(kept).equals(whole.kept)
    assert pa.concat_tables(dropped).equals(whole.dropped)
    assert +counts == +whole.counts


def test_empty_batch(rules):
    result = rules(_table([]))
    assert (result.kept.num_rows, result.dropped.num_rows) == (0, 0)
    assert result.kept.schema == RECORD_SCHEMA
    assert "reason" in result.dropped.column_names


def test_stage_pickles_without_its_detector_and_works_after(rules):
    copy = pickle.loads(pickle.dumps(rules))
    assert copy._detector is None
    assert copy(_table([FRENCH, CLINICAL])).reason_counts() == Counter(language=1)


def test_text_stats_counts():
    stats = text_stats(pa.array(["a b c\nfoo bar\nFoo  Bar\nx", "### $$$ 123", ""]))
    # chars, non-space, letters, digits, symbols, words, non-space chars in repeated lines
    assert stats.tolist() == [[24, 16, 16, 0, 0, 8, 6], [11, 9, 0, 3, 6, 3, 0], [0, 0, 0, 0, 0, 0, 0]]


def test_hash_folds_case_and_whitespace_only():
    same = ["Pleural effusion, left.", "  PLEURAL   effusion,\nLeft.\t", "pleural\u00a0effusion, left."]
    other = ["Pleural effusion, right.", "Pleural effusion left.", "Pleuraleffusion, left."]
    hashes = normalized_text_hash(pa.array(same + other))
    assert hashes.dtype.name == "uint64"
    assert len(set(hashes[:3].tolist())) == 1
    assert len(set(hashes.tolist())) == 4
    # Stable across processes and machines: a fixed value, not Python's seeded hash().
    assert int(normalized_text_hash(pa.array(["hello world"]))[0]) == 8965976371695117781
    accents = normalized_text_hash(pa.array(["\u00c9mile \u00c9COLE", "\u00e9mile \u00e9cole", "e\u0301mile e\u0301cole", "emile ecole"]))
    assert accents[0] == accents[1] == accents[2] != accents[3]  # case, and composed or not, fold; accents do not


def test_hash_of_chunked_and_sliced_arrays_matches_whole():
    texts = [CLINICAL, FRENCH, None, "", PII_TEXT, "x"]
    whole = normalized_text_hash(pa.array(texts))
    chunked = normalized_text_hash(pa.chunked_array([pa.array(texts[:2]), pa.array(texts[2:])]))
    sliced = normalized_text_hash(pa.array(texts).slice(2))
    assert chunked.tolist() == whole.tolist()
    assert sliced.tolist() == whole[2:].tolist()
    assert whole[2] == whole[3]  # a null hashes as the empty text


def test_exact_hash_stage_adds_column_and_keeps_all():
    result = ExactHashStage()(_table([CLINICAL, CLINICAL.upper(), FRENCH]))
    assert result.kept.num_rows == 3 and result.dropped.num_rows == 0
    assert result.kept.schema.field("text_hash").type == pa.uint64()
    hashes = result.kept.column("text_hash").to_pylist()
    assert hashes[0] == hashes[1] != hashes[2]


@pytest.mark.parametrize(("overrides", "key"), [
    ({"scrub_pii": ["email", "fingerprint"]}, "rules.scrub_pii"),
    ({"languages": ["xx"]}, "rules.languages"),
    ({"language_candidates": ["english"]}, "rules.language_candidates"),
    ({"languages": ["EN"]}, "rules.languages"),
    ({"language_candidates": ["en"]}, "rules.language_candidates"),
    ({"boilerplate_phrases": ["(unclosed"]}, "rules.boilerplate_phrases"),
    ({"max_digit_ratio": 1.5}, "rules.max_digit_ratio"),
    ({"min_words": 50, "max_words": 10}, "rules.max_words"),
])
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        RulesStage(RulesConfig(**overrides))
    assert err.value.key == key
