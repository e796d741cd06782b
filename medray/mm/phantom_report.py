"""Radiology reports for phantom studies, in varied phrasing, laid out like MIMIC-CXR's.

Every finding sentence names its class with one of the lexicon's surface forms
(medray/met/sources/radiology_lexicon.py), its severity with a word the lexicon maps to that
severity, its side (and zone, when the finding has one) with direction words, and nothing else
that the lexicon would read as a descriptor; one finding per sentence. Absent classes are stated
with a negation cue, uncertain ones with a hedge, so a lexicon-driven reader can recover the
labels exactly while a text encoder still sees many phrasings of the same facts.
"""

from __future__ import annotations

import textwrap

import numpy as np

SEVERITY_WORDS = {"small": ("small",), "moderate": ("moderate",), "large": ("large",),
                  "mild": ("mild",), "severe": ("severe", "marked")}
SEVERITY_ADVERBS = {"mild": ("mildly",), "moderate": ("moderately",), "severe": ("severely", "markedly")}
HEDGES = ("possible", "cannot exclude", "may represent", "may be", "questionable")
NORMAL_IMPRESSION = "No acute cardiopulmonary process."

_LUNG_ZONE = {"upper": "upper lung", "middle": "mid lung", "lower": "lower lung"}
_ZONE_PLACE = {"upper": ("upper lung", "lung apex"), "middle": ("mid lung",), "lower": ("lower lung", "lung base")}

NEGATIONS = {
    "pleural_effusion": ("No pleural effusion.", "There is no pleural effusion.",
                         "No evidence of pleural effusion.", "No pleural effusions."),
    "pneumothorax": ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax.",
                     "No pneumothorax is seen."),
    "cardiomegaly": ("Heart size is normal.", "The heart is normal in size.", "Normal heart size.",
                     "The heart is not enlarged.", "Heart size is within normal limits."),
    "consolidation": ("No focal consolidation.", "There is no consolidation.", "No evidence of consolidation."),
    "lung_opacity": ("No focal opacity.", "There is no lung opacity.", "No pulmonary opacities."),
    "lung_lesion": ("No pulmonary nodules.", "No lung nodule or mass.", "No suspicious pulmonary nodule."),
    "atelectasis": ("No atelectasis.", "There is no atelectasis.", "No evidence of atelectasis."),
    "edema": ("No pulmonary edema.", "There is no pulmonary edema.", "No evidence of pulmonary edema.",
              "No pulmonary vascular congestion."),
}
_NEGATED_PAIR = ("No pleural effusion or pneumothorax.", "There is no pleural effusion or pneumothorax.",
                 "No pneumothorax or pleural effusion.")
_FILLERS = ("No acute osseous abnormality.", "The osseous structures are intact.",
            "Bony structures are unremarkable.", "The visualized upper abdomen is unremarkable.")
_INDICATIONS = ("with cough", "with shortness of breath", "with chest pain", "with dyspnea on exertion",
                "for preoperative evaluation", "with a history of smoking")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _lobe(side: str, zone: str) -> str:
    if zone == "middle":
        return "middle lobe" if side == "right" else "mid lung"
    return f"{zone} lobe"


def noun_phrases(f, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Ways to name one finding: (phrase, grammar) with grammar "count", "mass" or "plural"."""
    sev = _pick(rng, SEVERITY_WORDS[f.severity])
    side, zone = f.side, f.zone
    both = side == "bilateral"
    if f.name == "pleural_effusion":
        if both:
            return [(f"{sev} bilateral pleural effusions", "plural"), (f"{sev} pleural effusions bilaterally", "plural"),
                    (f"{sev} pleural effusions on both sides", "plural"), (f"{sev} bilateral effusions", "plural")]
        return [(f"{sev} {side} pleural effusion", "count"), (f"{sev} {side}-sided pleural effusion", "count"),
                (f"{sev} pleural effusion on the {side}", "count"), (f"{sev} {side} effusion", "count")]
    if f.name == "cardiomegaly":
        adverb = _pick(rng, SEVERITY_ADVERBS[f.severity])
        return [(f"{sev} cardiomegaly", "mass"), (f"{sev} enlargement of the cardiac silhouette", "mass"),
                (f"{adverb} enlarged cardiac silhouette", "count"), (f"{sev} enlargement of the heart", "mass")]
    if f.name == "consolidation":
        tail = " with air bronchograms" if rng.uniform() < 0.4 else ""
        lobe = _lobe(side, zone)
        out = [(f"{sev} consolidation in the {side} {lobe}{tail}", "mass"),
               (f"{sev} {side} {lobe} consolidation{tail}", "mass")]
        if zone == "lower":
            out.append((f"{sev} consolidation at the {side} lung base{tail}", "mass"))
        return out
    if f.name == "lung_opacity":
        where = _LUNG_ZONE[zone] if zone else "lung"
        if both:
            return [(f"{sev} bilateral {where} opacities", "plural"), (f"{sev} {where} opacities bilaterally", "plural"),
                    (f"{sev} ground-glass opacities in both {where}s", "plural")]
        return [(f"{sev} opacity in the {side} {where}", "count"), (f"{sev} {side} {where} opacity", "count"),
                (f"{sev} ground-glass opacity in the {side} {where}", "mass")]
    if f.name == "pneumothorax":
        tail = " with a visible pleural line" if rng.uniform() < 0.3 else ""
        if zone == "upper":
            return [(f"{sev} {side} apical pneumothorax{tail}", "count"), (f"{sev} pneumothorax at the {side} apex{tail}", "count"),
                    (f"{sev} {side}-sided apical pneumothorax{tail}", "count")]
        return [(f"{sev} {side} pneumothorax{tail}", "count"), (f"{sev} {side}-sided pneumothorax{tail}", "count"),
                (f"{sev} pneumothorax on the {side}{tail}", "count")]
    if f.name == "lung_lesion":
        place, band = _pick(rng, _ZONE_PLACE[zone]), _LUNG_ZONE[zone]
        if f.severity == "small":
            return [(f"{sev} nodule in the {side} {place}", "count"), (f"{sev} {side} {band} nodule", "count"),
                    (f"{sev} pulmonary nodule in the {side} {_lobe(side, zone)}", "count")]
        return [(f"{sev} {side} {band} mass", "count"), (f"{sev} pulmonary mass in the {side} {_lobe(side, zone)}", "count"),
                (f"{sev} mass lesion in the {side} {place}", "count")]
    if f.name == "atelectasis":
        tail = " with volume loss" if f.severity != "mild" and rng.uniform() < 0.5 else ""
        if both:
            return [(f"{sev} bilateral basilar atelectasis{tail}", "mass"), (f"{sev} atelectasis at both lung bases{tail}", "mass"),
                    (f"{sev} bilateral lower lobe atelectasis{tail}", "mass")]
        return [(f"{sev} {side} basilar atelectasis{tail}", "mass"), (f"{sev} atelectasis at the {side} lung base{tail}", "mass"),
                (f"{sev} {side} lower lobe atelectasis{tail}", "mass")]
    if f.name == "edema":
        tail = " with Kerley B lines" if f.severity != "mild" and rng.uniform() < 0.4 else ""
        return [(f"{sev} bilateral pulmonary edema{tail}", "mass"), (f"{sev} pulmonary edema in both lungs{tail}", "mass"),
                (f"{sev} pulmonary vascular congestion bilaterally", "mass")]
    raise ValueError(f"unknown finding class {f.name!r}")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _article(grammar: str) -> str:
    return "a " if grammar == "count" else ""


def _whole_sentences(f, rng: np.random.Generator) -> list[str]:
    """Class-specific sentences that do not fit the noun-phrase frames."""
    sev = _pick(rng, SEVERITY_WORDS[f.severity])
    if f.name == "pleural_effusion":
        if f.side == "bilateral":
            return [f"Blunting of both costophrenic angles is consistent with {sev} bilateral pleural effusions."]
        return [f"Blunting of the {f.side} costophrenic angle is consistent with a {sev} pleural effusion."]
    if f.name == "cardiomegaly":
        return [f"The cardiac silhouette is enlarged, {sev} in degree.", f"The heart is enlarged, {sev} in degree."]
    return []


def present_sentence(f, rng: np.random.Generator, terse: bool = False) -> str:
    """One sentence stating `f`, hedged when it is uncertain; `terse` for the impression's style."""
    phrase, grammar = _pick(rng, noun_phrases(f, rng))
    if terse and f.certainty != "uncertain":
        return f"{_cap(phrase)}."
    if f.certainty == "uncertain":
        frames = (f"Possible {phrase}.", f"Cannot exclude {_article(grammar)}{phrase}.",
                  f"Findings may represent {_article(grammar)}{phrase}.",
                  f"There may be {_article(grammar)}{phrase}.", f"Questionable {phrase}.")
        return _pick(rng, frames)
    verb = "are" if grammar == "plural" else "is"
    frames = [f"There {verb} {_article(grammar)}{phrase}.", f"{_cap(phrase)}.", f"{_cap(phrase)} {verb} seen.",
              f"{_cap(_article(grammar) + phrase)} {verb} present."]
    frames += _whole_sentences(f, rng)
    return _pick(rng, frames)


def negated_sentences(negated: list[str], rng: np.random.Generator) -> list[str]:
    names = list(negated)
    out = []
    if "pleural_effusion" in names and "pneumothorax" in names and rng.uniform() < 0.6:
        out.append(_pick(rng, _NEGATED_PAIR))
        names = [n for n in names if n not in ("pleural_effusion", "pneumothorax")]
    out += [_pick(rng, NEGATIONS[n]) for n in names]
    return out


def write_report(findings: list, negated: list[str], rng: np.random.Generator) -> str:
    """FINDINGS and IMPRESSION for a study, with a MIMIC-CXR header, wrapped at 78 columns."""
    present = [present_sentence(f, rng) for f in findings]
    negatives = negated_sentences(negated, rng)
    order = rng.permutation(len(present))
    body = [present[i] for i in order] + [negatives[i] for i in rng.permutation(len(negatives))]
    if {f.name for f in findings} <= {"cardiomegaly"} and rng.uniform() < 0.5:
        body.insert(int(rng.integers(len(body) + 1)), "The lungs are clear.")
    if rng.uniform() < 0.5:
        body.append(_pick(rng, _FILLERS))
    if findings:
        impression = [present_sentence(findings[i], rng, terse=True) for i in order]
        if "pneumothorax" in negated and rng.uniform() < 0.3:
            impression.append("No pneumothorax.")
        if rng.uniform() < 0.35 and len(impression) > 1:
            impression_text = "\n".join(f"{i}. {s}" for i, s in enumerate(impression, 1))
        else:
            impression_text = " ".join(impression)
    else:
        impression_text = NORMAL_IMPRESSION
    indication = f"___-year-old {_pick(rng, ('man', 'woman'))} {_pick(rng, _INDICATIONS)}."
    exam = _pick(rng, ("CHEST (PA AND LAT)", "CHEST (PA)"))
    return "\n".join([
        " " * 33 + "FINAL REPORT",
        f" EXAMINATION:  {exam}",
        " ",
        _wrap(f"INDICATION:  {indication}"),
        " ",
        " TECHNIQUE:  Chest PA view.",
        " ",
        f" COMPARISON:  {_pick(rng, ('None.', '___.'))}",
        " ",
        " FINDINGS:",
        " ",
        _wrap(" ".join(body)),
        " ",
        " IMPRESSION:",
        " ",
        "\n".join(_wrap(line) for line in impression_text.split("\n")),
        "",
    ])


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=78, initial_indent=" ", subsequent_indent=" ", break_on_hyphens=False)
