"""Multi-hop questions from the knowledge graph, with the path kept as the checkable reasoning trace.

A path of exactly `hops` steps (no node twice) starts at a weakly covered
node, the data engine's back-fill list, so synthesis adds text where the
corpus is thin. The start is named; every later entity is masked ([A], [B],
...) and one of them is asked for. The trace (ids, names, axes, relations,
masks) rides along with the question, so a proposed answer and its reasoning
can be checked against it (`reject.py`). A start that cannot reach `hops` is
reported with a reason, never padded with a shorter path.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.met.normalize import normalize_term
from medray.synth.graph import KnowledgeGraph, Step
from medray.synth.relations import INVERSE, IS_A, PHRASES
from medray.train.cot import StructuredCoT

ANSWER_CHOICES = ("last", "random")
AXIS_HINTS = {"disease": "a disease", "symptom": "a finding", "anatomy": "a body part", "modality": "an imaging modality"}
HIERARCHY = frozenset({IS_A, "has_subtype"})
# Why a start gave no path; a failed search is exhaustive unless it ran out of budget.
FAIL_UNKNOWN, FAIL_ISOLATED, FAIL_SHORT, FAIL_BUDGET, FAIL_LEAK, FAIL_REPEAT = (
    "unknown_node", "isolated", "no_path_of_k_hops", "search_budget", "answer_leak", "repeated_path")
FAILED_LISTED = 100

ITEM_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("start_id", pa.string()), ("start_name", pa.string()), ("hops", pa.int32()),
    ("question", pa.string()), ("answer", pa.string()), ("answer_id", pa.string()), ("answer_mask", pa.string()),
    ("answer_position", pa.int32()), ("path_ids", pa.list_(pa.string())), ("path_names", pa.list_(pa.string())),
    ("path_axes", pa.list_(pa.string())), ("relations", pa.list_(pa.string())), ("edge_sources", pa.list_(pa.string())),
    ("masks", pa.list_(pa.string())), ("seed", pa.int64()),
])


@dataclass
class KGQAConfig:
    hops: int = 6  # steps per path; above 5 where the graph allows
    paths_per_start: int = 1
    max_starts: int = 0  # 0: every start given
    seed: int = 0
    answer: str = "last"  # which masked entity is asked for: "last" or "random"
    prefer_relations: bool = True  # try the relation kinds the path has used least first, hierarchy last
    max_expansions: int = 5000  # nodes a path search may visit before giving up
    attempts: int = 4  # searches per wanted path (reseeded) before a start is reported
    axis_hints: bool = True  # "[B] (a body part)": makes a masked entity answerable

    def check(self, prefix: str = "kgqa") -> None:
        for key in ("hops", "paths_per_start", "max_expansions", "attempts"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be at least 1")
        if self.max_starts < 0:
            raise ConfigError(f"{prefix}.max_starts", "must be 0 (all) or more")
        if self.answer not in ANSWER_CHOICES:
            raise ConfigError(f"{prefix}.answer", f"expected one of {', '.join(ANSWER_CHOICES)}, got {self.answer!r}")


# ---- starts -----------------------------------------------------------------------------------

def backfill_starts(source: str | dict | pa.Table | Iterable[str], limit: int = 0) -> list[str]:
    """Start nodes from the data pipeline's report.json (`sampling.backfill`), a back-fill table or a list of ids."""
    if isinstance(source, str):
        try:
            report = json.loads(storage.read_text(source))
        except json.JSONDecodeError as exc:
            raise MedrayError(f"{source}: not JSON ({exc})") from None
        return _starts_of_report(report, source, limit)
    if isinstance(source, dict):
        return _starts_of_report(source, "report", limit)
    ids = source.column("node_id").to_pylist() if isinstance(source, pa.Table) else list(source)
    ids = list(dict.fromkeys(i for i in ids if i))
    return ids[:limit] if limit else ids


def _starts_of_report(report: dict, where: str, limit: int) -> list[str]:
    sampling = report.get("sampling", report) or {}
    backfill = sampling.get("backfill") if isinstance(sampling, dict) else None
    if backfill is None:
        raise MedrayError(f"{where}: no sampling.backfill list (run the data pipeline with the sample stage)")
    return backfill_starts([b.get("node_id") for b in backfill], limit)


# ---- paths --------------------------------------------------------------------------------------

def _family(relation: str) -> str:
    return min(relation, INVERSE[relation])


def _ordered(graph: KnowledgeGraph, node_id: str, rng: random.Random, prefer_relations: bool,
             taken: list[Step]) -> list[Step]:
    """Neighbours in seeded order; with `prefer_relations`, relation kinds the path has used least come first."""
    steps = graph.neighbours(node_id)
    rng.shuffle(steps)
    if prefer_relations:
        used = Counter(_family(s.relation) for s in taken)
        steps.sort(key=lambda s: (used[_family(s.relation)], s.relation in HIERARCHY))  # stable: ties keep the shuffle
    return steps


def find_path(graph: KnowledgeGraph, start: str, hops: int, rng: random.Random, *, max_expansions: int = 5000,
              prefer_relations: bool = True) -> tuple[list[Step] | None, str]:
    """A simple path of exactly `hops` steps from `start` (depth first, seeded order), or None and why."""
    if start not in graph.tree:
        return None, FAIL_UNKNOWN
    if start not in graph:
        return None, FAIL_ISOLATED
    steps: list[Step] = []
    on_path = {start}
    frontier = [iter(_ordered(graph, start, rng, prefer_relations, steps))]
    expansions = 0
    while frontier:
        step = next(frontier[-1], None)
        if step is None:
            frontier.pop()
            if steps:
                on_path.discard(steps.pop().node_id)
            continue
        if step.node_id in on_path:
            continue
        expansions += 1
        if expansions > max_expansions:
            return None, FAIL_BUDGET
        steps.append(step)
        on_path.add(step.node_id)
        if len(steps) == hops:
            return steps, ""
        frontier.append(iter(_ordered(graph, step.node_id, rng, prefer_relations, steps)))
    return None, FAIL_SHORT


def steps_along(graph: KnowledgeGraph, ids: list[str]) -> list[Step]:
    """The steps of a given node sequence (a curated path); the first relation between each pair."""
    steps = []
    for head, tail in zip(ids, ids[1:]):
        step = next((s for s in graph.neighbours(head) if s.node_id == tail), None)
        if step is None:
            raise MedrayError(f"no edge between {head!r} and {tail!r} in the graph")
        steps.append(step)
    return steps


# ---- questions ----------------------------------------------------------------------------------

def mask_label(i: int) -> str:
    """0 -> [A], 25 -> [Z], 26 -> [AA]."""
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(65 + r) + letters
    return f"[{letters}]"


def node_terms(graph: KnowledgeGraph, node_id: str) -> list[str]:
    """Normalised name and synonyms of a node (what counts as naming it)."""
    node = graph.tree.node(node_id)
    return list(dict.fromkeys(k for k in (normalize_term(t) for t in [node.name, *node.synonyms]) if k))


def mentions(text: str, terms: Iterable[str]) -> bool:
    """True when any normalised term occurs in `text` as whole words."""
    padded = f" {normalize_term(text)} "
    return any(f" {t} " in padded for t in terms if t)


def make_item(graph: KnowledgeGraph, start: str, steps: list[Step], answer_position: int, seed: int,
              axis_hints: bool = True) -> dict:
    """The question, answer and trace of one path; `answer_position` indexes the path's nodes (1..hops)."""
    ids = [start, *(s.node_id for s in steps)]
    nodes = [graph.tree.node(n) for n in ids]
    masks = [""] + [mask_label(i) for i in range(len(steps))]
    clauses = []
    for i, step in enumerate(steps, start=1):
        hint = f" ({AXIS_HINTS[nodes[i].axis]})" if axis_hints and nodes[i].axis in AXIS_HINTS else ""
        clauses.append(f"{PHRASES[step.relation]} {masks[i]}{hint}")
    question = f"{nodes[0].name} " + ", which ".join(clauses) + f". What is {masks[answer_position]}?"
    digest = hashlib.sha1("|".join([str(seed), *ids, str(answer_position)]).encode()).hexdigest()[:12]
    return {
        "item_id": f"kgqa-{digest}", "start_id": start, "start_name": nodes[0].name, "hops": len(steps),
        "question": question, "answer": nodes[answer_position].name, "answer_id": ids[answer_position],
        "answer_mask": masks[answer_position], "answer_position": answer_position, "path_ids": ids,
        "path_names": [n.name for n in nodes], "path_axes": [n.axis or "" for n in nodes],
        "relations": [s.relation for s in steps], "edge_sources": [s.source for s in steps], "masks": masks,
        "seed": seed,
    }


def recover_masked(item: dict) -> dict[str, dict]:
    """Mask -> its position, node id and name in the trace."""
    return {m: {"position": i, "node_id": item["path_ids"][i], "name": item["path_names"][i]}
            for i, m in enumerate(item["masks"]) if m}


def generate_kgqa(graph: KnowledgeGraph, starts: Iterable[str], cfg: KGQAConfig | None = None) -> tuple[pa.Table, dict]:
    """Items (ITEM_SCHEMA) for each start, and a report of starts that gave fewer paths than asked, with reasons."""
    cfg = cfg or KGQAConfig()
    cfg.check()
    starts = list(dict.fromkeys(starts))
    if cfg.max_starts:
        starts = starts[:cfg.max_starts]
    items: list[dict] = []
    failures: Counter = Counter()
    failed: list[dict] = []
    short = 0
    for start in starts:
        found: list[dict] = []
        seen_paths: set[tuple[str, ...]] = set()
        reason = ""  # the last real failure; a repeated path only counts when nothing else failed
        for attempt in range(cfg.paths_per_start * cfg.attempts):
            if len(found) == cfg.paths_per_start:
                break
            rng = random.Random(f"{cfg.seed}|{start}|{attempt}")
            steps, failure = find_path(graph, start, cfg.hops, rng, max_expansions=cfg.max_expansions,
                                       prefer_relations=cfg.prefer_relations)
            if steps is None:
                reason = failure
                if failure in (FAIL_UNKNOWN, FAIL_ISOLATED, FAIL_SHORT):
                    break  # exhaustive: another seed cannot do better
                continue
            key = (start, *(s.node_id for s in steps))
            if key in seen_paths:
                reason = reason or FAIL_REPEAT
                continue
            seen_paths.add(key)
            position = cfg.hops if cfg.answer == "last" else rng.randint(1, cfg.hops)
            item = make_item(graph, start, steps, position, cfg.seed, cfg.axis_hints)
            if mentions(item["question"], node_terms(graph, item["answer_id"])):
                reason = FAIL_LEAK
                continue
            found.append(item)
        items.extend(found)
        if not found:
            failures[reason] += 1
            if len(failed) < FAILED_LISTED:
                failed.append({"node_id": start, "reason": reason})
        elif len(found) < cfg.paths_per_start:
            short += 1
    table = pa.Table.from_pylist(items, schema=ITEM_SCHEMA)
    report = {
        "starts": len(starts), "hops": cfg.hops, "items": len(items), "starts_with_paths": len(starts) - sum(failures.values()),
        "starts_short": short, "failed_starts": sum(failures.values()), "failures": dict(sorted(failures.items())),
        "failed": failed, "relations": dict(sorted(Counter(r for i in items for r in i["relations"]).items())),
        "answer_axes": dict(sorted(Counter(i["path_axes"][i["answer_position"]] for i in items).items())),
    }
    return table, report


# ---- prompts and the reference chain of thought ---------------------------------------------------

def kgqa_prompt(item: dict) -> str:
    """Asks for a structured chain of thought (medray.train.cot) that walks the chain entity by entity."""
    mask = item["answer_mask"]
    return (
        "Answer the multi-hop medical question. Each bracketed letter stands for one hidden entity; "
        "the relations link the entities in the order given.\n\n"
        f"Question: {item['question']}\n\n"
        "Reply in exactly this format:\n"
        "## Understanding\n<what is asked>\n"
        "## Knowledge recall\n<the facts that identify each hidden entity>\n"
        f"## Reasoning\n<walk the chain in order, naming every entity from {item['start_name']} to {mask}>\n"
        "## Conclusion\n<one sentence>\n"
        f"Answer: <the name of {mask}>\n"
    )


def kgqa_prompts(items: pa.Table) -> pa.Table:
    """The items with a `prompt` column, ready for an engine (which passes the other columns through)."""
    prompts = [kgqa_prompt(row) for row in items.to_pylist()]
    return items.append_column("prompt", pa.array(prompts, pa.string()))


def reference_cot(item: dict) -> StructuredCoT:
    """The chain of thought the trace itself supports: a gold target and a check that the checks pass it."""
    names, masks = item["path_names"], item["masks"]
    hidden = [f"{m} is {names[i]}" for i, m in enumerate(masks) if m]
    mask, answer = item["answer_mask"], item["answer"]
    return StructuredCoT(
        understanding=f"The question links {item['start_name']} to {len(hidden)} hidden entities through "
                      f"{item['hops']} relations and asks for {mask}.",
        evidence=" ".join(f"{fact}." for fact in _chain_steps(item)),
        reasoning=f"Starting from {item['start_name']}: " + "; ".join(
            f"{masks[i + 1]} is {names[i + 1]} because {fact}" for i, fact in enumerate(_chain_steps(item))) + ".",
        conclusion=f"{mask} is {answer}; the hidden entities are: {', '.join(hidden)}.",
        visual=False, answer=answer)


def _chain_steps(item: dict) -> list[str]:
    names = item["path_names"]
    return [f"{names[i]} {PHRASES[r]} {names[i + 1]}" for i, r in enumerate(item["relations"])]

