"""Where a pipeline run keeps its files, and which units of work are already done.

    OUT/docs/part-FFFFF-CCCCC.parquet     the final (sampled) documents
    OUT/packed/part-....parquet           fixed-length token sequences
    OUT/rejects/part-....parquet          lines that never became records (file, line, reason, raw)
    OUT/filtered/<phase>/part-....parquet records a stage dropped (stage, reason, detail)
    OUT/stats/<phase>/part-....json       per-unit counts: written last, so present = done
    OUT/work/...                          intermediate shards and barrier decisions
    OUT/manifest.json, OUT/report.json    written when the run completes

A unit's stats file is written after its outputs, atomically; a re-run
lists each phase's stats folder once and skips what it finds.
"""

from __future__ import annotations

import json

from medray import storage


class Layout:
    def __init__(self, out: str):
        self.out = str(out).rstrip("/")

    def folder(self, *parts: str) -> str:
        return storage.join(self.out, *parts)

    def work(self, name: str) -> str:
        return self.folder("work", name)

    def filtered(self, phase: str) -> str:
        return self.folder("filtered", phase)

    @property
    def rejects(self) -> str:
        return self.folder("rejects")

    def stats_uri(self, phase: str, unit: str) -> str:
        return self.folder("stats", phase, f"{unit}.json")

    def save_stats(self, phase: str, unit: str, stats: dict) -> None:
        storage.write_text(self.stats_uri(phase, unit), json.dumps(stats, sort_keys=True))

    def done_names(self, phase: str) -> set[str]:
        """The units of `phase` already completed (one listing, no reads)."""
        folder = self.folder("stats", phase)
        if not storage.exists(folder):
            return set()
        return {uri.rsplit("/", 1)[-1][: -len(".json")] for uri in storage.list_files(folder, suffixes=(".json",))}

    def load_stats(self, phase: str, units) -> list[dict]:
        return [json.loads(storage.read_text(self.stats_uri(phase, unit))) for unit in sorted(units)]

    def dropped_reasons(self) -> dict[str, str]:
        """Record id -> why it is not in the output, from the rejects and every phase's filtered records.

        Rejects have no record id yet; they are keyed `file:line`, the form ids take.
        """
        import pyarrow.parquet as pq

        got: dict[str, str] = {}
        for folder, columns in ((self.rejects, ("file", "line", "reason")), (self.folder("filtered"), ("id", "reason"))):
            if not storage.exists(folder):
                continue
            for uri in storage.list_files(folder, suffixes=(".parquet",)):
                with storage.open_input_file(uri) as handle:
                    t = pq.read_table(handle, columns=list(columns))
                ids = (t["id"].to_pylist() if "id" in columns
                       else [f"{f}:{n}" for f, n in zip(t["file"].to_pylist(), t["line"].to_pylist())])
                got.update(zip(ids, t["reason"].to_pylist()))
        return got

    def marker(self, name: str) -> str:
        return self.folder("stats", f"{name}.json")

    def load_marker(self, name: str) -> dict | None:
        uri = self.marker(name)
        return json.loads(storage.read_text(uri)) if storage.exists(uri) else None

    def save_marker(self, name: str, data: dict) -> None:
        storage.write_text(self.marker(name), json.dumps(data, sort_keys=True, indent=1))
