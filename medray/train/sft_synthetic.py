"""Generated SFT sources with a known answer: the demo's and the smoke tests' mid-training data.

Why: `make demo` must run SFT on data that installs with the package. Three sources in the
formats `medray train sft` reads, all grounded in real ontology text:

- `medical.jsonl`: chat Q&A, "What is <HPO term>?" answered with the term's HPO definition;
- `reasoning.jsonl`: multiple-choice questions in the structured chain-of-thought format: which
  organ-system class of the Medical Entity Tree a finding belongs to, the distractors drawn from
  the other classes, the reasoning walking the finding's path in the tree;
- `general.jsonl`: non-medical replay (arithmetic, unit conversion, calendar) from templates.

Malformed rows are planted in `medical.jsonl` at known lines, so the rejects output can be
checked against `ground_truth.json`. Deterministic for a seed.
"""

from __future__ import annotations

import json
import os
import random

from medray.met.obo import read_obo
from medray.met.tree import Tree

GROUND_TRUTH = "ground_truth.json"
CLASS_LEVEL = 3  # "Abnormality of the respiratory system": the organ-system classes under HPO's root
SYSTEM_PROMPT = "You are a careful clinical assistant."
PLANTED = {  # 1-based line in medical.jsonl -> (raw line, the reason SFT preparation must give)
    7: ('{"messages": [{"role": "user", "content": "What is ataxia?"', "bad_json"),
    15: (json.dumps({"messages": [{"role": "user", "content": "What is ataxia?"}]}), "no_assistant_turn"),
}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def chat(question: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": [*messages, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _hpo_terms(hpo_path: str, max_words: int) -> list:
    """Non-obsolete terms with a short definition, in file order."""
    onto = read_obo(hpo_path)
    return [t for t in onto.terms.values() if t.definition and not t.obsolete and len(t.definition.split()) <= max_words]


def medical_rows(terms: list, n: int) -> list[dict]:
    return [chat(f"What is {t.name.lower()}?", t.definition, system=SYSTEM_PROMPT if i % 3 == 0 else None)
            for i, t in enumerate(terms[:n])]


def reasoning_rows(tree: Tree, terms: list, n: int, rng: random.Random) -> list[dict]:
    """Which organ-system class a finding is under, answered by walking its path in the tree."""
    placed = []
    for term in terms:
        node_id = tree.by_code(term.id)
        if node_id is None:
            continue
        path = [tree.node(a) for a in reversed(tree.ancestors(node_id)) if tree.node(a).level >= CLASS_LEVEL]
        if len(path) >= 2:  # at least one step between the finding and its class
            placed.append((term, path))
    classes = sorted({path[0].name for _, path in placed})
    rows = []
    for term, path in placed[:n]:
        answer = path[0].name
        options = rng.sample([c for c in classes if c != answer], k=min(3, len(classes) - 1)) + [answer]
        rng.shuffle(options)
        letters = "ABCD"[:len(options)]
        listed = "; ".join(f"{letter}) {option}" for letter, option in zip(letters, options))
        chain = " -> ".join(node.name for node in reversed(path))
        rows.append({
            "question": f"Which organ-system class does {term.name.lower()} belong to? Options: {listed}.",
            "cot": {"understanding": f"The question asks for the broad class of {term.name.lower()} among {len(options)} options.",
                    "knowledge_recall": term.definition,
                    "reasoning": f"In the Medical Entity Tree the path runs {chain}.",
                    "conclusion": f"{term.name} is under {answer}."},
            "answer": f"{letters[options.index(answer)]}) {answer}",
        })
    return rows


def general_rows(n: int, rng: random.Random) -> list[dict]:
    """Everyday questions with exact answers: replay that keeps the model's general skills in the mix."""
    rows = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            rows.append(chat(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
        elif kind == 1:
            km = rng.randint(1, 40)
            rows.append(chat(f"How many metres are in {km} kilometres?", f"{km} kilometres are {km * 1000} metres."))
        else:
            day, ahead = rng.randrange(7), rng.randint(1, 20)
            rows.append(chat(f"If today is {WEEKDAYS[day]}, what day is it in {ahead} days?",
                             f"In {ahead} days it is {WEEKDAYS[(day + ahead) % 7]}."))
    return rows


def _write_jsonl(path: str, rows: list) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def generate_sft_sources(tree: Tree, out_dir: str, hpo_path: str | None = None, *, medical: int = 400,
                         reasoning: int = 240, general: int = 150, seed: int = 0) -> dict:
    """Write the three sources and `ground_truth.json` (planted rejects) into `out_dir`; return their paths."""
    if hpo_path is None:
        from medray.met.literature import default_hpo_path

        hpo_path = default_hpo_path()
    rng = random.Random(seed)
    terms = _hpo_terms(hpo_path, max_words=22)
    medical_lines: list = medical_rows(terms, medical)
    for line in sorted(PLANTED):
        medical_lines.insert(line - 1, PLANTED[line][0])
    sources = {"medical": medical_lines, "reasoning": reasoning_rows(tree, terms, reasoning, rng),
               "general": general_rows(general, rng)}
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, rows in sources.items():
        paths[name] = os.path.join(out_dir, f"{name}.jsonl")
        _write_jsonl(paths[name], rows)
    truth = {"rejects": {"medical": {str(line): reason for line, (_, reason) in PLANTED.items()}},
             "rows": {name: len(rows) for name, rows in sources.items()}}
    with open(os.path.join(out_dir, GROUND_TRUTH), "w") as fh:
        json.dump(truth, fh, indent=2)
    return {"paths": paths, **truth}
