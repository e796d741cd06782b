"""Growing the tree from literature onto a frozen skeleton (MedXIAOHE).

Three steps, each usable alone (1 and 2 live in `medray.met.mining`, the
literature corpus in `medray.met.literature`; all are re-exported here):
1. `mine_candidates` pulls entity-looking phrases out of text with a small
   rule set (`mining.RULES`: suffix heads, head nouns, modifiers to strip);
2. `count_candidates_ray` counts them over a corpus with Ray Data, without
   bringing the corpus to the driver;
3. `grow_tree` drops rare and known candidates, embeds the rest and hangs
   each under its nearest existing node, asking an arbiter when two parents
   on different branches are almost equally close.

The skeleton is frozen: existing rows are never changed, new nodes are
appended after them, and a new node's id depends only on its axis and
normalised name, so a rerun gives the same table.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
import pyarrow as pa

from medray.errors import MedrayError
from medray.met.embed import Embedder, topk_cosine
from medray.met.literature import default_hpo_path, literature_corpus
from medray.met.mining import count_candidates_ray, mine_candidates
from medray.met.normalize import normalize_term
from medray.met.tree import AXES, ROOT_ID, SCHEMA, Tree, axis_node_id, check_axis

__all__ = [
    "ARBITERS",
    "Arbiter",
    "RuleArbiter",
    "count_candidates_ray",
    "default_hpo_path",
    "grow_tree",
    "grown_node_id",
    "literature_corpus",
    "mine_candidates",
    "register_arbiter",
    "resolve_arbiter",
]

# ---- 3. attaching candidates ------------------------------------------------------------


class Arbiter(Protocol):
    """Picks among near-tied parents: (chosen node id, or None to reject; reason)."""

    name: str

    def decide(self, candidate: str, options: list[tuple[str, float]], tree: Tree) -> tuple[str | None, str]: ...


ARBITERS: dict[str, Callable[..., Arbiter]] = {}


def register_arbiter(name: str):
    """Name an arbiter class so configs can pick it (`arbiter: rule`, later an LLM judge)."""

    def deco(cls):
        cls.name = name
        ARBITERS[name] = cls
        return cls

    return deco


@register_arbiter("rule")
class RuleArbiter:
    """Prefer, in order: an option whose name contains the candidate's head (last)
    word; the deeper node (a more specific parent); the higher score; the option
    listed first (options come best score first)."""

    name = "rule"

    def decide(self, candidate: str, options: list[tuple[str, float]], tree: Tree) -> tuple[str | None, str]:
        words = normalize_term(candidate).split()
        head = words[-1] if words else ""
        keyed = []
        for pos, (nid, score) in enumerate(options):
            node = tree.node(nid)
            keyed.append((head in normalize_term(node.name).split(), node.level, score, -pos, nid))
        keyed.sort(reverse=True)
        if len(keyed) == 1:
            return keyed[0][4], "only option"
        (shares, level, score, _, best), (r_shares, r_level, r_score, _, _) = keyed[0], keyed[1]
        if shares and not r_shares:
            return best, f"shares head word {head!r}"
        if level > r_level:
            return best, f"deeper node (level {level})"
        return best, "highest score" if score > r_score else "first listed"


def resolve_arbiter(arbiter) -> Arbiter:
    """None -> RuleArbiter; a registered name -> a new instance; an object with decide() as is."""
    if arbiter is None:
        return RuleArbiter()
    if isinstance(arbiter, str):
        if arbiter not in ARBITERS:
            raise MedrayError(f"unknown arbiter {arbiter!r}: registered are {', '.join(sorted(ARBITERS))}")
        return ARBITERS[arbiter]()
    if not hasattr(arbiter, "decide"):
        raise MedrayError(f"arbiter {arbiter!r} has no decide(candidate, options, tree) method")
    return arbiter


def grown_node_id(axis: str, term: str) -> str:
    digest = hashlib.sha1(normalize_term(term).encode()).hexdigest()[:12]
    return f"MET:grow:{check_axis(axis)}:{digest}"


_FILLER = frozenset("of the and or in with without by due to other unspecified nos nec not elsewhere classified".split())


def _content_words(text: str) -> set[str]:
    words = normalize_term(text).split()
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "is")) else w
            for w in words if w not in _FILLER}  # fmt: skip


def _not_narrower(term: str, parent_name: str) -> bool:
    """True when every content word of `term` is in `parent_name`: the term is not more specific."""
    return _content_words(term) <= _content_words(parent_name)


def _no_shared_word(term: str, parent_name: str) -> bool:
    return not (_content_words(term) & _content_words(parent_name))


def _one_path(ids: list[str], tree: Tree) -> bool:
    """True when every pair of ids lies on one root path (so they do not conflict)."""
    lines = [{nid, *tree.ancestors(nid)} for nid in ids]
    return all(a in lines[j] or b in lines[i]
               for i, a in enumerate(ids) for j, b in enumerate(ids) if i < j)  # fmt: skip


def grow_tree(
    tree: Tree,
    counts: dict[str, int],
    embedder: Embedder,
    *,
    min_count: int = 10,
    attach_threshold: float = 0.55,
    ambiguity_margin: float = 0.03,
    axes: Iterable[str] | None = None,
    arbiter=None,
    source_label: str = "literature",
    max_options: int = 5,
    require_narrower: bool = True,
    require_shared_word: bool = False,
    parent_max_level: int | None = None,
    examples: int = 10,
) -> tuple[Tree, dict]:
    """Attach counted candidates under their nearest existing nodes.

    Candidates are merged by normal form (which becomes the node's name), and
    each lands in exactly one bucket: below_min_count, already_in_tree (names a
    node or synonym), below_threshold (best cosine < attach_threshold),
    broader_or_same, arbiter_rejected, or attached. Parents are the existing
    nodes of `axes` below the axis nodes; grown nodes attach to the frozen
    skeleton, never to each other in one call. Of the `max_options` nearest
    nodes above the threshold, those whose content words include all of the
    candidate's ("ulcer" vs "Gastric ulcer") cannot be its parent (a child
    must be narrower; `require_narrower=False` turns this off); when none is
    left the candidate is `broader_or_same`. `require_shared_word=True` also
    drops parents sharing no content word with the candidate (bucket
    `no_shared_word`): a precision guard for small embedders, which put
    "rhinitis" near "urticaria". When the remaining parents within
    `ambiguity_margin` of the best are not all on one root path, the arbiter
    picks among them (counted as `arbitrated`); otherwise the nearest wins.
    New rows come after the old ones, most mentioned first.
    """
    axes = [check_axis(a) for a in (axes or AXES)]
    judge = resolve_arbiter(arbiter)
    merged: dict[str, int] = {}
    for term, c in counts.items():
        key = normalize_term(term)
        if key:
            merged[key] = merged.get(key, 0) + int(c)
    frequent = sorted(((c, k) for k, c in merged.items() if c >= min_count), key=lambda x: (-x[0], x[1]))
    fresh = [(c, k) for c, k in frequent if not tree.by_name(k)]
    report: dict = {"candidates": len(merged), "mentions": sum(merged.values()),
                    "below_min_count": len(merged) - len(frequent),
                    "already_in_tree": len(frequent) - len(fresh)}  # fmt: skip

    skip = {ROOT_ID, *(axis_node_id(a) for a in AXES)}
    cols = tree.table.select(["node_id", "axis", "name", "level"]).to_pydict()
    max_level = parent_max_level if parent_max_level is not None else 1 << 30
    parents = [i for i, nid in enumerate(cols["node_id"])
               if nid not in skip and cols["axis"][i] in axes and cols["name"][i]
               and cols["level"][i] <= max_level]  # fmt: skip
    if fresh and not parents:
        raise MedrayError(f"no nodes below the axis nodes on axes {', '.join(axes)} to attach to")

    kinds = ("below_threshold", "broader_or_same", "no_shared_word", "arbitrated", "arbiter_rejected", "attached")
    buckets: dict[str, list] = {k: [] for k in kinds}
    rows: list[dict] = []
    if fresh:
        cand_vec = embedder.encode([k for _, k in fresh])
        par_vec = embedder.encode([cols["name"][i] for i in parents])
        top_i, top_s = topk_cosine(cand_vec, par_vec, k=min(max_options, len(parents)))
        for (count, term), idx, scores in zip(fresh, top_i, top_s, strict=True):
            best = float(scores[0])
            if best < attach_threshold:
                nearest = cols["name"][parents[idx[0]]]
                buckets["below_threshold"].append({"term": term, "count": count, "nearest": nearest, "score": round(best, 4)})
                continue
            valid = [(j, round(float(s), 4)) for j, s in zip(idx, scores, strict=True) if j >= 0 and s >= attach_threshold]
            for bucket, check, fails in (("broader_or_same", require_narrower, _not_narrower),
                                         ("no_shared_word", require_shared_word, _no_shared_word)):  # fmt: skip
                if check and valid:
                    valid = [(j, s) for j, s in valid if not fails(term, cols["name"][parents[j]])]
                    if not valid:
                        nearest = cols["name"][parents[idx[0]]]
                        buckets[bucket].append({"term": term, "count": count, "nearest": nearest, "score": round(best, 4)})
            if not valid:
                continue
            valid = [(cols["node_id"][parents[j]], s) for j, s in valid]
            options = [o for o in valid if o[1] >= valid[0][1] - ambiguity_margin]
            chosen, reason, decided_by = options[0][0], "nearest node", "nearest"
            if len(options) > 1 and not _one_path([o[0] for o in options], tree):
                chosen, reason = judge.decide(term, options, tree)
                decided_by = judge.name
                if chosen is None:
                    buckets["arbiter_rejected"].append({"term": term, "count": count, "options": options, "reason": reason})
                    continue
                if chosen not in dict(options):
                    raise MedrayError(f"arbiter {judge.name!r} chose {chosen!r}, not an option for {term!r}")
                buckets["arbitrated"].append({"term": term, "chosen": chosen, "options": options, "reason": reason})
            parent = tree.node(chosen)
            second = float(scores[1]) if len(scores) > 1 and np.isfinite(scores[1]) else None
            provenance = {"corpus": source_label, "count": count, "parent_score": dict(options)[chosen],
                          "second_score": None if second is None else round(second, 4),
                          "decided_by": decided_by, "reason": reason}  # fmt: skip
            rows.append({
                "node_id": grown_node_id(parent.axis, term), "parent_id": chosen, "axis": parent.axis,
                "level": parent.level + 1, "name": term, "synonyms": [], "codes": [],
                "sources": [source_label], "absent_forms": [],
                "provenance": json.dumps(provenance, sort_keys=True),
            })  # fmt: skip
            buckets["attached"].append({"term": term, "parent": parent.name, "score": provenance["parent_score"], "count": count})

    new_ids = Counter(r["node_id"] for r in rows)
    clash = {i for i, n in new_ids.items() if n > 1 or i in tree}
    if clash:
        raise MedrayError(f"grown node ids collide: {sorted(clash)[:5]}")
    new_tree = Tree(pa.concat_tables([tree.table, pa.Table.from_pylist(rows, schema=SCHEMA)])) if rows else tree
    per_axis = Counter(r["axis"] for r in rows)
    report |= {name: len(items) for name, items in buckets.items()}
    report |= {
        "per_axis": {a: per_axis.get(a, 0) for a in axes},
        "examples": {name: items[:examples] for name, items in buckets.items()},
        "settings": {"min_count": min_count, "attach_threshold": attach_threshold, "ambiguity_margin": ambiguity_margin,
                     "require_narrower": require_narrower, "require_shared_word": require_shared_word,
                     "arbiter": judge.name, "source_label": source_label},
    }  # fmt: skip
    return new_tree, report
