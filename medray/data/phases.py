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
from dataclasses import dataclass, field

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


def _tokens(table: pa.Table) -> int:
    return int(pc.sum(table.column("n_words")).as_py() or 0) if table.num_rows and "n_words" in table.column_names else 0


def _without(table: pa.Table, *columns: str) -> pa.Table:
    return table.drop([c for c in columns if c in table.column_names])


def _as_filtered(stage: str, dropped: pa.Table) -> pa.Table:
    n = dropped.num_rows
    detail = dropped.column("dup_of") if "dup_of" in dropped.column_names else pa.nulls(n, pa.string())
    return pa.table([dropped.column("id"), dropped.column("text"), dropped.column("source"), dropped.column("meta"),
                     dropped.column("_order"), pa.array([stage] * n, pa.string()), dropped.column("reason"),
                     detail.cast(pa.string())], schema=FILTERED_SCHEMA)


@dataclass
class UnitLog:
    """What one unit's stages did: per-stage counts for the stats file, dropped records for `filtered`."""

    stats: list[dict] = field(default_factory=list)
    filtered: list[pa.Table] = field(default_factory=list)

    def record(self, name: str, result: StageResult, tokens_in: int, cpu_s: float) -> None:
        added = result.counts.get("copies_added", 0)  # sampling repeats records: copies are not inputs
        self.stats.append({"stage": name, "in": result.kept.num_rows - added + result.dropped.num_rows,
                           "kept": result.kept.num_rows - added, "dropped": dict(sorted(result.reason_counts().items())),
                           "counts": dict(sorted(result.counts.items())), "tokens_in": tokens_in,
                           "tokens_out": _tokens(result.kept), "cpu_s": round(cpu_s, 4)})
        if result.dropped.num_rows:
            self.filtered.append(_as_filtered(name, result.dropped))


class DropDecided(Stage):
    """Drops the records a global step decided against: their ids, each with the record it duplicates."""

    def __init__(self, name: str, reason: str, decisions: pa.Table | None):
        self.name, self.reason, self.decisions = name, reason, decisions

    def process(self, batch: pa.Table) -> StageResult:
        if self.decisions is None or not self.decisions.num_rows:
            return StageResult.keep_all(batch)
        ids = self.decisions.column("id")
        mask = pc.is_in(batch.column("id"), value_set=ids)
        dropped = batch.filter(mask)
        dup_of = self.decisions.column("dup_of").take(pc.index_in(dropped.column("id"), value_set=ids))
        dropped = dropped.append_column("dup_of", dup_of).append_column("reason", pa.array([self.reason] * dropped.num_rows, pa.string()))
        return StageResult(batch.filter(pc.invert(mask)), dropped)


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

    def run_stages(self, table: pa.Table, log: UnitLog, stages: list[Stage] | None = None) -> pa.Table:
        for stage in self.stages if stages is None else stages:
            start, tokens_in = time.process_time(), _tokens(table)
            result = stage(table)
            log.record(stage.name, result, tokens_in, time.process_time() - start)
            table = result.kept
        return table

    def finish_unit(self, shard: str, log: UnitLog, outputs: dict) -> dict:
        if log.filtered:
            write_shard(pa.concat_tables(log.filtered), self.layout.filtered(self.name), shard)
        unit = {"unit": shard, "phase": self.name, "stages": log.stats, "outputs": outputs}
        self.layout.save_stats(self.name, shard, unit)
        return unit


class ShardPhase(Phase):
    """A phase over one shard: read it, drop what the last global step decided, run the stages, write."""

    source = "read"  # the work folder this phase reads
    strip: tuple[str, ...] = ()  # columns earlier steps needed and the output does not

    def pending_drops(self) -> list[tuple[str, str, str]]:
        """(decision folder, stage name, reason) of the global steps this phase applies."""
        return []

    def decisions(self, folder: str, shard: str) -> pa.Table | None:
        uri = storage.join(self.layout.work(folder), f"{shard}.parquet")
        return storage.read_parquet(uri) if storage.exists(uri) else None

    def run(self, unit: dict) -> list[dict]:
        shard, log = unit["shard"], UnitLog()
        table = read_shard(self.layout.work(self.source), shard)
        drops = [DropDecided(stage, reason, self.decisions(folder, shard)) for folder, stage, reason in self.pending_drops()]
        table = self.run_stages(table, log, drops)
        table = self.run_stages(_without(table, *self.strip), log)
        return [self.finish_unit(shard, log, self.write(shard, table, log))]

    def write(self, shard: str, table: pa.Table, log: UnitLog) -> dict:
        raise NotImplementedError


class ReadPhase(Phase):
    """Input file -> shards of normalised records (+ rejects), with word counts and exact-dedup hashes."""

    name = "read"

    def build_stages(self) -> list[Stage]:
        if self.cfg.enabled("exact_dedup"):
            from medray.data.clean import ExactHashStage

            return [ExactHashStage()]
        return []

    def run(self, unit: dict) -> list[dict]:
        file = InputFile(**unit["file"])
        skip = frozenset(unit.get("done_chunks", ()))  # chunks a crashed run already finished
        out = []
        for chunk in read_chunks(file, self.cfg.chunk_lines, text_field=self.cfg.text_field, skip_chunks=skip):
            if chunk.index in skip:
                continue
            shard = shard_name(file.index, chunk.index)
            start = time.process_time()
            records = chunk.records.append_column("n_words", pa.array(word_counts(chunk.records.column("text"))))
            reasons = Counter(chunk.rejects.column("reason").to_pylist())
            log = UnitLog([{"stage": "read", "in": chunk.lines - chunk.blank_lines, "kept": records.num_rows,
                            "dropped": dict(sorted(reasons.items())), "counts": {"blank_lines": chunk.blank_lines, "lines": chunk.lines},
                            "tokens_in": _tokens(records), "tokens_out": _tokens(records), "cpu_s": round(time.process_time() - start, 4)}])
            records = self.run_stages(records, log)
            if chunk.rejects.num_rows:
                write_shard(chunk.rejects, self.layout.rejects, shard)
            outputs = {"records": write_shard(records, self.layout.work("read"), shard)["rows"]}
            out.append(self.finish_unit(shard, log, outputs))
        self.layout.save_stats("read_files", f"file-{file.index:05d}", {"file": file.name, "chunks": len(skip) + len(out)})
        return out


class CleanPhase(ShardPhase):
    """Exact duplicates out, then rules, quality and the MinHash signatures near-dup needs."""

    name, source, strip = "clean", "read", ("text_hash",)

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

    def pending_drops(self) -> list[tuple[str, str, str]]:
        return [("exact", "exact_dedup", "exact_duplicate")] if self.cfg.enabled("exact_dedup") else []

    def write(self, shard: str, table: pa.Table, log: UnitLog) -> dict:
        return {"records": write_shard(_without(table, "text_hash"), self.layout.work("clean"), shard)["rows"]}


NEAR_DROPS = ("near", "near_dup", "near_duplicate")


class TagPhase(ShardPhase):
    """Near duplicates out, then the tree's nodes on every record, and this shard's node counts."""

    name, source, strip = "tag", "clean", ("minhash",)

    def build_stages(self) -> list[Stage]:
        from medray.data.tag import TagStage

        self.ancestors = None
        if self.cfg.enabled("sample") and self.cfg.sample.ancestors:
            from medray.data.tree_counts import AncestorIndex
            from medray.met.tree import Tree

            self.ancestors = AncestorIndex(Tree.load(self.cfg.tag.tree))
        return [TagStage(self.cfg.tag)]

    def pending_drops(self) -> list[tuple[str, str, str]]:
        return [NEAR_DROPS] if self.cfg.enabled("near_dup") else []

    def write(self, shard: str, table: pa.Table, log: UnitLog) -> dict:
        from medray.data.tree_counts import node_counts

        write_shard(node_counts(table, self.ancestors), self.layout.work("counts"), shard)
        return {"records": write_shard(table, self.layout.work("tagged"), shard)["rows"]}


class FinishPhase(ShardPhase):
    """Tree-guided sampling, the final documents, then tokenise and pack."""

    name, strip = "finish", ("minhash",)

    def __init__(self, ctx: PhaseContext):
        super().__init__(ctx)
        self.source = "tagged" if self.cfg.enabled("tag") else "clean"
        self.tokenize = None
        if self.cfg.enabled("pack"):
            from medray.data.pack import TokenizeStage

            self.tokenize = TokenizeStage(self.cfg.pack)
            self.tokenize.setup()

    def build_stages(self) -> list[Stage]:
        stages: list[Stage] = []
        if self.cfg.enabled("sample"):
            from medray.data.sample import SampleStage

            stages.append(SampleStage(self.ctx.plan, self.cfg.sample))
        return stages

    def pending_drops(self) -> list[tuple[str, str, str]]:
        return [NEAR_DROPS] if self.cfg.enabled("near_dup") and not self.cfg.enabled("tag") else []

    def write(self, shard: str, table: pa.Table, log: UnitLog) -> dict:
        outputs = {"docs": write_shard(table, self.layout.folder("docs"), shard)["rows"], "tokens": _tokens(table)}
        if self.cfg.enabled("sample"):
            from medray.data.tree_counts import node_counts

            write_shard(node_counts(table, self.ctx.plan.ancestors), self.layout.work("counts_after"), shard)
        if self.tokenize is not None:
            from medray.data.pack import pack_shard

            start = time.process_time()
            entry = pack_shard([table], self.tokenize, storage.join(self.layout.folder("packed"), f"{shard}.parquet"))
            log.stats.append({"stage": "pack", "in": table.num_rows, "kept": entry["docs"], "dropped": entry["dropped"],
                              "counts": {"sequences": entry["rows"], "tokens": entry["tokens"], "pad_tokens": entry["pad_tokens"]},
                              "tokens_in": _tokens(table), "tokens_out": _tokens(table),
                              "cpu_s": round(time.process_time() - start, 4)})
            outputs["packed"] = entry
        return outputs


PHASES = {cls.name: cls for cls in (ReadPhase, CleanPhase, TagPhase, FinishPhase)}
