"""Prompts for knowledge-aware synthesis: the ground truth goes in, a fixed line format comes out.

The tree and the pair's labels decide the facts (the answer, the options, the
finding's path); the model only words them. Each prompt therefore states the
facts and asks for `Field: value` lines (`Caption:`, `Question:`,
`Options:`, `Answer:`), plus the structured chain of thought of
`medray.train.cot` for reasoning items, so `medray.synth.validate` can parse
every output and check it against the reference it was built from.
"""

from __future__ import annotations

from medray.train.cot import (
    ANSWER_PREFIX,
    CONCLUSION,
    HEADING,
    REASONING,
    UNDERSTANDING,
    VISUAL_OBSERVATION,
)

CAPTION, QUESTION, OPTIONS, ANSWER = "Caption", "Question", "Options", "Answer"
SYSTEM = "You write training data for a medical imaging assistant. Follow the output format exactly."
OPTION_SEPARATOR = "; "


def format_options(options: list[str]) -> str:
    """`A) x; B) y; ...`: the one spelling of an option list in prompts, outputs and SFT rows."""
    return OPTION_SEPARATOR.join(f"{letter_of(i)}) {name}" for i, name in enumerate(options))


def letter_of(index: int) -> str:
    return "ABCDEFGH"[index]


def _context(reference: dict, findings_text: str, max_chars: int) -> list[str]:
    path = reference.get("path") or {}
    lines = [SYSTEM, ""]
    if path.get("modality"):
        lines.append(f"Imaging modality: {' > '.join(path['modality'])}")
    if path.get("anatomy"):
        lines.append(f"Anatomy: {' > '.join(path['anatomy'])}")
    for finding in path.get("findings") or ():
        detail = ", ".join(f"{k} {v}" for k, v in (finding.get("attributes") or {}).items())
        lines.append(f"Finding in the image: {' > '.join(finding['path'])}" + (f" ({detail})" if detail else ""))
    text = " ".join(findings_text.split())
    if text:
        lines.append(f"Report findings: {text[:max_chars]}")
    return lines


def caption_prompt(reference: dict, findings_text: str, max_chars: int = 1200) -> str:
    lines = _context(reference, findings_text, max_chars)
    lines += ["", "Write one enriched caption of this image for a vision-language model: name the modality, "
              "the anatomy and every finding listed above (by its last name in the path), with side and severity "
              "where given. State no other finding.",
              "Reply with exactly one line:", f"{CAPTION}: <the caption>"]
    return "\n".join(lines)


def yesno_prompt(reference: dict, findings_text: str, max_chars: int = 1200) -> str:
    lines = _context(reference, findings_text, max_chars)
    lines += ["", f"Write a yes/no question asking whether the image shows {reference['subject']}. "
              f"The correct answer is {reference['answer']}. The question must name {reference['subject']} "
              "and must not contain the words yes or no.",
              "Reply with exactly two lines:", f"{QUESTION}: <the question>", f"{ANSWER}: {reference['answer']}"]
    return "\n".join(lines)


def mcq_prompt(reference: dict, findings_text: str, max_chars: int = 1200) -> str:
    lines = _context(reference, findings_text, max_chars)
    options = format_options(reference["options"])
    lines += ["", f"Write a multiple-choice question about this image whose correct answer is "
              f"{reference['answer_letter']}) {reference['answer']}. Use exactly these options, in this order: {options}. "
              f"The question must not name {reference['answer']}.",
              "Reply with exactly three lines:", f"{QUESTION}: <the question>", f"{OPTIONS}: {options}",
              f"{ANSWER}: {reference['answer_letter']}) {reference['answer']}"]
    return "\n".join(lines)


def open_prompt(reference: dict, findings_text: str, max_chars: int = 1200) -> str:
    lines = _context(reference, findings_text, max_chars)
    lines += ["", f"Write an open question about this image whose answer is {reference['answer']} "
              "(use its side, location or severity to make it unambiguous). The question must not name "
              f"{reference['answer']}; the answer must name it.",
              "Reply with exactly two lines:", f"{QUESTION}: <the question>", f"{ANSWER}: <the answer>"]
    return "\n".join(lines)


def reasoning_prompt(reference: dict, findings_text: str, max_chars: int = 1200) -> str:
    lines = _context(reference, findings_text, max_chars)
    options = format_options(reference["options"])
    answer = f"{reference['answer_letter']}) {reference['answer']}"
    lines += ["", f"Write a multiple-choice question about this image whose correct answer is {answer}, "
              f"with exactly these options in this order: {options}, then reason to the answer step by step. "
              f"The question must not name {reference['answer']}. Describe only what the image shows.",
              "Reply in exactly this format:", f"{QUESTION}: <the question>", f"{OPTIONS}: {options}",
              f"{HEADING}{UNDERSTANDING}", "<what the question asks>", f"{HEADING}{VISUAL_OBSERVATION}",
              "<what the image shows>", f"{HEADING}{REASONING}", "<why one option fits and the others do not>",
              f"{HEADING}{CONCLUSION}", "<the conclusion>", f"{ANSWER_PREFIX}{answer}"]
    return "\n".join(lines)


PROMPTS = {"caption": caption_prompt, "vqa_yesno": yesno_prompt, "vqa_mcq": mcq_prompt, "vqa_open": open_prompt,
           "reasoning_vqa": reasoning_prompt}


def build_prompt(kind: str, reference: dict, findings_text: str, max_chars: int = 1200) -> str:
    """The prompt of one item; `max_chars` caps the report text quoted in it."""
    return PROMPTS[kind](reference, findings_text, max_chars)
