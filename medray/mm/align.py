"""Two-stage hybrid filter and alignment over image-text pairs, every row accounted for.

Malformed rows (no text, no image path, an image that does not decode) are rejects. Stage 1 is
cheap rules in a fixed order, the first failing rule naming the row: image size and aspect,
text length in characters and words, at least one entity among the retrieval anchors, then
perceptual-hash dedup over the rows still standing (the first by id order is kept, so the kept
copy is itself a row that passed every other rule). Stage 2 scores the survivors with a
vision-text model and drops them below a global score or, per node, the bottom percent of each
node's scores: reports of rare findings score lower on every model, so one global cut would
empty the rare nodes first.

Each pair has one node for the per-node cut: its most specific entity anchor (deepest in the
tree; lexical before embedding; then score; then node id), so groups partition the pairs and
the share dropped per node is exact: floor(n * percent / 100), lowest scores first, ties by id.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import pyarrow as pa

from medray.errors import MedrayError
from medray.met.tree import Tree
from medray.mm.align_score import score_table
from medray.mm.image_rules import inspect_images, near_duplicates, size_rule
from medray.mm.mm_settings import AlignConfig
from medray.mm.pairs import REJECT_SCHEMA

FILTER_SCHEMA = pa.schema([("id", pa.string()), ("stage", pa.string()), ("rule", pa.string()), ("detail", pa.string())])
STAGE1_RULES = ("image_too_small", "aspect_ratio", "text_too_short", "text_too_long", "no_entity",
                "near_duplicate_image")
STAGE2_RULES = ("low_alignment", "low_alignment_node")
REJECT_REASONS = ("missing_text", "missing_image", "image_decode")
_VIA_RANK = {"lexical": 0, "embedding": 1}


@dataclass
class AlignResult:
    kept: pa.Table  # the pair columns plus node_id (the pair's node), node_ids (all entity anchors), score
    filtered: pa.Table  # FILTER_SCHEMA
    rejects: pa.Table  # medray.mm.pairs.REJECT_SCHEMA: id, path, reason, detail
    counts: dict


def _entity_anchors(anchors: pa.Table, tree: Tree, axes: list[str]) -> dict[str, list[dict]]:
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for row in anchors.select(["id", "node_id", "via", "score"]).to_pylist():
        nid = row["node_id"]
        if nid in tree and (not axes or tree.node(nid).axis in axes):
            by_pair[row["id"]].append({**row, "level": tree.node(nid).level})
    return by_pair


def _primary(anchors: list[dict]) -> str | None:
    if not anchors:
        return None
    best = min(anchors, key=lambda a: (-a["level"], _VIA_RANK.get(a["via"], 9), -(a["score"] or 0.0), a["node_id"]))
    return best["node_id"]


def _text_rule(text: str, cfg: AlignConfig) -> tuple[str, str] | None:
    rules, chars, words = cfg.text, len(text), len(text.split())
    if chars < rules.min_chars:
        return "text_too_short", f"{chars} characters < {rules.min_chars}"
    if words < rules.min_words:
        return "text_too_short", f"{words} words < {rules.min_words}"
    if chars > rules.max_chars:
        return "text_too_long", f"{chars} characters > {rules.max_chars}"
    if rules.max_words and words > rules.max_words:
        return "text_too_long", f"{words} words > {rules.max_words}"
    return None


def stage1(pairs: pa.Table, anchors: pa.Table, tree: Tree, cfg: AlignConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """(survivors with node_id and node_ids, filtered rows, rejects); rows taken in id order."""
    rows = sorted(pairs.to_pylist(), key=lambda r: str(r[cfg.id_column]))
    entity = _entity_anchors(anchors, tree, cfg.entity_axes)
    rejects, filtered, standing = [], [], []
    well_formed = []
    for row in rows:
        pair_id, text, uri = str(row[cfg.id_column]), row[cfg.text_column], row[cfg.image_column]
        if text is None or not str(text).strip():
            rejects.append({"id": pair_id, "path": uri or "", "reason": "missing_text", "detail": f"empty {cfg.text_column}"})
        elif not uri:
            rejects.append({"id": pair_id, "path": "", "reason": "missing_image", "detail": f"empty {cfg.image_column}"})
        else:
            well_formed.append(row)
    infos = inspect_images([r[cfg.image_column] for r in well_formed], cfg.image)
    hashes = {}
    for row, info in zip(well_formed, infos):
        pair_id, uri = str(row[cfg.id_column]), row[cfg.image_column]
        if info.problem:
            rejects.append({"id": pair_id, "path": uri, "reason": "image_decode", "detail": info.problem})
            continue
        mine = entity.get(pair_id, [])
        failed = size_rule(info, cfg.image) or _text_rule(str(row[cfg.text_column]), cfg)
        if failed is None and cfg.require_entity and not mine:
            axes = ", ".join(cfg.entity_axes) or "any axis"
            failed = ("no_entity", f"no retrieval anchor on {axes}")
        if failed:
            filtered.append({"id": pair_id, "stage": "stage1", "rule": failed[0], "detail": failed[1]})
            continue
        hashes[pair_id] = info.hash
        standing.append({**row, "node_id": _primary(mine), "node_ids": sorted({a["node_id"] for a in mine})})
    ids = [str(r[cfg.id_column]) for r in standing]
    dups = near_duplicates(ids, [hashes[i] for i in ids], cfg.image.max_distance, cfg.image.hash_size ** 2)
    survivors = []
    for row, pair_id in zip(standing, ids):
        if pair_id in dups:
            kept_id, distance = dups[pair_id]
            filtered.append({"id": pair_id, "stage": "stage1", "rule": "near_duplicate_image",
                             "detail": f"duplicate of {kept_id} (hash distance {distance})"})
        else:
            survivors.append(row)
    return survivors, filtered, rejects


def stage2(rows: list[dict], cfg: AlignConfig, scorer=None, use_ray: bool = False) -> tuple[list[dict], list[dict], list[dict]]:
    """(kept rows with `score`, filtered rows, rejects) after the alignment score and its threshold."""
    score = cfg.score
    if not score.enabled():
        return [{**r, "score": None} for r in rows], [], []
    table = pa.Table.from_pylist([{"id": str(r[cfg.id_column]), "image": r[cfg.image_column], "text": r[cfg.text_column]}
                                  for r in rows], pa.schema([("id", pa.string()), ("image", pa.string()), ("text", pa.string())]))
    scored = score_table(table, score, ("id", "image", "text"), scorer=scorer, use_ray=use_ray)
    rejects, candidates = [], []
    for row, s, problem in zip(rows, scored.column("score").to_pylist(), scored.column("problem").to_pylist()):
        if s is None:
            rejects.append({"id": str(row[cfg.id_column]), "path": row[cfg.image_column], "reason": "image_decode",
                            "detail": f"vision-text model: {problem}"})
        else:
            candidates.append({**row, "score": s})
    dropped = _threshold(candidates, cfg)
    kept = [r for r in candidates if str(r[cfg.id_column]) not in dropped]
    filtered = [{"id": str(r[cfg.id_column]), "stage": "stage2", **dropped[str(r[cfg.id_column])]}
                for r in candidates if str(r[cfg.id_column]) in dropped]
    return kept, filtered, rejects


def _threshold(rows: list[dict], cfg: AlignConfig) -> dict[str, dict]:
    score = cfg.score
    if score.threshold == "none":
        return {}
    if score.threshold == "global":
        return {str(r[cfg.id_column]): {"rule": "low_alignment", "detail": f"score {r['score']:.4f} < {score.min_score}"}
                for r in rows if r["score"] < score.min_score}
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["node_id"] or ""].append(r)
    out = {}
    for node, members in groups.items():
        members.sort(key=lambda r: (r["score"], str(r[cfg.id_column])))
        k = math.floor(len(members) * score.drop_percent / 100.0)
        for rank, r in enumerate(members[:k], 1):
            out[str(r[cfg.id_column])] = {"rule": "low_alignment_node", "detail":
                                          f"{node or '(no node)'}: score {r['score']:.4f}, rank {rank} of {len(members)} "
                                          f"(bottom {score.drop_percent:g}%)"}
    return out


def _counts(n_in: int, kept: int, filtered: list[dict], rejects: list[dict]) -> dict:
    by_stage = Counter(f["stage"] for f in filtered)
    counts = {
        "in": n_in, "kept": kept, "filtered": len(filtered), "rejected": len(rejects),
        "stages": {
            "reject": {"in": n_in, "rejected": len(rejects), "out": n_in - len(rejects)},
            "stage1": {"in": n_in - len(rejects), "filtered": by_stage["stage1"]},
            "stage2": {"filtered": by_stage["stage2"], "out": kept},
        },
        "reasons": {
            "rejected": dict(sorted(Counter(r["reason"] for r in rejects).items())),
            "stage1": dict(sorted(Counter(f["rule"] for f in filtered if f["stage"] == "stage1").items())),
            "stage2": dict(sorted(Counter(f["rule"] for f in filtered if f["stage"] == "stage2").items())),
        },
    }
    stage1_out = counts["stages"]["stage1"]["in"] - by_stage["stage1"]
    counts["stages"]["stage1"]["out"] = stage1_out
    counts["stages"]["stage2"]["in"] = stage1_out
    if n_in != kept + len(filtered) + len(rejects):
        raise MedrayError(f"filter counts do not reconcile: {n_in} in, {kept} kept + {len(filtered)} filtered + {len(rejects)} rejected")
    return counts


def filter_and_align(pairs: pa.Table, anchors: pa.Table, tree: Tree, cfg: AlignConfig | None = None,
                     scorer=None, use_ray: bool = False) -> AlignResult:
    """Rejects, stage 1 and stage 2 over `pairs` with their retrieval `anchors` (`anchor_pairs(...).anchors`).

    `scorer` is an object with `embed_images` / `embed_texts` (see `align_score`); by default one is
    loaded from `cfg.score`, in-process, or in a Ray actor pool with `use_ray`.
    """
    cfg = cfg or AlignConfig()
    cfg.check()
    cfg.check_columns(pairs.column_names)
    if scorer is None:
        cfg.score.check_files("align.score")
    ids = pairs.column(cfg.id_column).to_pylist()
    if len(set(ids)) != len(ids) or None in ids:
        raise MedrayError(f"pairs column {cfg.id_column!r} must hold unique, non-null ids")
    survivors, filtered, rejects = stage1(pairs, anchors, tree, cfg)
    kept_rows, filtered2, rejects2 = stage2(survivors, cfg, scorer=scorer, use_ray=use_ray)
    filtered, rejects = filtered + filtered2, rejects + rejects2
    schema = pairs.schema
    for name, typ in (("node_id", pa.string()), ("node_ids", pa.list_(pa.string())), ("score", pa.float64())):
        if name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
        schema = schema.append(pa.field(name, typ))
    kept = pa.Table.from_pylist(kept_rows, schema)
    filtered.sort(key=lambda f: (f["stage"], f["id"]))
    rejects.sort(key=lambda r: (r["id"], r["reason"]))
    return AlignResult(kept, pa.Table.from_pylist(filtered, FILTER_SCHEMA), pa.Table.from_pylist(rejects, REJECT_SCHEMA),
                       _counts(len(ids), kept.num_rows, filtered, rejects))
