"""Every generated item parsed and checked against the reference it was built from; rejects say why.

Checks, in order, the first failure deciding the reason: the output is not
empty and not too long; it parses in the kind's line format (reasoning items:
the question lines, then a structured chain of thought that `cot.parse`
accepts and that ends in `Answer: ...`); multiple-choice options are the
reference's, in order, and the answer is among them and is the reference's;
a yes/no answer is yes or no and the reference's; the question does not leak
the answer (its name or a synonym; for yes/no, the words yes or no); a yes/no
question names its subject, an open answer names the reference answer, a
caption names every finding of the image; and the tree's matcher finds no
finding asserted present that is not one of the image's nodes or their
ancestors (`entity_outside_image`). Options may be discussed where a
question is asked or reasoned about, never in what the image is said to show.

`validate_items` is a plain function over a `pyarrow.Table` of task rows with
`generated_text`: in = kept + rejected, and nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from medray.errors import ConfigError, MedrayError
from medray.met.matcher import Matcher
from medray.met.tree import Tree
from medray.synth.grounding import FINDING_AXES, names_node, node_terms
from medray.synth.prompts import ANSWER, CAPTION, OPTIONS, QUESTION, format_options, letter_of
from medray.train.cot import HEADING, CoTError, StructuredCoT

REJECT_REASONS = ("empty_output", "too_long", "bad_format", "missing_field", "malformed_cot", "cot_no_answer",
                  "options_mismatch", "answer_not_in_options", "answer_not_yes_no", "wrong_answer", "answer_leak",
                  "question_off_subject", "caption_missing_finding", "entity_outside_image", "bad_reference")
FIELDS = {"caption": (CAPTION,), "vqa_yesno": (QUESTION, ANSWER), "vqa_mcq": (QUESTION, OPTIONS, ANSWER),
          "vqa_open": (QUESTION, ANSWER), "reasoning_vqa": (QUESTION, OPTIONS)}
PARSED_FIELDS = [("question", pa.string()), ("options", pa.list_(pa.string())), ("answer", pa.string()),
                 ("cot", pa.string())]
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("kind", pa.string()), ("reason", pa.string()),
                           ("detail", pa.string()), ("generated_text", pa.string())])
_FIELD = re.compile(rf"^\s*({'|'.join((CAPTION, QUESTION, OPTIONS, ANSWER))})\s*:\s*(.*)$", re.IGNORECASE)
_OPTION = re.compile(r"^([A-H])\s*[).:]\s*(.+)$")
_LETTER = re.compile(r"^([A-H])(?:\s*[).:]\s*(.*))?$")
STRICT, DISCUSS = False, True  # a segment states what the image shows / may name the options


class ItemReject(MedrayError):
    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


@dataclass
class ValidateConfig:
    max_chars: int = 4000  # a longer output is rejected (too_long): a model that ran on, not an item

    def check(self, prefix: str = "validate") -> ValidateConfig:
        if self.max_chars < 1:
            raise ConfigError(f"{prefix}.max_chars", f"must be at least 1, got {self.max_chars}")
        return self


@dataclass
class ParsedItem:
    question: str = ""
    options: list[str] = field(default_factory=list)
    answer: str = ""  # yes|no, `B) name`, the open answer, or the caption
    cot: StructuredCoT | None = None
    segments: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, text, may discuss options)

    def cot_json(self) -> str | None:
        if self.cot is None:
            return None
        return json.dumps({"understanding": self.cot.understanding, "visual_observation": self.cot.evidence,
                           "reasoning": self.cot.reasoning, "conclusion": self.cot.conclusion})


def parse_fields(text: str, wanted: tuple[str, ...]) -> dict[str, str]:
    """`Field: value` lines (a value may run on over the following lines) -> {field: value}."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.strip().splitlines():
        m = _FIELD.match(line)
        if m:
            current = next(f for f in (CAPTION, QUESTION, OPTIONS, ANSWER) if f.lower() == m.group(1).lower())
            if current not in wanted:
                raise ItemReject("bad_format", f"unexpected field {current!r}")
            if current in found:
                raise ItemReject("bad_format", f"{current!r} appears twice")
            found[current] = [m.group(2)]
        elif current is None:
            if line.strip():
                raise ItemReject("bad_format", f"text before {wanted[0]!r}: {line.strip()!r:.60}")
        else:
            found[current].append(line)
    out = {k: " ".join(" ".join(v).split()) for k, v in found.items()}
    for name in wanted:
        if not out.get(name):
            raise ItemReject("missing_field", f"{name!r} is {'empty' if name in out else 'missing'}")
    return out


def parse_options(text: str) -> list[str]:
    """`A) x; B) y` (or one option a line) -> [x, y]; letters must run A, B, C ..."""
    names = []
    for i, piece in enumerate(p.strip() for p in re.split(r"[;\n]", text) if p.strip()):
        m = _OPTION.match(piece)
        if not m or m.group(1) != letter_of(i):
            raise ItemReject("bad_format", f"option {i + 1} is not '{letter_of(i)}) ...': {piece!r:.60}")
        names.append(m.group(2).strip().rstrip("."))
    return names


def parse_item(kind: str, text: str) -> ParsedItem:
    """The parts of one generated output; raises ItemReject (bad_format, missing_field, malformed_cot)."""
    if kind not in FIELDS:
        raise ItemReject("bad_reference", f"unknown kind {kind!r}")
    head, cot = text, None
    if kind == "reasoning_vqa":
        lines = text.splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith(HEADING)), len(lines))
        head = "\n".join(lines[:start])
        try:
            cot = StructuredCoT.parse("\n".join(lines[start:]), visual=True)
        except CoTError as err:
            raise ItemReject("malformed_cot", f"{err.reason}: {err.detail}") from None
        if not cot.answer:
            raise ItemReject("cot_no_answer", "the Conclusion does not end with 'Answer: ...'")
    values = parse_fields(head, FIELDS[kind])
    item = ParsedItem(question=values.get(QUESTION, ""), cot=cot)
    if OPTIONS in values:
        item.options = parse_options(values[OPTIONS])
    if kind == "caption":
        item.answer = values[CAPTION]
        item.segments = [("caption", item.answer, STRICT)]
    elif cot is not None:
        item.answer = cot.answer
        item.segments = [("question", item.question, DISCUSS), ("understanding", cot.understanding, DISCUSS),
                         ("visual_observation", cot.evidence, STRICT), ("reasoning", cot.reasoning, DISCUSS),
                         ("conclusion", cot.conclusion, DISCUSS)]
    else:
        item.answer = values[ANSWER]
        item.segments = [("question", item.question, DISCUSS)]
        if kind == "vqa_open":
            item.segments.append(("answer", item.answer, STRICT))
    return item


def _norm(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def _check_choice(item: ParsedItem, ref: dict) -> None:
    if [_norm(o) for o in item.options] != [_norm(o) for o in ref["options"]]:
        raise ItemReject("options_mismatch", f"got {format_options(item.options)!r}, expected {format_options(ref['options'])!r}")
    answer = item.answer.strip()
    m = _LETTER.match(answer)
    if m and letter_of(len(ref["options"]) - 1) >= m.group(1):
        index = "ABCDEFGH".index(m.group(1))
        if m.group(2) and _norm(m.group(2)) != _norm(ref["options"][index]):
            raise ItemReject("answer_not_in_options", f"{answer!r}: letter and text disagree")
    else:
        names = [_norm(o) for o in ref["options"]]
        if _norm(answer) not in names:
            raise ItemReject("answer_not_in_options", f"{answer!r} is none of {format_options(ref['options'])!r}")
        index = names.index(_norm(answer))
    if letter_of(index) != ref["answer_letter"]:
        raise ItemReject("wrong_answer", f"{answer!r}, the reference is {ref['answer_letter']}) {ref['answer']}")
    item.answer = f"{ref['answer_letter']}) {ref['answer']}"


def check_item(kind: str, item: ParsedItem, ref: dict, tree: Tree) -> None:
    """Answer, options, leakage and naming checks against the reference; raises ItemReject."""
    if kind in ("vqa_mcq", "reasoning_vqa"):
        _check_choice(item, ref)
    elif kind == "vqa_yesno":
        first = re.split(r"[^a-z]+", item.answer.lower().strip())[0]
        if first not in ("yes", "no"):
            raise ItemReject("answer_not_yes_no", f"{item.answer!r:.60}")
        if first != ref["answer"]:
            raise ItemReject("wrong_answer", f"{first!r}, the reference is {ref['answer']!r}")
        item.answer = first
        leaked = re.search(r"\b(yes|no)\b", item.question, re.IGNORECASE)
        if leaked:
            raise ItemReject("answer_leak", f"the question says {leaked.group(1)!r}")
        if not names_node(item.question, node_terms(tree, ref["subject_node_id"])):
            raise ItemReject("question_off_subject", f"the question does not name {ref['subject']!r}")
    if ref.get("answer_node_id"):
        terms = node_terms(tree, ref["answer_node_id"])
        leaked = names_node(item.question, terms)
        if leaked:
            raise ItemReject("answer_leak", f"the question names the answer as {leaked!r}")
        if kind == "vqa_open" and not names_node(item.answer, terms):
            raise ItemReject("wrong_answer", f"{item.answer!r:.80} does not name {ref['answer']!r}")
    if kind == "caption":
        missing = [tree.node(n).name for n in ref["required_node_ids"] if not names_node(item.answer, node_terms(tree, n))]
        if missing:
            raise ItemReject("caption_missing_finding", f"the caption does not name {', '.join(missing)}")


def entity_rejects(items: list[tuple[ParsedItem, dict]], tree: Tree, matcher: Matcher) -> dict[int, ItemReject]:
    """Index -> reject for items whose text asserts a finding the image does not have (one matcher pass)."""
    texts, owners = [], []
    for i, (item, _ref) in enumerate(items):
        for name, text, discuss in item.segments:
            texts.append(text)
            owners.append((i, name, discuss))
    if not texts:
        return {}
    hits = matcher.match_batch(texts).to_pylist()
    axis: dict[str, str | None] = {}
    out: dict[int, ItemReject] = {}
    for hit in hits:
        i, segment, discuss = owners[hit["doc"]]
        nid = hit["node_id"]
        if i in out or hit["assertion"] != "present":
            continue
        if nid not in axis:
            axis[nid] = tree.node(nid).axis
        ref = items[i][1]
        allowed = set(ref["allowed_node_ids"]) | (set(ref["option_node_ids"]) if discuss else set())
        if discuss and ref.get("subject_node_id"):
            allowed.add(ref["subject_node_id"])
        if axis[nid] in FINDING_AXES and nid not in allowed:
            out[i] = ItemReject("entity_outside_image", f"{segment}: {hit['surface']!r} -> {tree.node(nid).name} ({nid})")
    return out


def validate_items(table: pa.Table, tree: Tree, matcher: Matcher,
                   config: ValidateConfig | None = None) -> tuple[pa.Table, pa.Table]:
    """(kept, rejects): kept rows are the input columns plus question, options, answer, cot (JSON or null)."""
    config = (config or ValidateConfig()).check()
    missing = [c for c in ("id", "kind", "reference", "generated_text") if c not in table.column_names]
    if missing:
        raise MedrayError(f"items table lacks columns: {', '.join(missing)}")
    rows = table.to_pylist()
    results: list[ParsedItem | ItemReject] = []
    checked: list[tuple[ParsedItem, dict]] = []
    positions: list[int] = []
    for row in rows:
        try:
            text = row["generated_text"] or ""
            if row.get("finish_reason") == "prompt_too_long":
                raise ItemReject("prompt_too_long", f"{row.get('num_input_tokens')} prompt tokens fill the model's context")
            if not text.strip():
                raise ItemReject("empty_output", "no text")
            if len(text) > config.max_chars:
                raise ItemReject("too_long", f"{len(text)} characters, max_chars is {config.max_chars}")
            try:
                ref = json.loads(row["reference"])
            except (TypeError, ValueError) as err:
                raise ItemReject("bad_reference", str(err)) from None
            item = parse_item(row["kind"], text)
            check_item(row["kind"], item, ref, tree)
        except ItemReject as err:
            results.append(err)
            continue
        positions.append(len(results))
        results.append(item)
        checked.append((item, ref))
    for index, reject in entity_rejects(checked, tree, matcher).items():
        results[positions[index]] = reject
    kept_idx = [i for i, r in enumerate(results) if isinstance(r, ParsedItem)]
    kept = table.take(pa.array(kept_idx, pa.int64()))
    parsed = [results[i] for i in kept_idx]
    values = {"question": [p.question for p in parsed], "options": [p.options for p in parsed],
              "answer": [p.answer for p in parsed], "cot": [p.cot_json() for p in parsed]}
    for name, dtype in PARSED_FIELDS:
        if name in kept.column_names:
            kept = kept.drop_columns([name])
        kept = kept.append_column(pa.field(name, dtype), pa.array(values[name], dtype))
    rejects = [{"id": row["id"], "kind": row["kind"], "reason": r.reason, "detail": r.detail,
                "generated_text": row["generated_text"]} for row, r in zip(rows, results) if isinstance(r, ItemReject)]
    return kept, pa.Table.from_pylist(rejects, REJECT_SCHEMA)


class ValidateBatches:
    """For `Dataset.map_batches(ValidateBatches, fn_constructor_args=(tree_path, config), batch_format="pyarrow",
    compute=ActorPoolStrategy(...))`: each actor loads the tree and builds its matcher once.

    Returns one table per batch: kept rows with a null `reason`, rejects with their reason and detail
    (`split_validated` parts them), so in = kept + rejected holds per batch.
    """

    def __init__(self, tree_path: str, config: ValidateConfig | None = None):
        self.tree = Tree.load(tree_path)
        self.matcher = Matcher(self.tree)
        self.config = (config or ValidateConfig()).check()

    def __call__(self, batch: pa.Table) -> pa.Table:
        kept, rejects = validate_items(batch, self.tree, self.matcher, self.config)
        kept = kept.append_column("reason", pa.nulls(kept.num_rows, pa.string()))
        kept = kept.append_column("detail", pa.nulls(kept.num_rows, pa.string()))
        by_id = {r["id"]: r for r in rejects.to_pylist()}
        dropped = batch.take(pa.array([i for i, x in enumerate(batch["id"].to_pylist()) if x in by_id], pa.int64()))
        for name, dtype in PARSED_FIELDS:
            dropped = (dropped.drop_columns([name]) if name in dropped.column_names else dropped)
            dropped = dropped.append_column(pa.field(name, dtype), pa.nulls(dropped.num_rows, dtype))
        for name in ("reason", "detail"):
            dropped = dropped.append_column(name, pa.array([by_id[i][name] for i in dropped["id"].to_pylist()], pa.string()))
        return pa.concat_tables([kept, dropped.cast(kept.schema)])


def split_validated(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept, rejects in `REJECT_SCHEMA`) of the tables `ValidateBatches` returns."""
    rejected = pc.is_valid(table["reason"])
    kept = table.filter(pc.invert(rejected)).drop_columns(["reason", "detail"])
    return kept, table.filter(rejected).select(REJECT_SCHEMA.names)


def reject_counts(rejects: pa.Table) -> dict[str, int]:
    """Rejects per reason, every reason listed (zeros included) so reports line up across runs."""
    counts = dict.fromkeys(REJECT_REASONS, 0)
    for reason in rejects.column("reason").to_pylist():
        counts[reason] = counts.get(reason, 0) + 1
    return counts
