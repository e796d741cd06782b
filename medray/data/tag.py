"""Tagging: the tree's matcher as a pipeline stage (node-guided retrieval for text).

Each record gains the tree nodes it mentions, split by assertion (`nodes`
holds the present ones, which drive sampling; `nodes_absent` and
`nodes_uncertain` keep "no pneumothorax" and "possible pneumonia" apart),
and per-axis counts of present mentions. The matcher is built once per
worker in `setup`, from the tree file (local or s3://).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.data.stage import Stage, StageResult
from medray.met.tree import AXES, Tree

AXIS_COUNTS = pa.struct([(axis, pa.int32()) for axis in AXES])


@dataclass
class TagConfig:
    tree: str = "out/met/tree.parquet"  # the Medical Entity Tree to tag with
    axes: list[str] = field(default_factory=list)  # empty: all four
    min_chars: int = 3  # shortest surface form the matcher uses


class TagStage(Stage):
    name = "tag"
    stateful = True

    def __init__(self, config: TagConfig, tree: Tree | None = None):
        self.config, self._tree = config, tree
        self.matcher = None

    def setup(self) -> None:
        from medray.met.matcher import Matcher

        tree = self._tree if self._tree is not None else Tree.load(self.config.tree)
        self.matcher = Matcher(tree, axes=self.config.axes or None, min_chars=self.config.min_chars)
        axis_of = dict(zip(tree.table.column("node_id").to_pylist(), tree.table.column("axis").to_pylist()))
        codes = {axis: i for i, axis in enumerate(AXES)}
        self.node_axis = np.array([codes[axis_of[n]] for n in self.matcher.node_ids.to_pylist()], dtype=np.int64)

    def process(self, batch: pa.Table) -> StageResult:
        if self.matcher is None:
            self.setup()
        hits, words = self.matcher.count_tokens_and_match(batch.column("text"))
        n = batch.num_rows
        columns = {}
        for name, assertion in (("nodes", "present"), ("nodes_absent", "absent"), ("nodes_uncertain", "uncertain")):
            columns[name] = _nodes_per_doc(hits.filter(pc.equal(hits.column("assertion"), assertion)), n)
        present = hits.filter(pc.equal(hits.column("assertion"), "present"))
        counts = np.zeros((n, len(AXES)), dtype=np.int32)
        if present.num_rows:
            doc = present.column("doc").to_numpy()
            index = pc.index_in(present.column("node_id"), value_set=self.matcher.node_ids).to_numpy()
            np.add.at(counts, (doc, self.node_axis[index]), 1)
        columns["axis_counts"] = pa.StructArray.from_arrays([pa.array(counts[:, i]) for i in range(len(AXES))], fields=list(AXIS_COUNTS))
        for name, values in columns.items():
            batch = batch.append_column(name, values)
        return StageResult.keep_all(batch, {"mentions": hits.num_rows, "mentions_present": present.num_rows,
                                            "tagged_docs": int(pc.sum(pc.greater(pc.list_value_length(columns["nodes"]), 0)).as_py() or 0),
                                            "matcher_words": words})


def _nodes_per_doc(hits: pa.Table, n_docs: int) -> pa.ListArray:
    """Sorted unique node ids per document, as a list array with one entry per document."""
    if not hits.num_rows:
        return pa.ListArray.from_arrays(pa.array(np.zeros(n_docs + 1, dtype=np.int32)), pa.array([], pa.string()))
    pairs = hits.select(["doc", "node_id"]).group_by(["doc", "node_id"]).aggregate([])
    pairs = pairs.sort_by([("doc", "ascending"), ("node_id", "ascending")])
    doc = pairs.column("doc").to_numpy()
    offsets = np.zeros(n_docs + 1, dtype=np.int32)
    np.cumsum(np.bincount(doc, minlength=n_docs), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pairs.column("node_id").combine_chunks())
