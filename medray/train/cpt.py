"""Continual pretraining on the data engine's packed shards, with a mixture of sources.

Each source is a folder (or files) of packed parquet shards (`medray.data.pack`: fixed-length
`input_ids`, `position_ids` restarting at 0 on every document, `num_tokens`). Sources mix by
weight or fixed share (e.g. medical plus general replay), through the seeded per-step plan of
`medray.train.mixture`, so the data a step sees is a function of the step alone and a resumed run
reads exactly what an uninterrupted one would.

Document-boundary masking (`doc_mask`, on by default) passes the shards' `position_ids` to the
model: transformers then builds a block-diagonal causal mask (sdpa, eager) or uses the varlen path
(flash-attention 2), so no token attends across documents; the token that starts a document is
then not a target of the previous one's last token either. Pad positions never reach the loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from medray import storage
from medray.errors import ConfigError
from medray.train.mixture import (
    MixtureConfig,
    MixturePlan,
    MixtureSource,
    ShareSchedule,
    shard_rows,
    step_micro_batches,
)
from medray.train.settings import TrainConfig

COLUMNS = ("input_ids", "position_ids", "num_tokens")
IGNORE = -100


@dataclass
class CPTDataConfig:
    sources: list[MixtureSource] = field(default_factory=list)  # name, path (packed shards), weight or share
    schedule: ShareSchedule = field(default_factory=ShareSchedule)  # e.g. replay share moving over training
    doc_mask: bool = True  # no attention (and no target) across document boundaries
    read_batch_rows: int = 256  # rows per Ray Data batch when mixing sources


@dataclass
class CPTConfig(TrainConfig):
    data: CPTDataConfig = field(default_factory=CPTDataConfig)


def source_files(path: str) -> list[str]:
    if path.endswith(".parquet"):
        return [path]
    return storage.list_files(path, suffixes=(".parquet",)) if storage.exists(path) else []


def _shard_seq_len(uri: str, key: str) -> int:
    with storage.open_input_file(uri) as fh:
        schema = pq.ParquetFile(fh).schema_arrow
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise ConfigError(key, f"{uri}: missing column(s) {', '.join(missing)} (expected packed shards from "
                          "`medray data run`: input_ids, position_ids, num_tokens)")
    ids = schema.field("input_ids").type
    if not pa.types.is_fixed_size_list(ids):
        raise ConfigError(key, f"{uri}: input_ids is {ids}, expected fixed_size_list<int32> (packed rows)")
    return ids.list_size


def _rows(path: str) -> int:
    with storage.open_input_file(path) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


class CPTTask:
    """The `Task` of continual pretraining (see `medray.train.loop`)."""

    name = "cpt"

    def __init__(self) -> None:
        self._seq_len = 0
        self._doc_mask = True
        self._files: dict[str, list[str]] = {}

    def check(self, cfg: CPTConfig) -> None:
        data = cfg.data
        self._doc_mask = data.doc_mask
        if not data.sources:
            raise ConfigError("data.sources", "no sources: give at least one {name, path} of packed shards")
        MixtureConfig(data.sources, data.schedule, cfg.seed).validate("data")
        lengths = set()
        for i, source in enumerate(data.sources):
            key = f"data.sources.{i}.path"
            files = source_files(source.path)
            if not files:
                raise ConfigError(key, f"{source.path!r}: no .parquet shards found")
            lengths.add(_shard_seq_len(files[0], key))
            rows = sum(_rows(f) for f in files)
            need = cfg.scaling.num_workers * cfg.micro_batch_size
            if rows < need:
                raise ConfigError(key, f"{rows} packed rows, fewer than workers x micro_batch_size = {need}")
            self._files[source.name] = files
        if len(lengths) > 1:
            raise ConfigError("data.sources", f"sources are packed to different lengths: {sorted(lengths)}")
        self._seq_len = lengths.pop()
        if cfg.model.path is None and self._seq_len > cfg.model.max_position_embeddings:
            raise ConfigError("model.max_position_embeddings",
                              f"{cfg.model.max_position_embeddings} is below the shards' sequence length {self._seq_len}")

    def seq_len(self, cfg: CPTConfig) -> int:
        return self._seq_len

    def datasets(self, cfg: CPTConfig) -> dict:
        import ray.data

        out = {}
        for name, files in self._files.items():
            fs, _ = storage.filesystem_for(files[0])
            paths = [storage.filesystem_for(f)[1] for f in files]
            out[f"cpt_{name}"] = ray.data.read_parquet(paths, filesystem=fs).select_columns(list(COLUMNS))
        return out

    def build_model(self, cfg: CPTConfig, device: torch.device):
        from medray.models.causal_lm import load_causal_lm
        from medray.models.freeze import apply_freeze

        model, tokenizer = load_causal_lm(cfg.model, device=device)
        apply_freeze(model, cfg.freeze.policy, cfg.freeze.unfreeze_vision)
        return model, tokenizer

    def save_model(self, model, tokenizer, out: str) -> None:
        from medray.models.hf_io import save_hf

        save_hf(model, tokenizer, out)

    # ---- the worker side ----

    def micro_batches(self, cfg: CPTConfig, start_step: int) -> Iterator[dict]:
        import ray.train

        names = [s.name for s in cfg.data.sources]
        shards = {n: ray.train.get_dataset_shard(f"cpt_{n}") for n in names}
        if len(names) == 1 and not cfg.data.sources[0].share:
            yield from _single_source(shards[names[0]], cfg, start_step)
            return
        plan = MixturePlan(MixtureConfig(cfg.data.sources, cfg.data.schedule, cfg.seed),
                           cfg.micro_batch_size * cfg.grad_accum)
        sources = {n: shard_rows(shards[n], COLUMNS, cfg.data.read_batch_rows) for n in names}
        yield from step_micro_batches(plan, sources, _stack, cfg.micro_batch_size, start_step)

    def targets(self, batch: dict, doc_mask: bool) -> torch.Tensor:
        """Next-token targets aligned with the logits (position t holds token t+1; the last is IGNORE),
        IGNORE on padding and on document starts. Shifting the targets, not the logits, spares a
        copy of the largest tensor of the step."""
        ids = batch["input_ids"].long()
        length = ids.shape[1]
        real = torch.arange(length).unsqueeze(0) < batch["num_tokens"].view(-1, 1).long()
        following = torch.where(real, ids, torch.full_like(ids, IGNORE))[:, 1:]
        if doc_mask:
            following = following.masked_fill(batch["position_ids"][:, 1:] == 0, IGNORE)
        return torch.nn.functional.pad(following, (0, 1), value=IGNORE)

    def loss_tokens(self, batch: dict) -> int:
        return int((self.targets(batch, self._doc_mask) != IGNORE).sum())

    def input_tokens(self, batch: dict) -> int:
        return int(batch["num_tokens"].sum())

    def loss(self, model, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        doc_mask = self._doc_mask
        targets = self.targets(batch, doc_mask).to(device)
        ids = batch["input_ids"].long().to(device)
        position_ids = batch["position_ids"].long().to(device) if doc_mask else None
        logits = model(input_ids=ids, position_ids=position_ids, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        return loss, (targets != IGNORE).sum()


def _stack(rows: list[dict]) -> dict:
    return {c: torch.as_tensor(np.stack([r[c] for r in rows])) for c in COLUMNS}


def _single_source(shard, cfg: CPTConfig, start_step: int) -> Iterator[dict]:
    """One source: `iter_torch_batches` straight from the shard, skipping what earlier steps used."""
    skip = start_step * cfg.grad_accum
    while True:
        produced = False
        for batch in shard.iter_torch_batches(batch_size=cfg.micro_batch_size, drop_last=True):
            produced = True
            if skip:
                skip -= 1
                continue
            yield batch
        if not produced:
            raise RuntimeError("this rank's data shard is empty: fewer packed rows than workers x micro_batch_size")
