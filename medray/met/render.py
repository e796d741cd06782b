"""Render a Medical Entity Tree for people: a self-contained HTML explorer and a PNG summary.

`render_html` embeds the node table as compact column arrays in one HTML file (inline
CSS and JS, no network) with a summary header, a sunburst, search and a lazily
rendered collapsible tree. `render_png` draws a one-page matplotlib summary.
"""

from __future__ import annotations

import html
import io
import json
import os
import tempfile
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from medray.errors import MedrayError
from medray.met.tree import AXES, Tree, axis_node_id

try:  # another module owns remote and atomic writes; fall back to local files without it
    from medray.storage import atomic_write_bytes as _storage_write
except ImportError:  # pragma: no cover - depends on which modules are present
    _storage_write = None

AXIS_COLORS = {
    "disease": "#d64550",
    "anatomy": "#3e78c2",
    "modality": "#3f9b5b",
    "symptom": "#e08a1e",
}
PROVENANCE_CHARS = 2000  # per node, in the HTML; longer provenance is cut with a marker
TEMPLATE = "render_template.html"


# ---- shape: parent indexes, breadth-first order, depths and subtree sizes ---------------
@dataclass
class _Shape:
    ids: list[str]
    parent: list[int]  # row index of the parent, -1 for roots (no parent or unknown parent)
    kids: list[list[int]]
    roots: list[int]
    order: list[int]  # reachable rows, breadth first, children in table order
    depth: list[int]  # -1 for rows unreachable from a root (cycles)
    size: list[int]  # subtree size, the node included


def _shape(tree: Tree) -> _Shape:
    ids = tree.table.column("node_id").to_pylist()
    pids = tree.table.column("parent_id").to_pylist()
    row = {nid: i for i, nid in enumerate(ids)}
    parent = [row.get(p, -1) if p is not None else -1 for p in pids]
    kids: list[list[int]] = [[] for _ in ids]
    roots: list[int] = []
    for i, p in enumerate(parent):
        (kids[p] if p >= 0 else roots).append(i)
    depth = [-1] * len(ids)
    order: list[int] = []
    for r in roots:
        depth[r] = 0
        order.append(r)
    head = 0
    while head < len(order):
        i = order[head]
        head += 1
        for k in kids[i]:
            if depth[k] < 0:
                depth[k] = depth[i] + 1
                order.append(k)
    size = [1] * len(ids)
    for i in reversed(order):
        if parent[i] >= 0:
            size[parent[i]] += size[i]
    return _Shape(ids, parent, kids, roots, order, depth, size)


def _select(shape: _Shape, max_nodes: int) -> tuple[list[int], dict | None]:
    """Rows to embed (breadth first) and, when truncated, what was left out.

    Whole levels are kept from the top while they fit; the next level gets the rest of
    the budget spread over its parents (every parent's first child before any second
    child), and deeper levels are dropped.
    """
    if max_nodes < 1:
        raise MedrayError(f"max_nodes must be at least 1, got {max_nodes}")
    order, depth = shape.order, shape.depth
    if len(order) <= max_nodes:
        return order, None
    per_depth = Counter(depth[i] for i in order)
    used, complete = 0, -1
    for d in range(max(per_depth) + 1):
        if used + per_depth[d] > max_nodes:
            break
        used += per_depth[d]
        complete = d
    partial = complete + 1
    rank: dict[int, int] = {}
    candidates = [i for i in order if depth[i] == partial]
    for i in candidates:
        if i not in rank:
            siblings = shape.kids[shape.parent[i]] if shape.parent[i] >= 0 else shape.roots
            rank.update((k, j) for j, k in enumerate(siblings))
    budget = max_nodes - used
    by_turn = sorted(range(len(candidates)), key=lambda j: (rank[candidates[j]], j))
    chosen = {candidates[j] for j in by_turn[:budget]}
    keep = [i for i in order if depth[i] <= complete or i in chosen]
    info = {
        "max_nodes": max_nodes,
        "shown": len(keep),
        "total": len(order),
        "complete_levels": complete,
        "partial_level": partial,
        "partial_shown": len(chosen),
        "partial_total": len(candidates),
        "max_depth": max(per_depth),
    }
    return keep, info


# ---- HTML -----------------------------------------------------------------------------
def _payload(tree: Tree, *, max_nodes: int, title: str) -> dict:
    shape = _shape(tree)
    keep, truncated = _select(shape, max_nodes)
    pos = {i: j for j, i in enumerate(keep)}
    t = tree.table
    col = {name: t.column(name).to_pylist() for name in t.column_names}
    src_count = Counter(s for srcs in col["sources"] for s in (srcs or ()))
    sources = [s for s, _ in sorted(src_count.items(), key=lambda kv: (-kv[1], kv[0]))]
    src_index = {s: j for j, s in enumerate(sources)}
    axis_index = {a: j for j, a in enumerate(AXES)}

    def prov(text: str | None) -> str:
        text = text or ""
        return text if len(text) <= PROVENANCE_CHARS else text[:PROVENANCE_CHARS] + " … [cut]"

    hidden: list[int] = []
    for j, i in enumerate(keep):
        left_out = [k for k in shape.kids[i] if k not in pos]
        if left_out:
            hidden += [j, len(left_out), sum(shape.size[k] for k in left_out)]
    cols = {
        "id": [col["node_id"][i] for i in keep],
        "p": [pos.get(shape.parent[i], -1) for i in keep],
        "a": [axis_index.get(col["axis"][i], -1) for i in keep],
        "l": [col["level"][i] for i in keep],
        "n": [col["name"][i] or "" for i in keep],
        "s": [[s for s in (col["synonyms"][i] or ()) if s != col["name"][i]] for i in keep],
        "c": [list(col["codes"][i] or ()) for i in keep],
        "src": [[src_index[s] for s in (col["sources"][i] or ())] for i in keep],
        "ab": [list(col["absent_forms"][i] or ()) for i in keep],
        "pv": [prov(col["provenance"][i]) for i in keep],
    }
    summary = tree.summary()
    summary["per_level"] = {str(k): v for k, v in sorted(Counter(col["level"]).items())}
    return {
        "v": 1,
        "title": title,
        "axes": list(AXES),
        "colors": AXIS_COLORS,
        "summary": summary,
        "sources": sources,
        "truncated": truncated,
        "unreachable": len(shape.ids) - len(shape.order),
        "hidden": hidden,  # flat triples: embedded index, children left out, nodes left out
        "cols": cols,
    }


def _notice(truncated: dict | None, unreachable: int) -> str:
    """Static banners (readable without JS) for a truncated tree and unreachable nodes."""
    out = []
    if truncated:
        t = truncated
        text = f"Truncated: showing {t['shown']:,} of {t['total']:,} nodes (max_nodes={t['max_nodes']:,}). "
        if t["complete_levels"] >= 0:
            text += f"Levels 0–{t['complete_levels']} are complete; "
        if t["partial_shown"]:
            text += f"level {t['partial_level']} shows {t['partial_shown']:,} of {t['partial_total']:,} nodes; "
        text += f"deeper levels (to {t['max_depth']}) are left out. "
        text += "Counts, sizes and the summary describe the whole tree."
        out.append(text)
    if unreachable:
        out.append(
            f"{unreachable:,} nodes are not reachable from a root (a parent cycle) and are not shown."
        )
    return "".join(f'<div class="banner">{html.escape(text)}</div>' for text in out)


@lru_cache(maxsize=1)
def _template() -> str:
    return resources.files("medray.met").joinpath(TEMPLATE).read_text(encoding="utf-8")


def render_html(
    tree: Tree, path: str, *, max_nodes: int = 60000, title: str = "Medical Entity Tree"
) -> str:
    """Write a self-contained HTML explorer of `tree` to `path` and return `path`.

    At most `max_nodes` nodes are embedded: top levels complete, the deepest cut (the
    page says so). Summary counts always describe the whole tree.
    """
    payload = _payload(tree, max_nodes=max_nodes, title=title)
    # "<" escaped so no string in the data can close the <script> element.
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    head, sep, tail = _template().partition("__DATA__")
    if not sep:
        raise MedrayError(f"{TEMPLATE} lacks the __DATA__ placeholder")
    notice = _notice(payload["truncated"], payload["unreachable"])

    def fill(part: str) -> str:
        return part.replace("__TITLE__", html.escape(title)).replace("__NOTICE__", notice)

    page = fill(head) + data + fill(tail)
    _write(path, page.encode("utf-8", "replace"))
    return path


# ---- PNG ------------------------------------------------------------------------------
def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def render_png(tree: Tree, path: str, *, title: str = "Medical Entity Tree") -> str:
    """Write a one-page PNG summary of `tree` to `path` and return `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = tree.summary()
    shape = _shape(tree)
    row = {nid: i for i, nid in enumerate(shape.ids)}
    names = tree.table.column("name").to_pylist()

    fig = Figure(figsize=(17, 10.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 4, height_ratios=[1.15, 1])
    fig.suptitle(
        f"{title}: {summary['nodes']:,} nodes · {summary['synonyms']:,} synonyms · "
        f"{summary['codes']:,} codes · {len(summary['per_source'])} sources · "
        f"max level {summary['max_level']}",
        fontsize=16,
        fontweight="bold",
    )

    # Nodes per level, stacked by axis.
    ax = fig.add_subplot(grid[0, :2])
    levels = sorted({int(k) for a in AXES for k in summary["per_axis_level"][a]})
    bottom = [0] * len(levels)
    for a in AXES:
        counts = [summary["per_axis_level"][a].get(str(lv), 0) for lv in levels]
        label = f"{a} ({summary['per_axis'][a]:,})"
        ax.bar(levels, counts, bottom=bottom, color=AXIS_COLORS[a], label=label, width=0.7)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    for lv, total in zip(levels, bottom, strict=True):
        ax.annotate(
            f"{total:,}",
            (lv, total),
            ha="center",
            va="bottom",
            fontsize=9,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_title("Nodes per level and axis", fontsize=12, loc="left")
    ax.set_xlabel("level (root = 0, axes = 1)")
    ax.set_ylabel("nodes")
    ax.set_xticks(levels)
    ax.margins(y=0.12)
    ax.legend(frameon=False, fontsize=10)
    ax.grid(axis="y", alpha=0.3)

    # Nodes per source.
    ax = fig.add_subplot(grid[0, 2:])
    per_source = sorted(summary["per_source"].items(), key=lambda kv: (-kv[1], kv[0]))
    shown = per_source[:15]
    ax.set_title(
        f"Nodes per source (top {len(shown)} of {len(per_source)})"
        if len(per_source) > len(shown)
        else "Nodes per source",
        fontsize=12,
        loc="left",
    )
    if shown:
        labels = [_short(s, 32) for s, _ in shown][::-1]
        values = [v for _, v in shown][::-1]
        bars = ax.barh(labels, values, color="#6b7a99")
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=9)
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no sources recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()

    # Largest top-level branches of each axis, by subtree size.
    for col, a in enumerate(AXES):
        ax = fig.add_subplot(grid[1, col])
        i = row.get(axis_node_id(a))
        if i is None:
            ax.set_title(f"{a}: absent", fontsize=12, loc="left", color=AXIS_COLORS[a])
            ax.set_axis_off()
            continue
        kids = sorted(shape.kids[i], key=lambda k: -shape.size[k])
        top = kids[:10]
        ax.set_title(
            f"{a}\n{shape.size[i] - 1:,} nodes in {len(kids):,} top-level branches",
            fontsize=11.5,
            loc="left",
            color=AXIS_COLORS[a],
            fontweight="bold",
        )
        if not top:
            ax.text(0.5, 0.5, "no branches", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        labels = [_short(names[k] or shape.ids[k], 26) for k in top][::-1]
        values = [shape.size[k] for k in top][::-1]
        bars = ax.barh(range(len(top)), values, color=AXIS_COLORS[a], alpha=0.85)
        ax.set_yticks(range(len(top)), labels, fontsize=9)
        ax.set_ylim(len(top) - 10.4, len(top) - 0.4)  # same bar height in every panel
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
        ax.set_xlabel(
            "subtree size" + (f" (largest 10 of {len(kids):,})" if len(kids) > 10 else "")
        )
        ax.margins(x=0.22)
        ax.grid(axis="x", alpha=0.3)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", bbox_inches="tight", pad_inches=0.3)
    _write(path, buf.getvalue())
    return path


# ---- writing --------------------------------------------------------------------------
def _write(path: str, data: bytes) -> None:
    if _storage_write is not None:
        _storage_write(path, data)
        return
    local = path[len("file://") :] if path.startswith("file://") else path
    if "://" in local:
        raise MedrayError(f"cannot write {path!r}: remote URIs need medray.storage")
    folder = os.path.dirname(os.path.abspath(local))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(local))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, local)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
