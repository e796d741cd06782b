"""The pipeline's streaming phases, one unit of work at a time, without Ray.

A phase runs its stages over one unit (an input file for `read`, a shard
for the others), writes the unit's outputs, then its stats file: the stats
file is the proof the unit is done. Between phases sit the global steps
(`barriers.py`): their decisions (exact and near duplicates) are applied by
the next phase, per shard, so nothing global is ever held by one worker.

    read   -> work/read     records, word counts, text hashes; rejects
    clean  -> work/clean    exact duplicates out; rules, quality, MinHash
    tag    -> work/tagged   near duplicates out; tree nodes; node counts
    finish -> docs, packed  tree-guided sampling; tokenise and pack
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from medray import storage
from medray.data.io import InputFile, read_chunks, read_shard, shard_name, write_shard
from medray.data.layout import Layout
from medray.data.settings import DataPipelineConfig
from medray.data.stage import Stage, StageResult
from medray.data.wordcount import word_counts

FILTERED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),
        ("_order", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)
DECISION_SCHEMA = pa.schema([("id", pa.string()), ("dup_of", pa.string())])


def _stage_stats(name: str, result: StageResult, tokens_in: int, tokens_out: int, cpu_s: float) -> dict:
    added = result.counts.get("copies_added", 0)  # sampling repeats records: copies are not inputs
    return {"stage": name, "in": result.kept.num_rows - added + result.dropped.num_rows, "kept": result.kept.num_rows - added,
            "dropped": dict(sorted(result.reason_counts().items())), "counts": dict(sorted(result.counts.items())),
            "tokens_in": tokens_in, "tokens_out": tokens_out, "cpu_s": round(cpu_s, 4)}


def _tokens(table: pa.Table) -> int:
    return int(pc.sum(table.column("n_words")).as_py() or 0) if table.num_rows and "n_words" in table.column_names else 0


def _without(table: pa.Table, column: str) -> pa.Table:
    return table.drop([column]) if column in table.column_names else table


def _as_filtered(stage: str, dropped: pa.Table) -> pa.Table:
    n = dropped.num_rows
    detail = dropped.column("dup_of") if "dup_of" in dropped.column_names else pa.nulls(n, pa.string())
    return pa.table([dropped.column("id"), dropped.column("text"), dropped.column("source"), dropped.column("meta"),
                     dropped.column("_order"), pa.array([stage] * n, pa.string()), dropped.column("reason"),
                     detail.cast(pa.string())], schema=FILTERED_SCHEMA)


@dataclass
class PhaseContext:
    config: DataPipelineConfig
    plan: object | None = None  # the sampling plan, once node counts are known

    @property
    def layout(self) -> Layout:
        return Layout(self.config.out)


class Phase:
    """Builds its stages once per worker (their `setup` is the costly part), then runs units."""

    name = "phase"

    def __init__(self, ctx: PhaseContext):
        self.ctx, self.cfg, self.layout = ctx, ctx.config, ctx.layout
        self.stages = self.build_stages()
        for stage in self.stages:
            stage.setup()

    def build_stages(self) -> list[Stage]:
        return []

    def run_stages(self, table: pa.Table, stats: list[dict], filtered: list[pa.Table]) -> pa.Table:
        for stage in self.stages:
            start, tokens_in = time.process_time(), _tokens(table)
            result = stage(table)
            stats.append(_stage_stats(stage.name, result, tokens_in, _tokens(result.kept), time.process_time() - start))
            if result.dropped.num_rows:
                filtered.append(_as_filtered(stage.name, result.dropped))
            table = result.kept
        return table

    def apply_drops(self, table: pa.Table, decisions: str, shard: str, stage: str, reason: str,
                    stats: list[dict], filtered: list[pa.Table]) -> pa.Table:
        """Drop the records a barrier decided against (its per-shard decision file; none = keep all)."""
        start, tokens_in = time.process_time(), _tokens(table)
        uri = storage.join(self.layout.work(decisions), f"{shard}.parquet")
        if storage.exists(uri):
            drops = storage.read_parquet(uri)
            mask = pc.is_in(table.column("id"), value_set=drops.column("id"))
            dropped = table.filter(mask)
            dup_of = dict(zip(drops.column("id").to_pylist(), drops.column("dup_of").to_pylist()))
            dropped = dropped.append_column("dup_of", pa.array([dup_of[i] for i in dropped.column("id").to_pylist()], pa.string()))
            result = StageResult(table.filter(pc.invert(mask)),
                                 dropped.append_column("reason", pa.array([reason] * dropped.num_rows, pa.string())))
        else:
            result = StageResult.keep_all(table)
        stats.append(_stage_stats(stage, result, tokens_in, _tokens(result.kept), time.process_time() - start))
        if result.dropped.num_rows:
            filtered.append(_as_filtered(stage, result.dropped))
        return result.kept

    def finish_unit(self, shard: str, stats: list[dict], filtered: list[pa.Table], outputs: dict) -> dict:
        if filtered:
            write_shard(pa.concat_tables(filtered), self.layout.filtered(self.name), shard)
        unit = {"unit": shard, "phase": self.name, "stages": stats, "outputs": outputs}
        self.layout.save_stats(self.name, shard, unit)
        return unit


class ReadPhase(Phase):
    """Input file -> shards of normalised records (+ rejects), with word counts and exact-dedup hashes."""

    name = "read"

    def build_stages(self) -> list[Stage]:
        if self.cfg.enabled("exact_dedup"):
            from medray.data.clean import ExactHashStage

            return [ExactHashStage()]
        return []

    def run(self, unit: dict) -> list[dict]:
        file = InputFile(**unit)
        done = {name for name in self.layout.done_units(self.name) if name.startswith(f"part-{file.index:05d}-")}
        skip = frozenset(int(name.rsplit("-", 1)[1]) for name in done)
        out = []
        for chunk in read_chunks(file, self.cfg.chunk_lines, text_field=self.cfg.text_field, skip_chunks=skip):
            if chunk.index in skip:
                continue
            shard = shard_name(file.index, chunk.index)
            start = time.process_time()
            records = chunk.records.append_column("n_words", pa.array(word_counts(chunk.records.column("text"))))
            reasons = Counter(chunk.rejects.column("reason").to_pylist())
            stats = [{"stage": "read", "in": chunk.lines - chunk.blank_lines, "kept": records.num_rows,
                      "dropped": dict(sorted(reasons.items())), "counts": {"blank_lines": chunk.blank_lines, "lines": chunk.lines},
                      "tokens_in": _tokens(records), "tokens_out": _tokens(records), "cpu_s": round(time.process_time() - start, 4)}]
            filtered: list[pa.Table] = []
            records = self.run_stages(records, stats, filtered)
            if chunk.rejects.num_rows:
                write_shard(chunk.rejects, self.layout.rejects, shard)
            outputs = {"records": write_shard(records, self.layout.work("read"), shard)["rows"]}
            out.append(self.finish_unit(shard, stats, filtered, outputs))
        self.layout.save_stats("read_files", f"file-{file.index:05d}", {"file": file.name, "chunks": len(done) + len(out)})
        return out


class CleanPhase(Phase):
    """Exact duplicates out, then rules, quality and the MinHash signatures near-dup needs."""

    name = "clean"

    def build_stages(self) -> list[Stage]:
        stages: list[Stage] = []
        if self.cfg.enabled("rules"):
            from medray.data.clean import RulesStage

            stages.append(RulesStage(self.cfg.rules))
        if self.cfg.enabled("quality"):
            from medray.data.quality import QualityStage

            stages.append(QualityStage(self.cfg.quality))
        if self.cfg.enabled("near_dup"):
            from medray.data.dedup import MinHashStage

            stages.append(MinHashStage(self.cfg.near_dup))
        return stages

    def run(self, unit: dict) -> list[dict]:
        shard = unit["shard"]
        stats: list[dict] = []
        filtered: list[pa.Table] = []
        table = read_shard(self.layout.work("read"), shard)
        if self.cfg.enabled("exact_dedup"):
            table = self.apply_drops(table, "exact", shard, "exact_dedup", "exact_duplicate", stats, filtered)
        table = self.run_stages(table, stats, filtered)
        table = _without(table, "text_hash")
        outputs = {"records": write_shard(table, self.layout.work("clean"), shard)["rows"]}
        return [self.finish_unit(shard, stats, filtered, outputs)]


class TagPhase(Phase):
    """Near duplicates out, then the tree's nodes on every record, and this shard's node counts."""

    name = "tag"

    def build_stages(self) -> list[Stage]:
        from medray.data.tag import TagStage

        self.ancestors = None
        if self.cfg.enabled("sample") and self.cfg.sample.ancestors:
            from medray.data.sample import AncestorIndex
            from medray.met.tree import Tree

            self.ancestors = AncestorIndex(Tree.load(self.cfg.tag.tree))
        return [TagStage(self.cfg.tag)]

    def run(self, unit: dict) -> list[dict]:
        from medray.data.sample import node_counts

        shard = unit["shard"]
        stats: list[dict] = []
        filtered: list[pa.Table] = []
        table = read_shard(self.layout.work("clean"), shard)
        if self.cfg.enabled("near_dup"):
            table = self.apply_drops(table, "near", shard, "near_dup", "near_duplicate", stats, filtered)
        table = self.run_stages(_without(table, "minhash"), stats, filtered)
        write_shard(node_counts(table, self.ancestors), self.layout.work("counts"), shard)
        outputs = {"records": write_shard(table, self.layout.work("tagged"), shard)["rows"]}
        return [self.finish_unit(shard, stats, filtered, outputs)]


class FinishPhase(Phase):
    """Tree-guided sampling, the final documents, then tokenise and pack."""

    name = "finish"

    def build_stages(self) -> list[Stage]:
        stages: list[Stage] = []
        if self.cfg.enabled("sample"):
            from medray.data.sample import SampleStage

            stages.append(SampleStage(self.ctx.plan, self.cfg.sample))
        return stages

    def __init__(self, ctx: PhaseContext):
        super().__init__(ctx)
        self.tokenize = None
        if self.cfg.enabled("pack"):
            from medray.data.pack import TokenizeStage

            self.tokenize = TokenizeStage(self.cfg.pack)
            self.tokenize.setup()

    def run(self, unit: dict) -> list[dict]:
        shard = unit["shard"]
        stats: list[dict] = []
        filtered: list[pa.Table] = []
        source = "tagged" if self.cfg.enabled("tag") else "clean"
        table = read_shard(self.layout.work(source), shard)
        if self.cfg.enabled("near_dup") and not self.cfg.enabled("tag"):
            table = self.apply_drops(table, "near", shard, "near_dup", "near_duplicate", stats, filtered)
        table = self.run_stages(_without(table, "minhash"), stats, filtered)
        outputs = {"docs": write_shard(table, self.layout.folder("docs"), shard)["rows"], "tokens": _tokens(table)}
        if self.cfg.enabled("sample"):
            from medray.data.sample import node_counts

            write_shard(node_counts(table, self.ctx.plan.ancestors), self.layout.work("counts_after"), shard)
        if self.tokenize is not None:
            from medray.data.pack import pack_shard

            start = time.process_time()
            entry = pack_shard([table], self.tokenize, storage.join(self.layout.folder("packed"), f"{shard}.parquet"))
            stats.append({"stage": "pack", "in": table.num_rows, "kept": entry["docs"], "dropped": entry["dropped"],
                          "counts": {"sequences": entry["rows"], "tokens": entry["tokens"], "pad_tokens": entry["pad_tokens"]},
                          "tokens_in": _tokens(table), "tokens_out": _tokens(table),
                          "cpu_s": round(time.process_time() - start, 4)})
            outputs["packed"] = entry
        return [self.finish_unit(shard, stats, filtered, outputs)]


PHASES = {cls.name: cls for cls in (ReadPhase, CleanPhase, TagPhase, FinishPhase)}
