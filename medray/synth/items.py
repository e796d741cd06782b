"""Task rows for synthesis: per pair and kind, a prompt plus the reference that checks the output.

The reference (JSON in the `reference` column) is built from the tree and the
pair's ground truth before any model runs: the answer, the options, the
finding's path, and the nodes the generated text may assert (the image's
findings with their ancestors). Multiple-choice distractors are siblings of
the answer in the tree, never the answer, its ancestors, or anything the
image has (which would make two options right). A pair and kind that cannot
give an item (a normal study has no finding to ask about) leaves a `skipped`
row with the reason, so in = tasks + skipped per (pair, kind).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

import pyarrow as pa

from medray.errors import ConfigError, MedrayError
from medray.met.matcher import Matcher
from medray.met.tree import Tree
from medray.synth.grounding import (
    PairGrounding,
    allowed_nodes,
    ground_pair,
    node_path,
    node_terms,
    path_names,
)
from medray.synth.prompts import build_prompt, letter_of

KINDS = ("caption", "vqa_yesno", "vqa_mcq", "vqa_open", "reasoning_vqa")
MCQ_KINDS = ("vqa_mcq", "reasoning_vqa")
TASK_SCHEMA = pa.schema([
    ("id", pa.string()), ("pair_id", pa.string()), ("kind", pa.string()), ("node_id", pa.string()),
    ("image_path", pa.string()), ("prompt", pa.string()), ("seed", pa.int64()), ("reference", pa.string()),
])
SKIP_SCHEMA = pa.schema([("pair_id", pa.string()), ("kind", pa.string()), ("reason", pa.string()),
                         ("detail", pa.string())])
SKIP_REASONS = ("no_present_finding", "no_known_finding", "too_few_distractors")


@dataclass
class ItemConfig:
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    per_kind: int = 1  # items of each kind per pair at most (yes/no: this many "yes" and this many "no")
    n_options: int = 4  # options of a multiple-choice item, the answer included
    min_options: int = 3  # fewer eligible sibling distractors than min_options - 1: the item is skipped
    modality: str = "Digital Radiography"  # node (id, code or name) for pairs with no modality anchor; "" for none
    anatomy: str = "Chest"  # node for pairs with no anatomy anchor; "" for none
    path_levels: int = 4  # levels of a finding's path quoted in prompts (0: the whole path)
    report_chars: int = 1200  # report text quoted in a prompt at most
    seed: int = 0

    def check(self, tree: Tree | None = None, prefix: str = "items") -> ItemConfig:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ConfigError(f"{prefix}.kinds", f"{unknown[0] if unknown else 'empty'!r}: expected some of {', '.join(KINDS)}")
        if self.per_kind < 1:
            raise ConfigError(f"{prefix}.per_kind", f"must be at least 1, got {self.per_kind}")
        if not 2 <= self.min_options <= self.n_options <= 8:
            raise ConfigError(f"{prefix}.n_options", f"need 2 <= min_options ({self.min_options}) <= n_options ({self.n_options}) <= 8")
        if self.path_levels < 0 or self.report_chars < 0:
            raise ConfigError(f"{prefix}.path_levels", "path_levels and report_chars must be >= 0")
        if tree is not None:
            for key in ("modality", "anatomy"):
                self.resolve(tree, key, prefix)
        return self

    def resolve(self, tree: Tree, key: str, prefix: str = "items") -> str | None:
        ref = getattr(self, key)
        if not ref:
            return None
        try:
            nid = tree.resolve(ref)
        except MedrayError as err:
            raise ConfigError(f"{prefix}.{key}", str(err)) from None
        if tree.node(nid).axis != key:
            raise ConfigError(f"{prefix}.{key}", f"{ref!r} is a {tree.node(nid).axis} node, not {key}")
        return nid


def row_seed(seed: int, item_id: str) -> int:
    """A per-item sampling seed: stable across runs and machines, different per item."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=4).digest(), "little")


def excluded_distractors(tree: Tree, answer: str, grounding: PairGrounding) -> set[str]:
    """The answer, its ancestors, and every node the image has or implies (with their ancestors and subtrees)."""
    out = {answer, *tree.ancestors(answer)}
    for nid in grounding.image_nodes():
        out.update(tree.subtree(nid))
        out.update(tree.ancestors(nid))
    return out


def pick_distractors(tree: Tree, answer: str, grounding: PairGrounding, n: int, rng: random.Random) -> list[str]:
    """Up to `n` siblings of `answer` that the image does not have and that share no term with an option."""
    excluded = excluded_distractors(tree, answer, grounding)
    taken = set(node_terms(tree, answer))
    for nid in grounding.image_nodes():
        taken.update(node_terms(tree, nid))
    candidates = sorted(s for s in tree.siblings(answer) if s not in excluded)
    rng.shuffle(candidates)
    out: list[str] = []
    for sid in candidates:
        terms = set(node_terms(tree, sid))
        if terms & taken:
            continue
        out.append(sid)
        taken.update(terms)
        if len(out) == n:
            break
    return out


def _finding_entry(tree: Tree, grounding: PairGrounding, nid: str, levels: int) -> dict:
    ids = node_path(tree, nid, levels)
    return {"node_id": nid, "path_ids": ids, "path": path_names(tree, ids), "attributes": grounding.attributes.get(nid, {})}


def base_reference(tree: Tree, grounding: PairGrounding, kind: str, config: ItemConfig) -> dict:
    axes = {}
    for axis in ("modality", "anatomy"):
        ids = node_path(tree, getattr(grounding, axis), config.path_levels)
        axes[axis] = path_names(tree, ids)
    return {
        "kind": kind, "answer": "", "answer_node_id": None, "answer_letter": None, "subject": None,
        "subject_node_id": None, "options": [], "option_node_ids": [],
        "image_node_ids": grounding.present, "uncertain_node_ids": grounding.uncertain,
        "required_node_ids": [], "allowed_node_ids": allowed_nodes(tree, grounding),
        "path": {**axes, "findings": [_finding_entry(tree, grounding, n, config.path_levels) for n in grounding.present]},
    }


def _caption(tree, grounding, config, rng):
    ref = base_reference(tree, grounding, "caption", config)
    ref["required_node_ids"] = list(grounding.present)
    return [(None, ref)], None


def _yesno(tree, grounding, config, rng):
    image_related = {a for n in grounding.image_nodes() for a in tree.ancestors(n)}
    negatives = [n for n in grounding.absent if n not in image_related]
    positives = rng.sample(grounding.present, min(config.per_kind, len(grounding.present)))
    negatives = rng.sample(negatives, min(config.per_kind, len(negatives)))
    if not positives and not negatives:
        return [], ("no_known_finding", "no finding known present or stated absent")
    out = []
    for nid, answer in [(n, "yes") for n in positives] + [(n, "no") for n in negatives]:
        ref = base_reference(tree, grounding, "vqa_yesno", config)
        ref.update(answer=answer, subject=tree.node(nid).name, subject_node_id=nid)
        out.append((nid, ref))
    return out, None


def _open(tree, grounding, config, rng):
    if not grounding.present:
        return [], ("no_present_finding", "the image has no certain finding to ask about")
    out = []
    for nid in rng.sample(grounding.present, min(config.per_kind, len(grounding.present))):
        ref = base_reference(tree, grounding, "vqa_open", config)
        ref.update(answer=tree.node(nid).name, answer_node_id=nid)
        out.append((nid, ref))
    return out, None


def _mcq(kind):
    def build(tree, grounding, config, rng):
        if not grounding.present:
            return [], ("no_present_finding", "the image has no certain finding to ask about")
        out, short = [], []
        for nid in rng.sample(grounding.present, len(grounding.present)):
            distractors = pick_distractors(tree, nid, grounding, config.n_options - 1, rng)
            if len(distractors) < config.min_options - 1:
                short.append(f"{nid}: {len(distractors)} eligible siblings")
                continue
            options = [*distractors, nid]
            rng.shuffle(options)
            ref = base_reference(tree, grounding, kind, config)
            ref.update(answer=tree.node(nid).name, answer_node_id=nid, answer_letter=letter_of(options.index(nid)),
                       options=[tree.node(o).name for o in options], option_node_ids=options)
            out.append((nid, ref))
            if len(out) == config.per_kind:
                break
        return out, (None if out else ("too_few_distractors", "; ".join(short)))
    return build


BUILDERS = {"caption": _caption, "vqa_yesno": _yesno, "vqa_mcq": _mcq("vqa_mcq"), "vqa_open": _open,
            "reasoning_vqa": _mcq("reasoning_vqa")}


def build_items(pairs: pa.Table, tree: Tree, config: ItemConfig | None = None,
                matcher: Matcher | None = None) -> tuple[pa.Table, pa.Table]:
    """(tasks in `TASK_SCHEMA`, skipped in `SKIP_SCHEMA`) for a table of pairs; deterministic for `config.seed`.

    `matcher` (optional) finds what an unlabelled pair's report states as absent, for "no" questions.
    """
    config = (config or ItemConfig()).check(tree)
    modality, anatomy = config.resolve(tree, "modality"), config.resolve(tree, "anatomy")
    missing = [c for c in ("id", "image_path", "findings") if c not in pairs.column_names]
    if missing:
        raise MedrayError(f"pairs table lacks columns: {', '.join(missing)}")
    tasks: list[dict] = []
    skipped: list[dict] = []
    for row in pairs.to_pylist():
        grounding = ground_pair(row, tree, modality=modality, anatomy=anatomy, matcher=matcher)
        for kind in config.kinds:
            rng = random.Random(f"{config.seed}:{grounding.pair_id}:{kind}")
            built, skip = BUILDERS[kind](tree, grounding, config, rng)
            if skip:
                skipped.append({"pair_id": grounding.pair_id, "kind": kind, "reason": skip[0], "detail": skip[1]})
            for k, (nid, ref) in enumerate(built):
                item_id = f"{grounding.pair_id}:{kind}:{k}"
                tasks.append({"id": item_id, "pair_id": grounding.pair_id, "kind": kind, "node_id": nid,
                              "image_path": grounding.image_path,
                              "prompt": build_prompt(kind, ref, grounding.findings_text, config.report_chars),
                              "seed": row_seed(config.seed, item_id), "reference": json.dumps(ref, sort_keys=True)})
    return pa.Table.from_pylist(tasks, TASK_SCHEMA), pa.Table.from_pylist(skipped, SKIP_SCHEMA)
