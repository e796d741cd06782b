"""Growing the tree from literature onto a frozen skeleton (MedXIAOHE).

Three steps, each usable alone (1 and 2 live in `medray.met.mining`, the
literature corpus in `medray.met.literature`; all are re-exported here):
1. `mine_candidates` pulls entity-looking phrases out of text with a small
   rule set (`mining.RULES`: suffix heads, head nouns, modifiers to strip);
2. `count_candidates_ray` counts them over a corpus with Ray Data, without
   bringing the corpus to the driver;
3. `grow_tree` drops rare and known candidates, cut-off fragments and vague
   generic phrases, embeds the rest and hangs each under a lexical hypernym
   ("Pain" for "rest pain") or else its nearest existing node that passes the
   word rules of `medray.met.attach_rules` (no contradictory modifier, no
   modifier the candidate lacks), asking an arbiter when two parents on
   different branches are almost equally good.

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
from medray.met.attach_rules import (
    LexicalIndex,
    content_words,
    contradiction,
    not_narrower,
    sibling_reason,
)
from medray.met.embed import Embedder, topk_cosine
from medray.met.literature import default_hpo_path, literature_corpus
from medray.met.mining import (
    count_candidates_ray,
    fragment_shares,
    is_generic_phrase,
    mine_candidates,
)
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


def _one_path(ids: list[str], tree: Tree) -> bool:
    """True when every pair of ids lies on one root path (so they do not conflict)."""
    lines = [{nid, *tree.ancestors(nid)} for nid in ids]
    return all(a in lines[j] or b in lines[i]
               for i, a in enumerate(ids) for j, b in enumerate(ids) if i < j)  # fmt: skip


def _filters(term: str, require_narrower: bool, require_shared_word: bool) -> list[tuple[str, Callable]]:
    """(bucket, fails(parent name) -> falsy or a reason) in the order they are applied."""
    words = content_words(term)
    out: list[tuple[str, Callable]] = []
    if require_narrower:
        out.append(("broader_or_same", lambda name: not_narrower(term, name)))
    if require_shared_word:
        out.append(("no_shared_word", lambda name: not (words & content_words(name))))
    if require_narrower:
        out += [("contradictory_modifier", lambda name: contradiction(term, name)),
                ("sibling_or_broader", lambda name: sibling_reason(term, name))]  # fmt: skip
    return out


def _prune(fresh: list, merged: dict[str, int], fragment_share: float | None, drop_generic: bool,
           buckets: dict[str, list]) -> list:  # fmt: skip
    """Drop cut-off fragments and vague generic phrases before embedding (mining rules)."""
    shares = fragment_shares(merged, [k for _, k in fresh]) if fragment_share is not None else {}
    kept = []
    for count, term in fresh:
        share = shares.get(term, 0.0)
        if fragment_share is not None and share >= fragment_share:
            buckets["fragment"].append({"term": term, "count": count, "share": round(share, 3)})
        elif drop_generic and is_generic_phrase(term):
            buckets["generic_phrase"].append({"term": term, "count": count})
        else:
            kept.append((count, term))
    return kept


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
    lexical: bool = True,
    fragment_share: float | None = 0.75,
    drop_generic: bool = True,
    examples: int = 10,
) -> tuple[Tree, dict]:
    """Attach counted candidates under their nearest existing nodes.

    Candidates are merged by normal form (which becomes the node's name), and
    each lands in exactly one bucket: below_min_count, already_in_tree (names a
    node or synonym), fragment (at least `fragment_share` of its occurrences
    end a longer candidate: "use disorder"), generic_phrase (vague modifier +
    generic head: "structural anomaly"; `drop_generic`), below_threshold (best
    cosine < attach_threshold), broader_or_same, no_shared_word,
    contradictory_modifier, sibling_or_broader, arbiter_rejected, or attached.
    Parents are the existing nodes of `axes` below the axis nodes, at most
    `parent_max_level` deep; grown nodes attach to the frozen skeleton, never
    to each other in one call.

    The options are the `max_options` nearest nodes above the threshold plus,
    with `lexical`, the lexical hypernyms (`attach_rules.LexicalIndex`: a node
    whose content words, qualifiers stripped, are a proper subset of the
    candidate's and hold its head; "Pain" for "rest pain") above the threshold.
    With `require_narrower` (the default) an option is dropped when it is not
    narrower-than (every candidate word in its name: `broader_or_same`, also
    when a node names the candidate up to qualifiers), when it has a
    contradictory modifier (benign/malignant, acute/chronic, X/non-X:
    `contradictory_modifier`), or when it carries a modifier the candidate
    lacks or a different head ("Ebstein's anomaly" for "structural anomaly":
    `sibling_or_broader`). `require_shared_word=True` also drops options
    sharing no content word (`no_shared_word`). The bucket is that of the
    check that removed the last option. Of the rest, those covering the most
    candidate words win, lexical hypernyms before embedding neighbours; when
    the ones within `ambiguity_margin` of the best are not all on one root
    path, the arbiter picks (counted as `arbitrated`). New rows come after the
    old ones, most mentioned first; provenance records score, match and reason.
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
    kinds = ("fragment", "generic_phrase", "below_threshold", "broader_or_same", "no_shared_word",
             "contradictory_modifier", "sibling_or_broader", "lexical", "arbitrated", "arbiter_rejected", "attached")  # fmt: skip
    buckets: dict[str, list] = {k: [] for k in kinds}
    fresh = _prune(fresh, merged, fragment_share, drop_generic, buckets)

    skip = {ROOT_ID, *(axis_node_id(a) for a in AXES)}
    cols = tree.table.select(["node_id", "axis", "name", "level", "synonyms"]).to_pydict()
    max_level = parent_max_level if parent_max_level is not None else 1 << 30
    parents = [i for i, nid in enumerate(cols["node_id"])
               if nid not in skip and cols["axis"][i] in axes and cols["name"][i]
               and cols["level"][i] <= max_level]  # fmt: skip
    if fresh and not parents:
        raise MedrayError(f"no nodes below the axis nodes on axes {', '.join(axes)} to attach to")

    rows: list[dict] = []
    removed: Counter = Counter()  # options dropped by each check (a candidate may lose several)
    if fresh:
        cand_vec = embedder.encode([k for _, k in fresh])
        par_vec = embedder.encode([cols["name"][i] for i in parents])
        top_i, top_s = topk_cosine(cand_vec, par_vec, k=min(max_options, len(parents)))
        names = [cols["name"][i] for i in parents]
        index = LexicalIndex(names, [cols["synonyms"][i] for i in parents]) if lexical else None
        for (count, term), vec, idx, scores in zip(fresh, cand_vec, top_i, top_s, strict=True):
            best = float(scores[0])
            nearest = names[idx[0]]
            if best < attach_threshold:
                buckets["below_threshold"].append({"term": term, "count": count, "nearest": nearest, "score": round(best, 4)})
                continue
            same = index.same(term) if index is not None and require_narrower else []
            if same:
                buckets["broader_or_same"].append({"term": term, "count": count, "nearest": names[same[0]],
                                                   "score": round(float(par_vec[same[0]] @ vec), 4), "reason": "same words"})  # fmt: skip
                continue
            lex = dict(index.hypernyms(term)) if index is not None else {}
            pool = {int(j): round(float(s), 4) for j, s in zip(idx, scores, strict=True) if j >= 0 and s >= attach_threshold}
            pool |= {j: round(float(par_vec[j] @ vec), 4) for j in lex}
            valid = sorted(((j, s) for j, s in pool.items() if s >= attach_threshold), key=lambda o: (-o[1], o[0]))
            for bucket, fails in _filters(term, require_narrower, require_shared_word):
                why = [fails(names[j]) for j, _ in valid]
                if valid and all(why):
                    buckets[bucket].append({"term": term, "count": count, "nearest": names[valid[0][0]],
                                            "score": valid[0][1], "reason": why[0] if isinstance(why[0], str) else bucket})  # fmt: skip
                removed[bucket] += sum(map(bool, why))
                valid = [o for o, w in zip(valid, why, strict=True) if not w]
            if not valid:
                continue
            words = content_words(term)
            rank = {j: (lex.get(j) or len(words & content_words(names[j])), j in lex) for j, _ in valid}
            top = max(rank.values())
            group = [(j, s) for j, s in valid if rank[j] == top]
            options = [(cols["node_id"][parents[j]], s) for j, s in group if s >= group[0][1] - ambiguity_margin]
            match = "lexical" if top[1] else "embedding"
            chosen, reason, decided_by = options[0][0], *(("lexical hypernym", "lexical") if top[1] else ("nearest node", "nearest"))
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
                          "decided_by": decided_by, "reason": reason, "match": match}  # fmt: skip
            rows.append({
                "node_id": grown_node_id(parent.axis, term), "parent_id": chosen, "axis": parent.axis,
                "level": parent.level + 1, "name": term, "synonyms": [], "codes": [],
                "sources": [source_label], "absent_forms": [],
                "provenance": json.dumps(provenance, sort_keys=True),
            })  # fmt: skip
            entry = {"term": term, "parent": parent.name, "score": provenance["parent_score"], "count": count, "match": match}
            buckets["attached"].append(entry)
            if match == "lexical":
                buckets["lexical"].append(entry)

    new_ids = Counter(r["node_id"] for r in rows)
    clash = {i for i, n in new_ids.items() if n > 1 or i in tree}
    if clash:
        raise MedrayError(f"grown node ids collide: {sorted(clash)[:5]}")
    new_tree = Tree(pa.concat_tables([tree.table, pa.Table.from_pylist(rows, schema=SCHEMA)])) if rows else tree
    per_axis = Counter(r["axis"] for r in rows)
    report |= {name: len(items) for name, items in buckets.items()}
    report |= {
        "per_axis": {a: per_axis.get(a, 0) for a in axes},
        "options_removed": {k: n for k, n in sorted(removed.items()) if n},
        "examples": {name: items[:examples] for name, items in buckets.items()},
        "settings": {"min_count": min_count, "attach_threshold": attach_threshold, "ambiguity_margin": ambiguity_margin,
                     "require_narrower": require_narrower, "require_shared_word": require_shared_word,
                     "lexical": lexical, "fragment_share": fragment_share, "drop_generic": drop_generic,
                     "parent_max_level": parent_max_level, "arbiter": judge.name, "source_label": source_label},
    }  # fmt: skip
    return new_tree, report
