"""Tagging: node ids by assertion and per-axis counts on every record."""

from __future__ import annotations

import pyarrow as pa

from medray.data.tag import TagConfig, TagStage


def test_tag_stage_adds_nodes_by_assertion(tiny_tree):
    stage = TagStage(TagConfig(), tree=tiny_tree)
    stage.setup()
    batch = pa.table({"id": ["a:1", "a:2", "a:3"], "text": [
        "Small pleural effusion in the left lung. No pneumothorax.",
        "Nothing to see here.",
        "Possible cardiomegaly. Pleural effusion again, and pleural effusion.",
    ], "source": ["a"] * 3, "meta": ["{}"] * 3})
    result = stage(batch)
    out = result.kept
    assert out.num_rows == 3 and result.dropped.num_rows == 0
    assert out.column("nodes").to_pylist() == [["T:lung", "T:pe"], [], ["T:pe"]]
    assert out.column("nodes_absent").to_pylist() == [["T:ptx"], [], []]
    assert out.column("nodes_uncertain").to_pylist() == [[], [], ["T:cm"]]
    counts = out.column("axis_counts").to_pylist()
    assert counts[0] == {"disease": 0, "anatomy": 1, "modality": 0, "symptom": 1}
    assert counts[2]["symptom"] == 2  # two present mentions of pleural effusion
    assert result.counts["mentions"] == 6 and result.counts["tagged_docs"] == 2
