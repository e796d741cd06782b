"""How well the tree covers a benchmark, and how a tagged corpus spreads over the tree.

AMCS (average maximum cosine similarity, MedXIAOHE): for term sets A and Ref,
AMCS(A, Ref) = mean over a in A of max over r in Ref of cos(e(a), e(r)).
It is asymmetric on purpose: *forward* = AMCS(benchmark entities, tree names)
asks "does the tree know what the benchmark asks about"; *backward* =
AMCS(tree names, benchmark entities) asks "how much of the tree does the
benchmark exercise". A tree that is a superset of the benchmark scores 1.0
forward and less backward.

`node_frequency_stats` answers the other half of coverage: given mention
counts per node from a tagged corpus, which nodes have no data and how long
the tail is (what entity-driven sampling must back-fill).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

import numpy as np

from medray.errors import MedrayError
from medray.met.embed import Embedder, argmax_cosine, max_cosine
from medray.met.normalize import normalize_term
from medray.met.tree import AXES, ROOT_ID, Tree, axis_node_id, check_axis


def _dedupe(terms: Iterable[str]) -> list[str]:
    """Distinct terms by normal form, first surface form kept, order kept."""
    seen: dict[str, str] = {}
    for t in terms:
        key = normalize_term(t or "")
        if key and key not in seen:
            seen[key] = t.strip()
    return list(seen.values())


def amcs(a_terms: list[str], ref_terms: list[str], embedder: Embedder) -> float:
    """Mean over `a_terms` of the best cosine to any of `ref_terms`."""
    if not a_terms or not ref_terms:
        raise MedrayError(
            f"AMCS needs two non-empty term lists (got {len(a_terms)} and {len(ref_terms)})"
        )
    return float(
        max_cosine(embedder.encode(list(a_terms)), embedder.encode(list(ref_terms))).mean()
    )


def tree_terms(tree: Tree, axes: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Distinct node names per axis, root and axis nodes left out, in table order."""
    axes = [check_axis(a) for a in (axes or AXES)]
    skip = {ROOT_ID, *(axis_node_id(a) for a in AXES)}
    cols = tree.table.select(["node_id", "axis", "name"]).to_pydict()
    raw: dict[str, list[str]] = {a: [] for a in axes}
    for nid, axis, name in zip(cols["node_id"], cols["axis"], cols["name"], strict=True):
        if nid not in skip and axis in raw and name:
            raw[axis].append(name)
    return {a: _dedupe(v) for a, v in raw.items()}


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def coverage_report(
    tree: Tree,
    entities: list[str] | Mapping[str, list[str]],
    embedder: Embedder,
    axes: Iterable[str] | None = None,
    max_tree_terms_per_axis: int | None = None,
    seed: int = 0,
    weakest: int = 10,
) -> dict:
    """Forward and backward AMCS, overall and per axis.

    `entities` is either a flat list of benchmark entities or a mapping
    axis -> entities. Entities and tree names are de-duplicated by normal form.
    Overall: forward = AMCS(all entities, all tree names of `axes`), backward
    the reverse. Per axis, with an axis mapping: AMCS within the axis both
    ways. Per axis, with a flat list: each entity belongs to the axis of its
    nearest tree name; forward[axis] is the mean best score of the entities it
    owns (so overall forward is their count-weighted mean), backward[axis] =
    AMCS(tree names of the axis, all entities). A side with no terms gives None.

    `max_tree_terms_per_axis` samples that many names per axis (seeded, for
    speed on large trees); `counts.tree_terms_total` says how many there were.
    Entities under axes left out of `axes` are ignored.
    """
    axes = [check_axis(a) for a in (axes or AXES)]
    all_tree = tree_terms(tree, axes)
    totals = {a: len(v) for a, v in all_tree.items()}
    terms: dict[str, list[str]] = {}
    rng = random.Random(seed)
    for a in axes:
        names = all_tree[a]
        if max_tree_terms_per_axis is not None and len(names) > max_tree_terms_per_axis:
            keep = set(rng.sample(range(len(names)), max_tree_terms_per_axis))
            names = [n for i, n in enumerate(names) if i in keep]
        terms[a] = names

    by_axis = isinstance(entities, Mapping)
    if by_axis:
        ent_axes = {check_axis(a): _dedupe(v) for a, v in entities.items()}
        flat_entities = _dedupe(t for a in axes for t in ent_axes.get(a, ()))
    else:
        flat_entities = _dedupe(entities)
    tree_flat = [t for a in axes for t in terms[a]]
    tree_axis = np.array([a for a in axes for _ in terms[a]])
    if not flat_entities:
        raise MedrayError("coverage needs at least one benchmark entity on the selected axes")
    if not tree_flat:
        raise MedrayError(f"the tree has no named nodes on axes {', '.join(axes)}")

    e_vec = embedder.encode(flat_entities)
    t_vec = embedder.encode(tree_flat)
    best_i, best_s, _ = argmax_cosine(e_vec, t_vec)
    back = max_cosine(t_vec, e_vec)

    per_axis: dict[str, dict] = {}
    for a in axes:
        mask = tree_axis == a
        if by_axis:
            ents = ent_axes.get(a, [])
            ev = embedder.encode(ents) if ents else np.zeros((0, e_vec.shape[1]), np.float32)
            tv = t_vec[mask]
            fwd = _mean(max_cosine(ev, tv)) if len(tv) else None
            bwd = _mean(max_cosine(tv, ev)) if len(ev) else None
            n_ent = len(ents)
        else:
            owned = mask[best_i]
            fwd, n_ent = _mean(best_s[owned]), int(owned.sum())
            bwd = _mean(back[mask])
        per_axis[a] = {
            "forward": fwd,
            "backward": bwd,
            "entities": n_ent,
            "tree_terms": int(mask.sum()),
        }

    order = np.argsort(best_s, kind="stable")[:weakest]
    return {
        "forward": float(best_s.mean()),
        "backward": float(back.mean()),
        "mode": "per_axis_entities" if by_axis else "flat_entities",
        "per_axis": per_axis,
        "counts": {
            "entities": len(flat_entities),
            "tree_terms": len(tree_flat),
            "tree_terms_total": sum(totals.values()),
            "sampled": any(len(terms[a]) < totals[a] for a in axes),
        },
        "weakest_entities": [
            {"entity": flat_entities[i], "nearest": tree_flat[best_i[i]], "score": float(best_s[i])}
            for i in order
        ],
    }


# ---- mention frequencies ------------------------------------------------------


def _counts_dict(counts) -> dict[str, int]:
    if hasattr(counts, "column_names"):  # a pyarrow Table (node_id, count)
        missing = {"node_id", "count"} - set(counts.column_names)
        if missing:
            raise MedrayError(f"counts table lacks columns: {', '.join(sorted(missing))}")
        pairs = zip(
            counts.column("node_id").to_pylist(), counts.column("count").to_pylist(), strict=True
        )
    else:
        pairs = counts.items()
    out: dict[str, int] = {}
    for nid, c in pairs:
        if c is None or c < 0:
            raise MedrayError(f"count for node {nid!r} must be a non-negative integer, got {c!r}")
        out[nid] = out.get(nid, 0) + int(c)
    return out


def _distribution(ids: list[str], counts: dict[str, int], tail_quantile: float, k: int) -> dict:
    values = np.array([counts.get(i, 0) for i in ids], dtype=np.int64)
    n, total = len(ids), int(values.sum())
    with_data = int((values >= k).sum())
    out = {
        "nodes": n,
        "mentions": total,
        "nodes_with_data": with_data,
        "nodes_without_data": n - with_data,
        "share_without_data": (n - with_data) / n if n else 0.0,
    }
    if total == 0:
        return out | {
            "entropy_nats": 0.0,
            "entropy_normalised": 0.0,
            "head_size": 0,
            "head_share_of_nodes": 0.0,
            "head_mentions": 0,
            "tail_mentions": 0,
            "tail_share": 0.0,
        }
    p = values[values > 0] / total
    entropy = float(-(p * np.log(p)).sum())
    # head: smallest prefix of nodes sorted by count desc (node id breaks ties)
    order = sorted(range(n), key=lambda i: (-values[i], ids[i]))
    cum, head = 0, 0
    for i in order:
        if cum >= tail_quantile * total:
            break
        cum += int(values[i])
        head += 1
    return out | {
        "entropy_nats": entropy,
        "entropy_normalised": entropy / math.log(n) if n > 1 else 0.0,
        "head_size": head,
        "head_share_of_nodes": head / n,
        "head_mentions": cum,
        "tail_mentions": total - cum,
        "tail_share": (total - cum) / total,
    }


def node_frequency_stats(
    tree: Tree, counts, tail_quantile: float = 0.8, k: int = 1, top: int = 20
) -> dict:
    """How a tagged corpus's mentions spread over the tree's entity nodes.

    `counts` maps node_id -> mentions (or is a pyarrow Table with node_id,
    count; repeated ids are summed). The population is every node except the
    root and the axis nodes; counts on other ids are reported under `unknown`
    and left out of every statistic.

    Definitions, over the N population nodes with counts c_i and total T:
    - a node *has data* when c_i >= k; `share_without_data` = nodes without / N;
    - `entropy_nats` = -sum p_i ln p_i with p_i = c_i / T (zero counts add 0);
      `entropy_normalised` = entropy / ln N (1.0 = mentions spread evenly over
      every node, data-less nodes included);
    - the *head* is the smallest set of nodes, taken by count descending (ties
      by node id), whose mentions reach `tail_quantile` * T; `head_size` is its
      node count, `tail_share` = mentions on all other nodes / T.
    The same statistics are given per axis (head and tail computed within the
    axis), with the `top` most mentioned nodes.
    """
    if not 0.0 < tail_quantile <= 1.0:
        raise MedrayError(f"tail_quantile must be in (0, 1], got {tail_quantile}")
    counts = _counts_dict(counts)
    skip = {ROOT_ID, *(axis_node_id(a) for a in AXES)}
    cols = tree.table.select(["node_id", "axis", "name"]).to_pydict()
    ids = [nid for nid in cols["node_id"] if nid not in skip]
    id_set = set(ids)
    axis_of = dict(zip(cols["node_id"], cols["axis"], strict=True))
    name_of = dict(zip(cols["node_id"], cols["name"], strict=True))
    unknown = {nid: c for nid, c in counts.items() if nid not in id_set}

    stats = _distribution(ids, counts, tail_quantile, k)
    per_axis = {}
    for a in AXES:
        a_ids = [nid for nid in ids if axis_of[nid] == a]
        if a_ids:
            per_axis[a] = _distribution(a_ids, counts, tail_quantile, k)
    ranked = sorted((nid for nid in ids if counts.get(nid, 0) > 0), key=lambda i: (-counts[i], i))[
        :top
    ]
    return stats | {
        "tail_quantile": tail_quantile,
        "k": k,
        "per_axis": per_axis,
        "top_nodes": [
            {"node_id": nid, "name": name_of[nid], "axis": axis_of[nid], "count": counts[nid]}
            for nid in ranked
        ],
        "unknown": {"node_ids": len(unknown), "mentions": sum(unknown.values())},
    }
