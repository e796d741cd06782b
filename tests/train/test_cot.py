"""Structured chain of thought: fixed markup, exact round trip, malformed text rejected with the section named."""

from __future__ import annotations

import pytest

from medray.train.cot import (
    CoTError,
    StructuredCoT,
    cot_sample_to_chat,
    is_reasoning,
)

VISUAL = StructuredCoT(
    understanding="The question asks which side the effusion is on.",
    evidence="Blunting of the left costophrenic angle; a meniscus sign on the left.",
    reasoning="A meniscus with blunting on one side means fluid on that side.\n## Differential\nAtelectasis is less likely.",
    conclusion="The effusion is on the left.",
    visual=True,
    answer="Left",
)
TEXT = StructuredCoT(
    understanding="Which drug class is first line for uncomplicated hypertension?",
    evidence="Guidelines list thiazides, ACE inhibitors, ARBs and calcium channel blockers.",
    reasoning="Without comorbidities any of these is acceptable; thiazides have the longest record.",
    conclusion="A thiazide diuretic.",
)


def test_render_is_the_fixed_markup_in_order():
    assert TEXT.render() == (
        "## Understanding\nWhich drug class is first line for uncomplicated hypertension?\n\n"
        "## Knowledge recall\nGuidelines list thiazides, ACE inhibitors, ARBs and calcium channel blockers.\n\n"
        "## Reasoning\nWithout comorbidities any of these is acceptable; thiazides have the longest record.\n\n"
        "## Conclusion\nA thiazide diuretic.\n"
    )
    text = VISUAL.render()
    assert text.index("## Understanding") < text.index("## Visual observation") < text.index("## Reasoning") \
        < text.index("## Conclusion")
    assert text.endswith("The effusion is on the left.\nAnswer: Left\n")


@pytest.mark.parametrize("cot", [VISUAL, TEXT, StructuredCoT("u", "e", "r", "", visual=True, answer="B")])
def test_parse_inverts_render(cot):
    parsed = StructuredCoT.parse(cot.render())
    assert parsed == cot
    assert parsed.render() == cot.render()


def test_a_heading_that_is_not_a_section_stays_text_and_whitespace_is_normalised():
    parsed = StructuredCoT.parse("\n" + VISUAL.render().replace("\n\n", "\n\n\n   \n"))
    assert parsed.reasoning.endswith("## Differential\nAtelectasis is less likely.")
    assert parsed == VISUAL


def _broken(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(("text", "visual", "reason", "section"), [
    (_broken(TEXT.render(), "## Reasoning\n", "Reasoning:\n"), None, "cot_missing_section", "Reasoning"),
    (_broken(TEXT.render(), "A thiazide diuretic.", " "), None, "cot_empty_section", "Conclusion"),
    (TEXT.render() + "\n## Reasoning\nagain\n", None, "cot_duplicate_section", "Reasoning"),
    ("## Understanding\nu\n## Reasoning\nr\n## Knowledge recall\nk\n## Conclusion\nc\n", None, "cot_out_of_order", "Reasoning"),
    (TEXT.render(), True, "cot_wrong_evidence", "Knowledge recall"),
    (VISUAL.render(), False, "cot_wrong_evidence", "Visual observation"),
    ("Let me think.\n" + TEXT.render(), None, "cot_text_before_sections", "Understanding"),
    (_broken(VISUAL.render(), "## Reasoning", "## Knowledge recall\nk\n## Reasoning"), None, "cot_duplicate_section",
     "Knowledge recall"),
])
def test_malformed_text_is_rejected_naming_the_section(text, visual, reason, section):
    with pytest.raises(CoTError) as err:
        StructuredCoT.parse(text, visual=visual)
    assert err.value.reason == reason and err.value.section == section
    assert section in str(err.value)


def test_sample_with_images_becomes_a_chat_whose_answer_is_the_rendered_cot():
    sample = {"question": "Which side is the effusion on?", "images": ["cxr.png"], "answer": "Left",
              "cot": {"understanding": VISUAL.understanding, "visual_observation": VISUAL.evidence,
                      "reasoning": VISUAL.reasoning, "conclusion": VISUAL.conclusion}}
    chat = cot_sample_to_chat(sample)
    assert chat["images"] == ["cxr.png"]
    assert chat["messages"][0] == {"role": "user", "content": [{"type": "image"},
                                                               {"type": "text", "text": "Which side is the effusion on?"}]}
    assert chat["messages"][1] == {"role": "assistant", "content": VISUAL.render()}
    assert chat["messages"][1]["content"].endswith("Answer: Left\n")
    assert is_reasoning(sample) and is_reasoning(chat)


def test_text_sample_with_system_prompt_and_rendered_cot_text():
    sample = {"system": "Think step by step.", "question": "First line drug?", "cot": TEXT.render(), "answer": "Thiazide"}
    chat = cot_sample_to_chat(sample)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    assert chat["messages"][1]["content"] == "First line drug?" and chat["images"] == []
    parsed = StructuredCoT.parse(chat["messages"][2]["content"])
    assert parsed.answer == "Thiazide" and parsed.evidence == TEXT.evidence and not parsed.visual


@pytest.mark.parametrize(("cot", "images", "reason", "section"), [
    ({"understanding": "u", "knowledge_recall": "k", "conclusion": "c"}, [], "cot_missing_section", "Reasoning"),
    ({"understanding": "u", "knowledge_recall": "k", "reasoning": "  ", "conclusion": "c"}, [], "cot_empty_section", "Reasoning"),
    ({"understanding": "u", "visual_observation": "v", "reasoning": "r", "conclusion": "c"}, [], "cot_wrong_evidence",
     "Visual observation"),
    ({"understanding": "u", "knowledge_recall": "k", "reasoning": "r", "conclusion": "c"}, ["x.png"], "cot_wrong_evidence",
     "Knowledge recall"),
    ({"understanding": "u", "knowledge_recall": "k", "reasoning": "r", "summary": "s"}, [], "cot_unknown_section", "summary"),
    ({"understanding": "u", "knowledge_recall": "k", "reasoning": "r"}, [], "cot_missing_section", "Conclusion"),
])
def test_bad_cot_fields_are_rejected_naming_the_section(cot, images, reason, section):
    with pytest.raises(CoTError) as err:
        cot_sample_to_chat({"question": "q", "cot": cot, "images": images})
    assert (err.value.reason, err.value.section) == (reason, section)


def test_a_conclusion_may_be_the_answer_alone():
    chat = cot_sample_to_chat({"question": "q", "answer": "B",
                               "cot": {"understanding": "u", "knowledge_recall": "k", "reasoning": "r"}})
    assert chat["messages"][-1]["content"].endswith("## Conclusion\nAnswer: B\n")


def test_is_reasoning_tells_cot_targets_from_plain_chat():
    plain = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    broken = {"messages": [{"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "## Understanding\nonly this"}]}
    assert not is_reasoning(plain) and not is_reasoning(broken) and not is_reasoning({"text": "x"})
    assert is_reasoning({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": TEXT.render()}]})
    parts = [{"type": "text", "text": TEXT.render()}]
    assert is_reasoning({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": parts}]})
