"""Validation of generated items on hand-written good and bad outputs, and the SFT rows of the kept ones.

References come from the real builder over a real tree (HPO + radiology
lexicon + DICOM) for one hand-labelled study: a moderate left pleural
effusion, with pneumothorax and cardiomegaly stated absent. No model runs
here: the generated texts are written by hand, one per failure mode.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from medray.data.tokenizer import train_tokenizer
from medray.met.build import build_tree
from medray.met.matcher import Matcher
from medray.mm.pairs import read_pairs
from medray.mm.phantom import write_phantoms
from medray.synth.items import ItemConfig, build_items
from medray.synth.prompts import format_options
from medray.synth.to_sft import write_sft
from medray.synth.validate import REJECT_SCHEMA, ValidateConfig, reject_counts, validate_items
from medray.train.chat_format import ChatEncoder, ChatFormatConfig
from medray.train.sft_data import SFTDataConfig, read_sft_files, tokenize_sft_batch

LABELS = {"findings": [{"name": "pleural_effusion", "severity": "moderate", "side": "left", "certainty": "present"}],
          "negated": ["pneumothorax", "cardiomegaly"]}
PAIR = {"id": "s1", "image_path": "/data/s1.png", "node_ids": [],
        "findings": "Moderate left pleural effusion. No pneumothorax. Heart size is normal.", "labels": json.dumps(LABELS)}


@pytest.fixture(scope="module")
def tree():
    built, _ = build_tree([("hpo", {}), ("radiology_lexicon", {}), ("dicom", {})])
    return built


@pytest.fixture(scope="module")
def matcher(tree):
    return Matcher(tree)


@pytest.fixture(scope="module")
def tasks(tree) -> dict[str, dict]:
    """kind (yes/no split into vqa_yes / vqa_no) -> task row of the hand-labelled study."""
    table, skipped = build_items(pa.Table.from_pylist([PAIR]), tree, ItemConfig(seed=1))
    assert skipped.num_rows == 0
    out = {}
    for row in table.to_pylist():
        ref = json.loads(row["reference"])
        key = f"vqa_{ref['answer']}" if row["kind"] == "vqa_yesno" else row["kind"]
        out[key] = {**row, "ref": ref}
    assert set(out) == {"caption", "vqa_yes", "vqa_no", "vqa_mcq", "vqa_open", "reasoning_vqa"}
    return out


def ref_answer(task: dict) -> str:
    return f"{task['ref']['answer_letter']}) {task['ref']['answer']}"


def other_letter(task: dict) -> str:
    return next(letter for letter in "ABCD"[:len(task["ref"]["options"])] if letter != task["ref"]["answer_letter"])


def distractor(task: dict) -> str:
    return task["ref"]["options"]["ABCD".index(other_letter(task))]


def cot_text(task: dict, *, observation: str = "Fluid layers at the left base with a meniscus.",
             reasoning: str | None = None, answer: str | None = None, evidence: str = "Visual observation",
             drop: str = "") -> str:
    reasoning = reasoning or f"A meniscus at the base fits a pleural effusion; {distractor(task).lower()} does not fit it."
    sections = [("Understanding", "Which option is seen on this radiograph."), (evidence, observation),
                ("Reasoning", reasoning), ("Conclusion", "The left base holds fluid.\nAnswer: " + (answer or ref_answer(task)))]
    body = "\n".join(f"## {name}\n{text}" for name, text in sections if name != drop)
    return f"Question: Which finding does this chest radiograph show?\nOptions: {format_options(task['ref']['options'])}\n{body}\n"


def good(task: dict) -> str:
    kind, ref = task["kind"], task["ref"]
    if kind == "caption":
        return "Caption: Digital radiograph of the chest showing a moderate left pleural effusion."
    if kind == "vqa_yesno":
        return f"Question: Is there a {ref['subject'].lower()} on this radiograph?\nAnswer: {ref['answer'].capitalize()}."
    if kind == "vqa_open":
        return "Question: What fills the left costophrenic angle?\nAnswer: A moderate pleural effusion."
    if kind == "vqa_mcq":
        return (f"Question: Which finding does this chest radiograph show?\nOptions: {format_options(ref['options'])}\n"
                f"Answer: {ref['answer_letter']}")
    return cot_text(task)


def run(tree, matcher, items: list[tuple[dict, str]], config: ValidateConfig | None = None):
    rows = [{k: v for k, v in task.items() if k != "ref"} | {"id": f"{task['id']}#{i}", "generated_text": text}
            for i, (task, text) in enumerate(items)]
    table = pa.Table.from_pylist(rows)
    kept, rejects = validate_items(table, tree, matcher, config)
    assert kept.num_rows + rejects.num_rows == table.num_rows
    return kept, rejects


def reject_of(tree, matcher, task: dict, text: str, config: ValidateConfig | None = None) -> tuple[str, str]:
    kept, rejects = run(tree, matcher, [(task, text)], config)
    assert kept.num_rows == 0, f"kept: {text!r}"
    return rejects["reason"][0].as_py(), rejects["detail"][0].as_py()


def test_good_outputs_of_every_kind_are_kept(tree, matcher, tasks):
    kept, rejects = run(tree, matcher, [(t, good(t)) for t in tasks.values()])
    assert rejects.num_rows == 0, rejects.to_pylist()
    by_kind = {(r["kind"], r["answer"]) for r in kept.to_pylist()}
    mcq = tasks["vqa_mcq"]
    assert ("vqa_mcq", ref_answer(mcq)) in by_kind and ("vqa_yesno", "yes") in by_kind and ("vqa_yesno", "no") in by_kind
    assert ("caption", "Digital radiograph of the chest showing a moderate left pleural effusion.") in by_kind
    reasoning = kept.filter(pa.compute.equal(kept["kind"], "reasoning_vqa")).to_pylist()[0]
    assert reasoning["options"] == tasks["reasoning_vqa"]["ref"]["options"]
    assert json.loads(reasoning["cot"])["visual_observation"] == "Fluid layers at the left base with a meniscus."
    assert reasoning["answer"] == ref_answer(tasks["reasoning_vqa"])


@pytest.mark.parametrize("text, reason", [
    ("", "empty_output"), ("   \n ", "empty_output"),
    ("Sure! Here it is.\nQuestion: Which finding?\nOptions: A) x\nAnswer: A", "bad_format"),
    ("Question: Which finding is seen?", "missing_field"),
    ("Question: Which finding is seen?\nQuestion: Again?\nOptions: A) x\nAnswer: A", "bad_format"),
    ("Question: Which finding is seen?\nOptions: 1. x; 2. y\nAnswer: A", "bad_format"),
])
def test_format_failures(tree, matcher, tasks, text, reason):
    assert reject_of(tree, matcher, tasks["vqa_mcq"], text)[0] == reason


def test_too_long(tree, matcher, tasks):
    reason, detail = reject_of(tree, matcher, tasks["caption"], good(tasks["caption"]), ValidateConfig(max_chars=20))
    assert reason == "too_long" and "max_chars is 20" in detail


def test_multiple_choice_answers(tree, matcher, tasks):
    task, options = tasks["vqa_mcq"], format_options(tasks["vqa_mcq"]["ref"]["options"])
    head = f"Question: Which finding does this chest radiograph show?\nOptions: {options}\n"
    wrong = other_letter(task)
    assert reject_of(tree, matcher, task, head + f"Answer: {wrong}")[0] == "wrong_answer"
    assert reject_of(tree, matcher, task, head + f"Answer: {distractor(task)}")[0] == "wrong_answer"
    assert reject_of(tree, matcher, task, head + "Answer: E) Scoliosis")[0] == "answer_not_in_options"
    assert reject_of(tree, matcher, task, head + "Answer: Scoliosis")[0] == "answer_not_in_options"
    assert reject_of(tree, matcher, task, head + f"Answer: {task['ref']['answer_letter']}) Scoliosis")[0] == "answer_not_in_options"
    swapped = list(reversed(task["ref"]["options"]))
    reason, detail = reject_of(tree, matcher, task, f"Question: Which finding?\nOptions: {format_options(swapped)}\nAnswer: A")
    assert reason == "options_mismatch" and options in detail
    kept, _ = run(tree, matcher, [(task, head + f"Answer: {task['ref']['answer']}.")])
    assert kept["answer"][0].as_py() == ref_answer(task)


def test_answer_leakage(tree, matcher, tasks):
    task, options = tasks["vqa_mcq"], format_options(tasks["vqa_mcq"]["ref"]["options"])
    leak = f"Question: Is the pleural effusion on the left?\nOptions: {options}\nAnswer: {ref_answer(task)}"
    reason, detail = reject_of(tree, matcher, task, leak)
    assert reason == "answer_leak" and "pleural effusion" in detail
    synonym = f"Question: Where is the effusion seen?\nOptions: {options}\nAnswer: {ref_answer(task)}"
    assert reject_of(tree, matcher, task, synonym) == ("answer_leak", "the question names the answer as 'effusion'")
    open_leak = "Question: How large is the pleural effusion?\nAnswer: A moderate pleural effusion."
    assert reject_of(tree, matcher, tasks["vqa_open"], open_leak)[0] == "answer_leak"
    yes_leak = "Question: Is there a pleural effusion, yes or no?\nAnswer: yes"
    assert reject_of(tree, matcher, tasks["vqa_yes"], yes_leak)[0] == "answer_leak"
    assert reject_of(tree, matcher, tasks["reasoning_vqa"],
                     cot_text(tasks["reasoning_vqa"]).replace("Which finding does", "Which pleural effusion does"))[0] == "answer_leak"


def test_yes_no_and_open_answers(tree, matcher, tasks):
    yes, no = tasks["vqa_yes"], tasks["vqa_no"]
    assert reject_of(tree, matcher, yes, "Question: Is there a pleural effusion?\nAnswer: Maybe")[0] == "answer_not_yes_no"
    assert reject_of(tree, matcher, yes, "Question: Is there a pleural effusion?\nAnswer: No.")[0] == "wrong_answer"
    assert reject_of(tree, matcher, no, "Question: Is the study normal?\nAnswer: no")[0] == "question_off_subject"
    assert reject_of(tree, matcher, tasks["vqa_open"], "Question: What fills the left angle?\nAnswer: Nothing.")[0] == "wrong_answer"


def test_entities_outside_the_image(tree, matcher, tasks):
    caption = tasks["caption"]
    reason, detail = reject_of(tree, matcher, caption, "Caption: Chest radiograph with a left pleural effusion and a right pneumothorax.")
    assert reason == "entity_outside_image" and "Pneumothorax" in detail
    assert reject_of(tree, matcher, caption, "Caption: Chest radiograph with cardiomegaly.")[0] == "caption_missing_finding"
    negated = "Caption: Chest radiograph with a left pleural effusion; there is no pneumothorax."
    assert run(tree, matcher, [(caption, negated)])[0].num_rows == 1  # an absence is not an entity of the image
    open_task = tasks["vqa_open"]
    assert reject_of(tree, matcher, open_task, "Question: What is at the left base?\nAnswer: Pleural effusion with atelectasis.")[0] == "entity_outside_image"
    task = tasks["reasoning_vqa"]
    reason, detail = reject_of(tree, matcher, task, cot_text(task, observation=f"There is {distractor(task).lower()} at the left base."))
    assert reason == "entity_outside_image" and detail.startswith("visual_observation:")
    # the same distractor named while reasoning about the options is discussion, not an image finding
    assert run(tree, matcher, [(task, cot_text(task, reasoning=f"{distractor(task)} would look different here."))])[0].num_rows == 1


def test_malformed_chain_of_thought(tree, matcher, tasks):
    task = tasks["reasoning_vqa"]
    reason, detail = reject_of(tree, matcher, task, cot_text(task, drop="Reasoning"))
    assert reason == "malformed_cot" and detail.startswith("cot_missing_section: Reasoning")
    reason, detail = reject_of(tree, matcher, task, cot_text(task, evidence="Knowledge recall"))
    assert reason == "malformed_cot" and detail.startswith("cot_wrong_evidence")
    no_answer = cot_text(task).replace(f"Answer: {ref_answer(task)}", "So that is it.")
    assert reject_of(tree, matcher, task, no_answer)[0] == "cot_no_answer"
    assert reject_of(tree, matcher, task, cot_text(task, answer=other_letter(task)))[0] == "wrong_answer"
    assert reject_of(tree, matcher, task, cot_text(task).replace("## Understanding\n", ""))[0] == "malformed_cot"


def test_counts_reconcile_with_reasons(tree, matcher, tasks):
    items = [(t, good(t)) for t in tasks.values()]
    items += [(tasks["vqa_mcq"], ""), (tasks["vqa_yes"], "Question: Is there a pleural effusion?\nAnswer: No"),
              (tasks["caption"], "Caption: A right pneumothorax and a left pleural effusion.")]
    kept, rejects = run(tree, matcher, items)
    assert rejects.schema == REJECT_SCHEMA
    assert (kept.num_rows, rejects.num_rows) == (6, 3)
    counts = reject_counts(rejects)
    assert counts["empty_output"] == counts["wrong_answer"] == counts["entity_outside_image"] == 1
    assert sum(counts.values()) == 3


@pytest.fixture(scope="module")
def phantom_items(tree, tmp_path_factory) -> pa.Table:
    """Template outputs that follow each prompt, for every task of 60 phantom studies."""
    root = tmp_path_factory.mktemp("phantoms")
    write_phantoms(60, str(root), seed=2, size=64)
    pairs, _ = read_pairs(str(root), check_images="none")
    table, _ = build_items(pairs, tree, ItemConfig(per_kind=2, seed=5))
    texts = []
    for kind, raw in zip(table["kind"].to_pylist(), table["reference"].to_pylist()):
        ref = json.loads(raw)
        names = " and ".join(f["path"][-1].lower() for f in ref["path"]["findings"]) or "clear lungs"
        texts.append({"caption": f"Caption: Digital radiograph of the chest showing {names}.",
                      "vqa_yesno": f"Question: Does the radiograph show {(ref['subject'] or '').lower()}?\nAnswer: {ref['answer']}",
                      "vqa_open": f"Question: What is the main finding?\nAnswer: {ref['answer']}."}.get(kind)
                     or (good({"kind": kind, "ref": ref}) if kind == "vqa_mcq" else cot_text({"kind": kind, "ref": ref},
                         observation=f"The image shows {ref['answer'].lower()}.", reasoning="Only one option matches what is seen.")))
    return table.append_column("generated_text", pa.array(texts))


@pytest.fixture(scope="module")
def phantom_kept(phantom_items, tree, matcher) -> pa.Table:
    """Outputs that follow the prompts: none may be rejected."""
    table = phantom_items
    kept, rejects = validate_items(table, tree, matcher)
    assert rejects.num_rows == 0, rejects.to_pylist()[:3]
    assert kept.num_rows == table.num_rows > 150
    return kept


def test_sft_rows_load_with_zero_rejects(phantom_kept, tmp_path):
    out = str(tmp_path / "synth.jsonl")
    summary = write_sft(phantom_kept, out)
    assert summary["rows"] == phantom_kept.num_rows
    assert set(summary["per_kind"]) == {"caption", "vqa_yesno", "vqa_mcq", "vqa_open", "reasoning_vqa"}
    corpus = [json.dumps(json.loads(line)) for line in open(out)][:200]
    tokenizer = train_tokenizer(iter(corpus * 3), 600, str(tmp_path / "tok"), min_frequency=1)
    config = SFTDataConfig(tokenizer=tokenizer, chat=ChatFormatConfig(max_len=1024))
    encoder = ChatEncoder.from_path(tokenizer, config.chat)
    tables = list(read_sft_files(out))
    result = [tokenize_sft_batch(t, encoder, config) for t in tables]
    kept = pa.concat_tables([r.kept for r in result])
    assert sum(r.dropped.num_rows for r in result) == 0, result[0].dropped.to_pylist()[:2]
    assert kept.num_rows == phantom_kept.num_rows
    assert set(kept["n_images"].to_pylist()) == {1}
    reasoning = sum(k == "reasoning_vqa" for k in phantom_kept["kind"].to_pylist())
    assert sum(kept["reasoning"].to_pylist()) == reasoning > 0
    assert min(kept["num_loss_tokens"].to_pylist()) > 0
    first = json.loads(open(out).readline())
    assert first["images"] == [phantom_kept["image_path"][0].as_py()] and first["id"] == phantom_kept["id"][0].as_py()

