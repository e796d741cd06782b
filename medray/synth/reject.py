"""Multi-expert reject sampling: keep a proposed answer only when its outcome and its reasoning check out.

Several engines, or one engine with several seeds, answer each multi-hop
item. The outcome check compares the proposal's `Answer:` line with the
reference node (case, punctuation, synonyms). The reasoning check reads the
chain of thought against the item's trace: it must name the path's entities
in order and contradict none of them (a negated entity, a negated or
different relation between two consecutive entities). One proposal per item
is kept, the first passing one by expert order; every proposal leaves as
kept, filtered (passed, but the item was already kept) or rejected (reasons).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from medray.errors import ConfigError
from medray.met.cues import CUES, POST_NEG, PRE_NEG, PSEUDO
from medray.met.normalize import SENTENCE_MARK, normalize_term, normalize_text
from medray.met.tree import Tree
from medray.train.cot import CoTError, StructuredCoT

SECTION_KEYS = ("understanding", "knowledge_recall", "reasoning", "conclusion")
REQUIRED_COLUMNS = ("item_id", "generated_text", "answer", "answer_id", "path_ids", "relations")
# Phrases that state a relation, by relation family (a relation and its inverse read alike here).
RELATION_CUES = {
    "is_a": ("kind of", "type of", "form of", "sort of", "class of", "subtype", "subtypes", "subclass", "category",
             "includes", "include", "belongs to", "example of", "variety of", "is a", "is an", "are a"),
    "presents_with": ("presents with", "present with", "presenting with", "presentation", "symptom", "symptoms",
                      "sign", "signs", "finding of", "finding", "manifests", "manifestation", "feature", "features",
                      "causes", "caused by", "shows", "seen in", "associated with"),
    "located_in": ("located", "location", "site", "sited", "affects", "affecting", "involves", "involving",
                   "occurs in", "found in", "within", "seen in", "arises in"),
    "examines": ("images", "imaged", "imaging", "examines", "examined", "examination", "visualises", "visualizes",
                 "visualised", "visualized", "scan", "scans", "scanned", "study", "studies", "shows", "depicts"),
}
FAMILY = {"is_a": "is_a", "has_subtype": "is_a", "presents_with": "presents_with", "symptom_of": "presents_with",
          "located_in": "located_in", "site_of": "located_in", "examines": "examines", "examined_by": "examines"}
_MASK = re.compile(r"\[[A-Za-z]{1,3}\]")
_LEAD = re.compile(r"^\s*(?:(?:is|the|an|a)\s+|[=:]\s*|[A-Ea-e]\)\s*)", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\s*Answer:\s*(.+?)\s*$", re.MULTILINE)


@dataclass
class RejectConfig:
    sections: list[str] = field(default_factory=lambda: ["reasoning"])  # cot sections the reasoning check reads
    expert_order: list[str] = field(default_factory=list)  # experts ranked for the kept pick; others after, by name and seed
    negation_window: int = 3  # words around an entity in which a negation cue negates it

    def check(self, prefix: str = "reject") -> None:
        bad = [s for s in self.sections if s not in SECTION_KEYS]
        if not self.sections or bad:
            raise ConfigError(f"{prefix}.sections", f"expected some of {', '.join(SECTION_KEYS)}, got {self.sections}")
        if self.negation_window < 1:
            raise ConfigError(f"{prefix}.negation_window", "must be at least 1")


@dataclass
class RejectResult:
    kept: pa.Table  # one proposal per item that has a passing one
    filtered: pa.Table  # passing proposals of items already kept
    rejects: pa.Table  # failing proposals with reason, reasons and detail
    report: dict


# ---- text helpers ---------------------------------------------------------------------------------

def _terms(tree: Tree, node_id: str) -> list[str]:
    node = tree.node(node_id)
    return [k for k in dict.fromkeys(normalize_term(t) for t in [node.name, *node.synonyms]) if k]


def _answer_key(answer: str) -> str:
    """"[F] is the Lung.", "C) lung", "Lung ([F])" -> "lung"."""
    answer, previous = _MASK.sub(" ", answer).strip(), None
    while previous != answer:
        previous, answer = answer, _LEAD.sub("", answer, count=1)
    return normalize_term(answer)


def _spans(flat: str, terms: list[str]) -> list[tuple[int, int]]:
    """Whole-word occurrences of any term in the normalised text, longest first at one start."""
    out = []
    for term in terms:
        pattern = r"(?<![^\s])" + r"\s+".join(map(re.escape, term.split())) + r"(?![^\s])"
        out += [(m.start(), m.end()) for m in re.finditer(pattern, flat)]
    return sorted(set(out))


def _has_cue(words: str, cues) -> bool:
    padded = f" {' '.join(words.split())} "
    for pseudo in CUES[PSEUDO]:
        padded = padded.replace(f" {pseudo} ", " ")
    return any(f" {c} " in padded for c in cues)


# ---- the two checks -------------------------------------------------------------------------------

def parse_proposal(text) -> tuple[StructuredCoT | None, str | None, str]:
    """(parsed cot or None, its answer or the last `Answer:` line, the parse error)."""
    try:
        cot = StructuredCoT.parse(text, visual=False)
        return cot, cot.answer, ""
    except CoTError as exc:
        lines = _ANSWER_LINE.findall(text) if isinstance(text, str) else []
        return None, (lines[-1] if lines else None), str(exc)


def check_outcome(answer: str | None, item: dict, tree: Tree, parse_error: str = "") -> tuple[bool, str, str]:
    """(passed, reason, detail): the final answer names the reference node (its name or a synonym)."""
    if answer is None:
        return False, ("unparseable" if parse_error else "no_answer"), parse_error or "no `Answer:` line"
    key = _answer_key(answer)
    if key and (key in _terms(tree, item["answer_id"]) or item["answer_id"] in tree.by_name(key)):
        return True, "", ""
    return False, "wrong_answer", f"got {answer!r}, want {item['answer']!r}"


def check_reasoning(cot: StructuredCoT | None, item: dict, tree: Tree, cfg: RejectConfig,
                    parse_error: str = "") -> tuple[bool, str, str]:
    """(passed, reason, detail): the path's entities named in order, none negated, no consecutive pair contradicted."""
    if cot is None:
        return False, "unparseable", parse_error
    body = {"understanding": cot.understanding, "knowledge_recall": cot.evidence, "reasoning": cot.reasoning,
            "conclusion": cot.conclusion}
    text = "\n\n".join(body[s] for s in cfg.sections)
    norm = normalize_text(text)
    flat = norm.replace(SENTENCE_MARK, " ")
    ids = item["path_ids"]
    names = [tree.node(n).name for n in ids]
    spans = [_spans(flat, _terms(tree, n)) for n in ids]
    pos = 0
    for i, occurrences in enumerate(spans):
        after = [s for s in occurrences if s[0] >= pos]
        if not after:
            reason = "missing_entity" if not occurrences else "out_of_order"
            return False, reason, f"position {i}: {names[i]}"
        pos = after[0][1]
    for i, relation in enumerate(item["relations"]):
        for a in spans[i]:
            for b in spans[i + 1]:
                lo, hi = (a[1], b[0]) if a[1] <= b[0] else (b[1], a[0]) if b[1] <= a[0] else (0, 0)
                if hi <= lo or SENTENCE_MARK in norm[lo:hi] or "\n" in norm[lo:hi]:
                    continue  # overlapping, or not in one clause
                verdict = _judge_relation(flat[lo:hi], relation)
                if verdict:
                    return False, "contradicted_relation", f"{names[i]} -{relation}-> {names[i + 1]}: {verdict}"
    for i, occurrences in enumerate(spans):
        for start, end in occurrences:
            if _negated(norm, start, end, cfg.negation_window):
                return False, "negated_entity", f"position {i}: {names[i]}"
    return True, "", ""


def _judge_relation(between: str, relation: str) -> str:
    family = FAMILY.get(relation, relation)
    if _has_cue(between, CUES[PRE_NEG]):
        return f"negated in {between.strip()!r}"
    if _has_cue(between, RELATION_CUES.get(family, ())):
        return ""
    wrong = [f for f, cues in RELATION_CUES.items() if f != family and _has_cue(between, cues)]
    return f"states {wrong[0]} in {between.strip()!r}" if wrong else ""


def _negated(norm: str, start: int, end: int, window: int) -> bool:
    clause_start = max(norm.rfind(SENTENCE_MARK, 0, start), norm.rfind("\n", 0, start)) + 1
    stops = [i for i in (norm.find(SENTENCE_MARK, end), norm.find("\n", end)) if i >= 0]
    before = norm[clause_start:start].split()[-window:]
    after = norm[end:min(stops) if stops else len(norm)].split()[:window]
    return _has_cue(" ".join(before), CUES[PRE_NEG]) or _has_cue(" ".join(after), CUES[POST_NEG])


# ---- sampling ---------------------------------------------------------------------------------------

def expert_of(row: dict) -> str:
    if row.get("expert"):
        return str(row["expert"])
    return f"seed={row['seed']}" if row.get("seed") is not None else "expert"


def expert_requests(items: pa.Table, seeds: list[int], expert: str | None = None) -> pa.Table:
    """Each item once per seed (columns `seed`, `expert`), so one engine answers as several experts.

    Experts are named `seed=N`, or `NAME/seed=N` when the engine is named
    (several engines, each with every seed).
    """
    base = items.drop([c for c in ("seed", "expert") if c in items.column_names])
    tables = []
    for seed in seeds:
        n = base.num_rows
        label = f"{expert}/seed={seed}" if expert else f"seed={seed}"
        tables.append(base.append_column("seed", pa.array([int(seed)] * n, pa.int64()))
                      .append_column("expert", pa.array([label] * n, pa.string())))
    return pa.concat_tables(tables) if tables else base


def check_proposals(proposals: pa.Table, tree: Tree, cfg: RejectConfig | None = None) -> pa.Table:
    """Both checks per proposal: adds expert, given_answer, outcome_ok, reasoning_ok, reasons, detail."""
    cfg = cfg or RejectConfig()
    cfg.check()
    missing = [c for c in REQUIRED_COLUMNS if c not in proposals.column_names]
    if missing:
        raise ConfigError("proposals", f"missing columns {', '.join(missing)}")
    extra: dict[str, list] = {k: [] for k in ("expert", "given_answer", "outcome_ok", "reasoning_ok", "reasons", "detail")}
    for row in proposals.to_pylist():
        cot, answer, error = parse_proposal(row["generated_text"])
        out_ok, out_reason, out_detail = check_outcome(answer, row, tree, error)
        why_ok, why_reason, why_detail = check_reasoning(cot, row, tree, cfg, error)
        reasons = list(dict.fromkeys(r for r in (out_reason, why_reason) if r))
        extra["expert"].append(expert_of(row))
        extra["given_answer"].append(answer)
        extra["outcome_ok"].append(out_ok)
        extra["reasoning_ok"].append(why_ok)
        extra["reasons"].append(reasons)
        extra["detail"].append("; ".join(d for d in dict.fromkeys((out_detail, why_detail)) if d))
    table = proposals.drop([c for c in extra if c in proposals.column_names])
    types = {"expert": pa.string(), "given_answer": pa.string(), "outcome_ok": pa.bool_(), "reasoning_ok": pa.bool_(),
             "reasons": pa.list_(pa.string()), "detail": pa.string()}
    for name, values in extra.items():
        table = table.append_column(name, pa.array(values, types[name]))
    return table


def select_kept(checked: pa.Table, cfg: RejectConfig | None = None) -> RejectResult:
    """The first passing proposal per item by expert order; per-check pass rates overall and per expert."""
    cfg = cfg or RejectConfig()
    rank = {name: i for i, name in enumerate(cfg.expert_order)}
    rows = checked.to_pylist()
    order = sorted(range(len(rows)), key=lambda i: (rank.get(rows[i]["expert"], len(rank)), rows[i]["expert"],
                                                    rows[i].get("seed") or 0, i))
    kept_of: dict[str, int] = {}
    kept, filtered, rejected = [], [], []
    for i in order:
        row = rows[i]
        if not (row["outcome_ok"] and row["reasoning_ok"]):
            rejected.append(i)
        elif row["item_id"] in kept_of:
            filtered.append(i)
        else:
            kept_of[row["item_id"]] = i
            kept.append(i)
    reject_table = _take(checked, rejected)
    reject_table = reject_table.append_column("reason", pa.array([r[0] for r in reject_table["reasons"].to_pylist()], pa.string()))
    items = list(dict.fromkeys(r["item_id"] for r in rows))
    report = {
        "proposals": len(rows), "kept": len(kept), "filtered": len(filtered), "rejected": len(rejected),
        "items": len(items), "items_kept": len(kept_of), "items_without_pass": [i for i in items if i not in kept_of],
        "pass_rates": _rates(rows), "per_expert": {e: _rates([r for r in rows if r["expert"] == e])
                                                   for e in sorted({r["expert"] for r in rows})},
        "reject_reasons": dict(sorted(Counter(r for i in rejected for r in rows[i]["reasons"]).items())),
        "kept_by_expert": dict(sorted(Counter(rows[i]["expert"] for i in kept).items())),
    }
    return RejectResult(_take(checked, kept), _take(checked, filtered), reject_table, report)


def _take(table: pa.Table, rows: list[int]) -> pa.Table:
    return table.take(pa.array(sorted(rows), pa.int64()))


def _rates(rows: list[dict]) -> dict:
    n = len(rows) or 1
    both = sum(1 for r in rows if r["outcome_ok"] and r["reasoning_ok"])
    return {"proposals": len(rows), "outcome": sum(r["outcome_ok"] for r in rows) / n,
            "reasoning": sum(r["reasoning_ok"] for r in rows) / n, "both": both / n}


def reject_sample(proposals: pa.Table, tree: Tree, cfg: RejectConfig | None = None) -> RejectResult:
    """Check every proposal and keep one per item: `check_proposals` then `select_kept`."""
    return select_kept(check_proposals(proposals, tree, cfg), cfg)


class ProposalChecker:
    """Ray Data actor: the tree arrives once per actor from the object store, then checks batch after batch."""

    def __init__(self, tree_ref: list, cfg: RejectConfig | None = None):
        import ray

        self.tree = Tree(ray.get(tree_ref[0]))  # wrapped in a list so Ray passes the ref
        self.cfg = cfg or RejectConfig()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return check_proposals(batch, self.tree, self.cfg)


def check_proposals_dataset(dataset, tree: Tree, cfg: RejectConfig | None = None, actors: int = 1, batch_size: int = 64):
    """`check_proposals` over a Ray Dataset in an actor pool; `select_kept` then runs on the collected table."""
    import ray
    from ray.data import ActorPoolStrategy

    cfg = cfg or RejectConfig()
    cfg.check()
    return dataset.map_batches(ProposalChecker, fn_constructor_args=([ray.put(tree.table)], cfg), batch_format="pyarrow",
                               batch_size=batch_size, compute=ActorPoolStrategy(size=actors), num_cpus=1)


def kept_to_sft(kept: pa.Table) -> list[dict]:
    """Kept proposals as structured-CoT SFT rows (`question`, `cot`, `answer`) that `medray train sft` reads."""
    rows = []
    for row in kept.to_pylist():
        cot = StructuredCoT.parse(row["generated_text"], visual=False)
        rows.append({"question": row["question"], "cot": {
            "understanding": cot.understanding, "knowledge_recall": cot.evidence, "reasoning": cot.reasoning,
            "conclusion": cot.conclusion or f"{row['answer_mask']} is {row['answer']}."}, "answer": row["answer"]})
    return rows

