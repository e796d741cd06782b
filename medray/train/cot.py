"""Structured chain of thought as a target format: four sections, fixed markup, checked both ways.

The MedXIAOHE recipe trains reasoning in four sections, in this order:
Understanding (what is asked), Visual observation for image samples or
Knowledge recall for text samples (the evidence), Reasoning, Conclusion.
A fixed markup makes the format something a model can be trained to emit
and a reward can check:

    ## Understanding
    ...
    ## Visual observation        (or: ## Knowledge recall)
    ...
    ## Reasoning
    ...
    ## Conclusion
    ...
    Answer: <the final answer>

Only a line that is exactly `## <section name>` starts a section, so
markdown headings inside a section's text stay text. `parse(render(c)) == c`
for every valid `c`; `parse` of a malformed text raises CoTError naming the
first section at fault (missing, empty, duplicated, out of order, or the
wrong evidence section for the sample's kind).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from medray.train.chat_format import SampleError

UNDERSTANDING = "Understanding"
VISUAL_OBSERVATION = "Visual observation"
KNOWLEDGE_RECALL = "Knowledge recall"
REASONING = "Reasoning"
CONCLUSION = "Conclusion"
SECTIONS = (UNDERSTANDING, VISUAL_OBSERVATION, KNOWLEDGE_RECALL, REASONING, CONCLUSION)
HEADING = "## "
ANSWER_PREFIX = "Answer: "

# Keys of a sample's `cot` object: the section names in snake case.
COT_KEYS = {name.lower().replace(" ", "_"): name for name in SECTIONS}

COT_REASONS = ("cot_missing_section", "cot_empty_section", "cot_duplicate_section", "cot_out_of_order",
               "cot_wrong_evidence", "cot_text_before_sections", "cot_unknown_section", "bad_cot")


class CoTError(SampleError):
    """A chain of thought that breaks the format; `section` names the section at fault."""

    def __init__(self, reason: str, section: str, detail: str = ""):
        self.section = section
        super().__init__(reason, f"{section}: {detail}" if detail else section)


def _clean(text) -> str:
    return text.strip() if isinstance(text, str) else ""


@dataclass(frozen=True)
class StructuredCoT:
    understanding: str
    evidence: str  # the Visual observation (image samples) or Knowledge recall (text samples)
    reasoning: str
    conclusion: str
    visual: bool = False  # which evidence section this is
    answer: Optional[str] = None  # noqa: UP045  (the last line of the Conclusion, after "Answer: ")

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                object.__setattr__(self, f.name, value.strip())

    @property
    def evidence_section(self) -> str:
        return VISUAL_OBSERVATION if self.visual else KNOWLEDGE_RECALL

    def sections(self) -> list[tuple[str, str]]:
        """(heading, body) in order; the answer is the Conclusion's last line."""
        conclusion = self.conclusion
        if self.answer:
            conclusion = f"{conclusion}\n{ANSWER_PREFIX}{self.answer}" if conclusion else f"{ANSWER_PREFIX}{self.answer}"
        return [(UNDERSTANDING, self.understanding), (self.evidence_section, self.evidence),
                (REASONING, self.reasoning), (CONCLUSION, conclusion)]

    def validate(self) -> None:
        """Raises CoTError on the first empty section."""
        for name, body in self.sections():
            if not body:
                raise CoTError("cot_empty_section", name, "no text")

    def render(self) -> str:
        self.validate()
        return "\n\n".join(f"{HEADING}{name}\n{body}" for name, body in self.sections()) + "\n"

    @classmethod
    def parse(cls, text: str, visual: bool | None = None) -> StructuredCoT:
        """The sections of `text`; `visual` (when known) says which evidence section must appear."""
        if not isinstance(text, str):
            raise CoTError("bad_cot", UNDERSTANDING, f"expected text, got {type(text).__name__}")
        found: list[tuple[str, list[str]]] = []
        preamble: list[str] = []
        for line in text.splitlines():
            name = line[len(HEADING):].strip() if line.startswith(HEADING) else None
            if name in SECTIONS:
                if any(name == n for n, _ in found):
                    raise CoTError("cot_duplicate_section", name, "appears twice")
                found.append((name, []))
            elif found:
                found[-1][1].append(line)
            else:
                preamble.append(line)
        if any(line.strip() for line in preamble):
            raise CoTError("cot_text_before_sections", UNDERSTANDING, f"text before the first section: {preamble[0]!r:.60}")
        names = [n for n, _ in found]
        if VISUAL_OBSERVATION in names and KNOWLEDGE_RECALL in names:
            second = max(names.index(VISUAL_OBSERVATION), names.index(KNOWLEDGE_RECALL))
            raise CoTError("cot_duplicate_section", names[second], "a sample has one evidence section")
        is_visual = VISUAL_OBSERVATION in names if visual is None else visual
        evidence = VISUAL_OBSERVATION if is_visual else KNOWLEDGE_RECALL
        wrong = KNOWLEDGE_RECALL if is_visual else VISUAL_OBSERVATION
        if wrong in names:
            kind = "an image sample" if is_visual else "a text sample"
            raise CoTError("cot_wrong_evidence", wrong, f"{kind} takes {evidence}")
        expected = [UNDERSTANDING, evidence, REASONING, CONCLUSION]
        for name in expected:
            if name not in names:
                raise CoTError("cot_missing_section", name, "not found")
        for name, want in zip(names, expected):
            if name != want:
                raise CoTError("cot_out_of_order", name, f"found where {want} belongs")
        body = {name: "\n".join(lines).strip() for name, lines in found}
        conclusion, answer = _split_answer(body[CONCLUSION])
        cot = cls(body[UNDERSTANDING], body[evidence], body[REASONING], conclusion, is_visual, answer)
        cot.validate()
        return cot

    @classmethod
    def from_fields(cls, cot: dict, *, visual: bool, answer: str | None = None) -> StructuredCoT:
        """From a sample's `cot` object (snake-case section keys); raises CoTError naming the section."""
        if not isinstance(cot, dict):
            raise CoTError("bad_cot", UNDERSTANDING, f"cot must be an object or text, got {type(cot).__name__}")
        unknown = [k for k in cot if k not in COT_KEYS]
        if unknown:
            raise CoTError("cot_unknown_section", str(unknown[0]), f"expected keys {', '.join(COT_KEYS)}")
        evidence_key, wrong_key = ("visual_observation", "knowledge_recall") if visual else ("knowledge_recall", "visual_observation")
        if _clean(cot.get(wrong_key)):
            kind = "an image sample" if visual else "a text sample"
            raise CoTError("cot_wrong_evidence", COT_KEYS[wrong_key], f"{kind} takes {COT_KEYS[evidence_key]}")
        for key in ("understanding", evidence_key, "reasoning"):
            if not _clean(cot.get(key)):
                reason = "cot_missing_section" if key not in cot else "cot_empty_section"
                raise CoTError(reason, COT_KEYS[key], "no text")
        answer = _clean(answer) or None
        if not _clean(cot.get("conclusion")) and not answer:
            raise CoTError("cot_missing_section" if "conclusion" not in cot else "cot_empty_section", CONCLUSION,
                           "no conclusion and no answer")
        result = cls(cot["understanding"], cot[evidence_key], cot["reasoning"], _clean(cot.get("conclusion")), visual, answer)
        result.validate()
        return result


def _split_answer(conclusion: str) -> tuple[str, str | None]:
    head, _, last = conclusion.rpartition("\n")
    if last.startswith(ANSWER_PREFIX):
        return head.strip(), last[len(ANSWER_PREFIX):].strip() or None
    return conclusion, None


def _question_content(question, n_images: int):
    """The user turn: images first (unless the question places them), then the question's text."""
    if isinstance(question, list):
        return question
    if not isinstance(question, str) or not question.strip():
        raise SampleError("bad_content", "a CoT sample needs a non-empty question")
    if n_images and "<image>" not in question:
        return [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": question}]
    return question


def cot_sample_to_chat(sample: dict) -> dict:
    """`{"question", "cot", "answer", "images"?, "system"?}` -> a chat sample whose answer is the rendered CoT.

    `cot` is an object with the section keys or already-rendered text; the
    conclusion ends with `Answer: <answer>` when an answer is given.
    """
    images = sample.get("images") or []
    visual = bool(images)
    cot = sample.get("cot")
    if isinstance(cot, str):
        parsed = StructuredCoT.parse(cot, visual=visual)
        answer = _clean(sample.get("answer")) or parsed.answer
        parsed = StructuredCoT(parsed.understanding, parsed.evidence, parsed.reasoning, parsed.conclusion, visual, answer)
    else:
        parsed = StructuredCoT.from_fields(cot, visual=visual, answer=sample.get("answer"))
    messages = []
    if isinstance(sample.get("system"), str) and sample["system"]:
        messages.append({"role": "system", "content": sample["system"]})
    messages.append({"role": "user", "content": _question_content(sample.get("question"), len(images))})
    messages.append({"role": "assistant", "content": parsed.render()})
    return {"messages": messages, "images": list(images)}


def is_cot_sample(sample) -> bool:
    """A sample in the `{"question", "cot", ...}` form (as opposed to chat messages)."""
    return isinstance(sample, dict) and "cot" in sample and "messages" not in sample


def is_reasoning(sample) -> bool:
    """True for a sample whose target is a structured chain of thought (either form)."""
    if is_cot_sample(sample):
        return sample.get("cot") is not None
    messages = sample.get("messages") if isinstance(sample, dict) else None
    if not isinstance(messages, list):
        return False
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
            if not isinstance(content, str) or f"{HEADING}{UNDERSTANDING}" not in content:
                return False
            try:
                StructuredCoT.parse(content)
            except CoTError:
                return False
            return True
    return False
