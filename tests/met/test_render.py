"""The HTML explorer and PNG summary of a Medical Entity Tree."""

from __future__ import annotations

import json
import os
import re
import struct

import pytest

from medray.errors import MedrayError
from medray.met import render
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id

DATA_RE = re.compile(r'<script id="data" type="application/json">(.*?)</script>', re.S)


def small_tree() -> Tree:
    nodes = [Node(ROOT_ID, None, None, 0, "Medical Entity Tree")]
    for axis in AXES:
        nodes.append(Node(axis_node_id(axis), ROOT_ID, axis, 1, axis, sources=["medray"]))
    nodes += [
        Node(
            "MET:d1",
            "MET:disease",
            "disease",
            2,
            "Lung disease",
            codes=["J98.4"],
            sources=["ICD-10-CM"],
        ),
        Node(
            "MET:d2",
            "MET:d1",
            "disease",
            3,
            "Pneumonia",
            synonyms=["lung infection", "pneumonitis"],
            codes=["J18.9", "RID5350"],
            sources=["ICD-10-CM", "RadLex"],
            absent_forms=["lungs clear"],
        ),
        Node(
            "MET:d3",
            "MET:d2",
            "disease",
            4,
            "Lobar pneumonia",
            codes=["J18.1"],
            sources=["grown"],
            provenance=json.dumps({"model": "m", "evidence": ["r1"]}),
        ),
        Node(
            "MET:a1",
            "MET:anatomy",
            "anatomy",
            2,
            "Lung",
            synonyms=["pulmo"],
            codes=["FMA7195"],
            sources=["FMA"],
        ),
        Node(
            "MET:a2",
            "MET:a1",
            "anatomy",
            3,
            "Left lower lobe",
            codes=["RID1338"],
            sources=["RadLex"],
        ),
        Node(
            "MET:m1",
            "MET:modality",
            "modality",
            2,
            "CT",
            synonyms=["computed tomography"],
            sources=["RadLex"],
        ),
        Node("MET:s1", "MET:symptom", "symptom", 2, "Cough", codes=["HP:0012735"], sources=["HPO"]),
    ]
    return Tree.from_nodes(nodes)


def wide_tree(per_node: int = 5) -> Tree:
    """Root, 4 axes, `per_node` children per axis and `per_node` grandchildren each."""
    nodes = [Node(ROOT_ID, None, None, 0, "root")]
    for axis in AXES:
        nodes.append(Node(axis_node_id(axis), ROOT_ID, axis, 1, axis))
        for i in range(per_node):
            cid = f"MET:{axis}:{i}"
            nodes.append(Node(cid, axis_node_id(axis), axis, 2, f"{axis} {i}", codes=[f"C{i}"]))
            for j in range(per_node):
                nodes.append(Node(f"{cid}.{j}", cid, axis, 3, f"{axis} {i}.{j}"))
    return Tree.from_nodes(nodes)


def embedded(text: str) -> dict:
    match = DATA_RE.search(text)
    assert match, "no embedded data block"
    return json.loads(match.group(1))


def external_refs(text: str) -> list[str]:
    attrs = re.findall(r"""(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", text, re.I)
    imports = re.findall(r"""(?:@import|url\()\s*["']?\s*((?:https?:)?//[^"')\s]*)""", text, re.I)
    return attrs + imports


def test_html_embeds_every_node_with_codes_and_synonyms(tmp_path):
    tree = small_tree()
    path = str(tmp_path / "met.html")
    assert render.render_html(tree, path, title="MET <test>") == path
    text = open(path, encoding="utf-8").read()
    assert text.startswith("<!doctype html>")
    assert "<title>MET &lt;test&gt;</title>" in text

    data = embedded(text)
    cols = data["cols"]
    assert data["truncated"] is None and data["unreachable"] == 0
    assert data["axes"] == list(AXES)
    assert {len(v) for v in cols.values()} == {len(tree)}
    assert set(cols["id"]) == set(tree.table.column("node_id").to_pylist())
    # Compact: one array per column, not a dict per node.
    assert all(isinstance(v, list) for v in cols.values())

    at = {nid: i for i, nid in enumerate(cols["id"])}
    assert cols["id"][0] == ROOT_ID and cols["p"][0] == -1
    for i, p in enumerate(cols["p"][1:], start=1):
        assert 0 <= p < i  # breadth first: parents come before their children
    pn = at["MET:d2"]
    assert cols["n"][pn] == "Pneumonia"
    assert cols["c"][pn] == ["J18.9", "RID5350"]
    assert cols["s"][pn] == ["lung infection", "pneumonitis"]
    assert cols["ab"][pn] == ["lungs clear"]
    assert cols["id"][cols["p"][pn]] == "MET:d1"
    assert data["axes"][cols["a"][pn]] == "disease" and cols["l"][pn] == 3
    assert sorted(data["sources"][j] for j in cols["src"][pn]) == ["ICD-10-CM", "RadLex"]
    assert json.loads(cols["pv"][at["MET:d3"]]) == {"model": "m", "evidence": ["r1"]}
    for name in ("Lung", "CT", "Cough", "Left lower lobe"):
        assert name in cols["n"]
    assert "HP:0012735" in cols["c"][at["MET:s1"]]

    summary = data["summary"]
    assert summary["nodes"] == len(tree)
    assert summary["per_axis"] == {"disease": 4, "anatomy": 3, "modality": 2, "symptom": 2}
    assert summary["per_level"] == {"0": 1, "1": 4, "2": 4, "3": 2, "4": 1}
    assert summary["per_source"]["RadLex"] == 3
    assert data["hidden"] == []

    assert external_refs(text) == []
    assert "<script src" not in text and "<link" not in text
    assert "Truncated" not in text


def test_html_data_cannot_break_out_of_its_script_element(tmp_path):
    evil = "</script><script>alert(1)</script><!--"
    tree = Tree.from_nodes(
        [Node(ROOT_ID, None, None, 0, "root"), Node("MET:x", ROOT_ID, None, 1, evil)]
    )
    text = open(render.render_html(tree, str(tmp_path / "x.html")), encoding="utf-8").read()
    assert "alert(1)</script>" not in text
    assert embedded(text)["cols"]["n"] == ["root", evil]


def test_truncation_keeps_top_levels_and_says_so(tmp_path):
    tree = wide_tree()  # 1 + 4 + 20 + 100 nodes
    assert len(tree) == 125
    text = open(
        render.render_html(tree, str(tmp_path / "t.html"), max_nodes=30), encoding="utf-8"
    ).read()
    data = embedded(text)
    cols, info = data["cols"], data["truncated"]
    assert "Truncated: showing 30 of 125 nodes" in text
    assert len(cols["id"]) <= 30
    assert info["shown"] == len(cols["id"]) == 30 and info["total"] == 125
    assert info["complete_levels"] == 2 and info["partial_level"] == 3
    assert info["partial_shown"] == 5 and info["partial_total"] == 100

    levels = cols["l"]
    assert levels.count(0) == 1 and levels.count(1) == 4 and levels.count(2) == 20
    # The partial level is spread over parents: five deepest nodes, five different parents.
    deep_parents = [p for p, lv in zip(cols["p"], levels, strict=True) if lv == 3]
    assert len(set(deep_parents)) == 5
    assert all(0 <= p < i for i, p in enumerate(cols["p"]) if i)
    # Left-out children are counted so the page can show full sizes.
    hidden = data["hidden"]
    assert sum(hidden[2::3]) == 125 - 30
    assert data["summary"]["nodes"] == 125


def test_no_truncation_at_the_limit_and_bad_limit(tmp_path):
    tree = wide_tree(2)
    data = embedded(
        open(render.render_html(tree, str(tmp_path / "a.html"), max_nodes=len(tree))).read()
    )
    assert data["truncated"] is None and len(data["cols"]["id"]) == len(tree)
    with pytest.raises(MedrayError, match="max_nodes"):
        render.render_html(tree, str(tmp_path / "b.html"), max_nodes=0)


def png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_png_summary_is_a_readable_png(tmp_path):
    import matplotlib.image as mpimg

    path = str(tmp_path / "met.png")
    assert render.render_png(small_tree(), path) == path
    width, height = png_size(path)
    assert 1000 <= width <= 4000 and 600 <= height <= 3000
    assert 20_000 < os.path.getsize(path) < 5_000_000
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.05  # not a blank canvas


def test_png_with_missing_axis_and_no_sources(tmp_path):
    tree = Tree.from_nodes(
        [
            Node(ROOT_ID, None, None, 0, "root"),
            Node("MET:disease", ROOT_ID, "disease", 1, "disease"),
            Node("MET:d1", "MET:disease", "disease", 2, "Pneumonia"),
        ]
    )
    path = render.render_png(tree, str(tmp_path / "sparse.png"))
    assert png_size(path)[0] > 0


def test_local_write_without_storage(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "_storage_write", None)
    out = tmp_path / "deep" / "dir" / "met.html"
    render.render_html(small_tree(), str(out))
    render.render_png(small_tree(), "file://" + str(tmp_path / "deep" / "met.png"))
    assert out.exists() and (tmp_path / "deep" / "met.png").exists()
    assert sorted(os.listdir(out.parent)) == ["met.html"]  # no temp files left behind
    with pytest.raises(MedrayError, match="remote"):
        render.render_html(small_tree(), "s3://bucket/met.html")
