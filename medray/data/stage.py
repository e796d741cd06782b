"""The stage interface: one step of the text pipeline over `pyarrow.Table` batches.

A stage sees a batch of records (at least `id`, `text`, `source`, `meta`),
and returns the records it keeps (possibly changed, possibly with new
columns), the records it drops with a reason each, and counters (for
example how many e-mail addresses it scrubbed). Nothing is lost: dropped
records go to the pipeline's `filtered` output, so for every stage
`in = kept + dropped`. Stages are plain Python and run without Ray; the
pipeline maps them over shards with Ray Data, and `setup` (loading a model,
building the matcher) runs once per worker, never per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # stable: derived from the input file and line, never random
        ("text", pa.string()),
        ("source", pa.string()),  # the input file (or a name given in config)
        ("meta", pa.string()),  # the record's other fields, as JSON
    ]
)


@dataclass
class StageResult:
    kept: pa.Table
    dropped: pa.Table  # the dropped records, with a `reason` column
    counts: Counter = field(default_factory=Counter)  # extra counters: {"email_scrubbed": 3, ...}

    @classmethod
    def from_reasons(cls, table: pa.Table, reasons: Sequence[str | None] | np.ndarray | pa.Array,
                     counts: Counter | dict | None = None) -> StageResult:
        """Split a batch by a per-record reason: None keeps the record, a string drops it."""
        reasons = reasons if isinstance(reasons, pa.Array) else pa.array(list(reasons), pa.string())
        if len(reasons) != table.num_rows:
            raise ValueError(f"{len(reasons)} reasons for {table.num_rows} records")
        dropped_mask = pc.is_valid(reasons)
        kept = table.filter(pc.invert(dropped_mask))
        dropped = table.filter(dropped_mask).append_column("reason", reasons.filter(dropped_mask))
        return cls(kept, dropped, Counter(counts or {}))

    @classmethod
    def keep_all(cls, table: pa.Table, counts: Counter | dict | None = None) -> StageResult:
        return cls(table, table.slice(0, 0).append_column("reason", pa.array([], pa.string())), Counter(counts or {}))

    def reason_counts(self) -> Counter:
        if not self.dropped.num_rows:
            return Counter()
        vc = self.dropped.column("reason").value_counts()
        return Counter(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))


class Stage:
    """Subclass and override `process` (and `setup` when the stage holds state worth keeping).

    `num_cpus` / `num_gpus` are what one worker of the stage needs; a stage
    with `stateful = True` is worth an actor pool (its `setup` is costly).
    """

    name: str = "stage"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    stateful: bool = False

    def setup(self) -> None:
        """Load what the stage needs (a model, an automaton); called once per worker before any batch."""

    def process(self, batch: pa.Table) -> StageResult:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> StageResult:
        return self.process(batch)

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


class FunctionStage(Stage):
    """A stage from a plain function: table -> StageResult, or table -> per-record reasons (None keeps)."""

    def __init__(self, name: str, fn: Callable[[pa.Table], StageResult | Sequence[str | None]], *,
                 num_cpus: float = 1.0):
        self.name, self.fn, self.num_cpus = name, fn, num_cpus

    def process(self, batch: pa.Table) -> StageResult:
        out = self.fn(batch)
        return out if isinstance(out, StageResult) else StageResult.from_reasons(batch, out)


def run_stages(stages: Sequence[Stage], batch: pa.Table) -> tuple[pa.Table, list[tuple[str, StageResult]]]:
    """Apply stages in order to one batch, without Ray: the kept records and each stage's result."""
    results = []
    for stage in stages:
        result = stage(batch)
        results.append((stage.name, result))
        batch = result.kept
    return batch, results
