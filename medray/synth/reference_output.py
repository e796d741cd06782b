"""The output each synthesis task asks for, written from its reference: gold text for the validators and
for teaching a model the output formats before it generates (`medray.synth.warm_up`).

Only facts the reference holds are used (the answer, the options, the finding's path and attributes), in
the exact line formats `medray.synth.validate` parses, so every rendered output passes validation; a test
holds the two to that.
"""

from __future__ import annotations

import json

from medray.synth.prompts import ANSWER, CAPTION, OPTIONS, QUESTION, format_options
from medray.train.cot import StructuredCoT


def _finding_phrase(finding: dict) -> str:
    attributes = finding.get("attributes") or {}
    words = [attributes.get("severity"), attributes.get("side")]
    name = finding["path"][-1].lower()
    return " ".join(w for w in (*words, name) if w and w != "none")


def _where(reference: dict) -> tuple[str, str]:
    path = reference.get("path") or {}
    modality = (path.get("modality") or ["radiograph"])[-1]
    anatomy = (path.get("anatomy") or ["chest"])[-1].lower()
    return modality, anatomy


def _choice_question(reference: dict) -> str:
    _, anatomy = _where(reference)
    return f"Which finding does this image of the {anatomy} show?"


def reference_output(kind: str, reference: dict | str) -> str:
    """The text a perfect generation of a task of `kind` would be."""
    ref = json.loads(reference) if isinstance(reference, str) else reference
    modality, anatomy = _where(ref)
    findings = (ref.get("path") or {}).get("findings") or []
    answer = f"{ref.get('answer_letter')}) {ref.get('answer')}"
    if kind == "caption":
        named = ", ".join(_finding_phrase(f) for f in findings) or "no finding"
        return f"{CAPTION}: {modality} of the {anatomy} showing {named}."
    if kind == "vqa_yesno":
        return f"{QUESTION}: Does this image of the {anatomy} show {ref['subject'].lower()}?\n{ANSWER}: {ref['answer']}"
    if kind == "vqa_mcq":
        return f"{QUESTION}: {_choice_question(ref)}\n{OPTIONS}: {format_options(ref['options'])}\n{ANSWER}: {answer}"
    if kind == "vqa_open":
        return f"{QUESTION}: What finding does this image of the {anatomy} show?\n{ANSWER}: {ref['answer']}."
    if kind == "reasoning_vqa":
        seen = next((f for f in findings if f.get("node_id") == ref.get("answer_node_id")), None)
        observation = f"The {anatomy} shows {_finding_phrase(seen) if seen else ref['answer'].lower()}."
        others = [o for o in ref["options"] if o != ref["answer"]]
        cot = StructuredCoT(
            understanding="The question asks which of the options this image shows.",
            evidence=observation, visual=True,
            reasoning=f"What is seen fits option {ref['answer_letter']}; the other options ({', '.join(others)}) are not seen.",
            conclusion=f"The image shows option {ref['answer_letter']}.", answer=answer)
        return f"{QUESTION}: {_choice_question(ref)}\n{OPTIONS}: {format_options(ref['options'])}\n{cot.render()}"
    raise ValueError(f"unknown kind {kind!r}")
