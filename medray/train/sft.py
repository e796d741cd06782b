"""Mid-training / SFT: chat and structured-CoT samples, loss on assistant tokens only, text or images.

Sources are SFT files (JSONL or parquet, local or s3://) mixed by `medray.train.mixture`: a
weighted medical source, a reasoning (structured CoT) source whose share rises on a schedule,
and general replay at a fixed share. Each source is tokenised once on the driver
(`sft_prepare`), then every worker reads its Ray Data shard of each source and the seeded
per-step plan decides which samples a step sees, so a resumed run reads exactly what an
uninterrupted one would.

With `vlm` set the model is the Llava VLM of `medray.models.vlm`: `model` is its language half,
`vlm.vision` the tower (or `vlm.path` a saved VLM), `chat.image_tokens` follows the tower, and
`freeze.policy` picks what trains (connector alone for alignment, then llm+connector).

The loss is the summed cross-entropy over shifted labels that are not -100 (assistant contents
and their `<|im_end|>`); the harness divides by the global batch's count of such tokens.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

import torch

from medray import storage
from medray.data.tokenizer import IMAGE_TOKEN
from medray.errors import ConfigError, MedrayError
from medray.models.freeze import is_vlm
from medray.models.vlm import VLMConfig, image_tokens_per_image
from medray.train.chat_format import IGNORE_INDEX, ChatFormatConfig
from medray.train.mixture import (
    MixtureConfig,
    MixturePlan,
    MixtureSource,
    ShareSchedule,
    shard_rows,
    step_micro_batches,
)
from medray.train.settings import TrainConfig
from medray.train.sft_collate import SFTCollator
from medray.train.sft_data import SFTDataConfig
from medray.train.sft_prepare import (
    PreparedSource,
    chat_encoder,
    check_source_heads,
    prepare_source,
    source_inputs,
)

TRAIN_COLUMNS = ("input_ids", "labels", "image_refs")


@dataclass
class SFTTrainDataConfig:
    sources: list[MixtureSource] = field(default_factory=list)  # name, path (SFT files), weight or fixed share (replay)
    schedule: ShareSchedule = field(default_factory=ShareSchedule)  # e.g. the reasoning source's share rising
    chat: ChatFormatConfig = field(default_factory=ChatFormatConfig)  # image_tokens is set from the tower with `vlm`
    image_root: str = ""  # relative image paths are under this folder (local or s3://)
    json_column: str = "sample"  # parquet sources: a column of JSON samples, else a row's columns are the sample
    check_images: bool = True  # decode every image while preparing: a broken one is a reject, not a crash mid-run
    pad_to_multiple_of: int = 8
    read_batch_rows: int = 256  # rows per Ray Data batch when mixing sources on a worker
    prepare_batch_rows: int = 512  # rows per tokenising batch (and per prepared part file)
    prepare_actors: int = 2  # most tokenising actors per source

    def sample_config(self, tokenizer: str) -> SFTDataConfig:
        """The per-sample tokenising settings `medray.train.sft_data` takes."""
        return SFTDataConfig(tokenizer=tokenizer, chat=self.chat, json_column=self.json_column,
                             image_root=self.image_root, check_images=self.check_images,
                             pad_to_multiple_of=self.pad_to_multiple_of)


@dataclass
class SFTConfig(TrainConfig):
    data: SFTTrainDataConfig = field(default_factory=SFTTrainDataConfig)
    vlm: Optional[VLMConfig] = None  # noqa: UP045  (set: train the Llava VLM; `model` is its language half)

    def vlm_config(self) -> VLMConfig:
        """The VLM to build: `vlm` with `model` as its LLM."""
        return dataclasses.replace(self.vlm, llm=self.model)

    def check(self) -> None:
        """Everything that needs no file: fails naming the key before any data is read."""
        if self.vlm is not None and self.vlm.path is not None and self.model.path is None and self.model.tokenizer is None:
            self.model.tokenizer = self.vlm.path  # a saved VLM folder holds its tokenizer
        super().check()
        if self.model.tokenizer_path is None:
            raise ConfigError("model.tokenizer", "SFT needs a tokenizer with the chat tokens (<|im_start|>, <|im_end|>)")
        self.freeze.check(self.vlm is not None, "freeze")
        if self.vlm is not None:
            self.vlm_config().check("vlm")
        data = self.data
        if not data.sources:
            raise ConfigError("data.sources", "no sources: give at least one {name, path} of SFT files")
        MixtureConfig(data.sources, data.schedule, self.seed).validate("data")
        data.sample_config("").validate("data")
        for key in ("read_batch_rows", "prepare_batch_rows", "prepare_actors"):
            if getattr(data, key) < 1:
                raise ConfigError(f"data.{key}", f"must be at least 1, got {getattr(data, key)}")
        if self.model.path is None and self.vlm_path is None and data.chat.max_len > self.model.max_position_embeddings:
            raise ConfigError("data.chat.max_len", f"{data.chat.max_len} exceeds model.max_position_embeddings "
                                                   f"{self.model.max_position_embeddings}")

    @property
    def vlm_path(self) -> str | None:
        return self.vlm.path if self.vlm is not None else None


def image_tokens(cfg: SFTConfig) -> int:
    """Placeholders per image for the configured tower, from config.json alone (no weights on the driver)."""
    vlm = cfg.vlm_config()
    if vlm.path is None and vlm.vision.path is None:
        return image_tokens_per_image(vlm)
    key, folder = ("vlm.path", vlm.path) if vlm.path else ("vlm.vision.path", vlm.vision.path)
    try:
        config = json.loads(storage.read_text(storage.join(folder, "config.json")))
    except (MedrayError, OSError, ValueError) as err:
        raise ConfigError(key, f"cannot read {folder}/config.json ({err})") from None
    if vlm.path:
        from transformers import LlavaConfig

        return image_tokens_per_image(LlavaConfig.from_dict(config))
    vision = config.get("vision_config", config)
    size, patch = vision.get("image_size"), vision.get("patch_size")
    if not isinstance(size, int) or not isinstance(patch, int):
        raise ConfigError(key, f"{folder}/config.json: expected integer image_size and patch_size")
    tower = dataclasses.replace(vlm.vision, path=None, image_size=size, patch_size=patch)
    return image_tokens_per_image(dataclasses.replace(vlm, vision=tower))


def _vision_anchor(model, device: torch.device) -> torch.Tensor:
    """Zero that depends on every trainable vision-side weight: a text-only batch still gives them a
    (zero) gradient, which DDP needs from every parameter and backward needs when the LLM is frozen."""
    inner = getattr(model, "module", model).model
    params = [p for part in (inner.multi_modal_projector, inner.vision_tower) for p in part.parameters() if p.requires_grad]
    return sum((p.float().sum() * 0.0 for p in params), torch.zeros((), device=device))


class SFTTask:
    """The `Task` of SFT / mid-training (see `medray.train.loop`)."""

    name = "sft"

    def __init__(self, progress: Callable[[str], None] = print) -> None:
        self.progress = progress
        self.prepared: dict[str, PreparedSource] = {}
        self._inputs: dict = {}
        self._seq_len = 0
        self._tokenizer = None
        self._preprocessor = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "progress": None, "_tokenizer": None, "_preprocessor": None}

    # ---- the driver ----

    def check(self, cfg: SFTConfig) -> None:
        """Files, tokenizer and the first rows of every source, before Ray starts."""
        if cfg.vlm is not None:
            cfg.data.chat.image_tokens = image_tokens(cfg)
        sample_config = cfg.data.sample_config(cfg.model.tokenizer_path)
        try:
            chat_encoder(sample_config)
        except MedrayError as err:
            raise ConfigError("model.tokenizer", str(err)) from None
        self._inputs = {}
        for i, source in enumerate(cfg.data.sources):
            key = f"data.sources.{i}.path"
            files = source_inputs(source.path, key)
            check_source_heads(files, key, cfg.data.json_column, has_vision=cfg.vlm is not None)
            self._inputs[source.name] = (source.path, files)

    def prepare(self, cfg: SFTConfig) -> dict[str, PreparedSource]:
        """Tokenise every source once (or reuse the run's earlier preparation); checks what came out."""
        run_dir = storage.join(cfg.checkpoint.storage_path, cfg.checkpoint.name)
        sample_config = cfg.data.sample_config(cfg.model.tokenizer_path)
        self.prepared = {}
        for i, source in enumerate(cfg.data.sources):
            root, files = self._inputs[source.name]
            prepared = prepare_source(source.name, root, files, sample_config, run_dir, actors=cfg.data.prepare_actors,
                                      batch_rows=cfg.data.prepare_batch_rows, progress=self.progress or print)
            counts = prepared.counts
            if counts["images"] and cfg.vlm is None:
                raise ConfigError("vlm", f"source {source.name!r} holds {counts['images']} images but no vision-language "
                                         "model is configured: set `vlm` or drop image samples")
            if counts["kept"] < cfg.scaling.num_workers:
                raise ConfigError(f"data.sources.{i}.path", f"{counts['kept']} of {counts['in']} samples kept "
                                  f"(rejected: {counts['rejected_by_reason']}), fewer than the {cfg.scaling.num_workers} workers")
            self.prepared[source.name] = prepared
        kept = sum(p.counts["kept"] for p in self.prepared.values())
        self._seq_len = max(1, round(sum(p.counts["tokens"] for p in self.prepared.values()) / max(kept, 1)))
        return self.prepared

    @property
    def data_report(self) -> dict:
        """Per source: rows in, kept, rejected by reason, tokens (what the run's preparation found)."""
        return {name: {**p.counts, "reused": p.reused, "manifest": p.manifest} for name, p in self.prepared.items()}

    def datasets(self, cfg: SFTConfig) -> dict:
        import ray.data

        out = {}
        columns = list(TRAIN_COLUMNS if cfg.vlm is not None else TRAIN_COLUMNS[:2])
        for name, prepared in self.prepare(cfg).items():
            fs, _ = storage.filesystem_for(prepared.files[0])
            paths = [storage.filesystem_for(f)[1] for f in prepared.files]
            out[f"sft_{name}"] = ray.data.read_parquet(paths, filesystem=fs).select_columns(columns)
        return out

    def plan(self, cfg: SFTConfig) -> MixturePlan:
        """This worker's per-step sample counts (every worker draws the same counts from its own shards)."""
        return MixturePlan(MixtureConfig(cfg.data.sources, cfg.data.schedule, cfg.seed), cfg.micro_batch_size * cfg.grad_accum)

    def seq_len(self, cfg: SFTConfig) -> int:
        return self._seq_len or cfg.data.chat.max_len  # mean prepared sample length: the MFU's attention term

    # ---- the model ----

    def build_model(self, cfg: SFTConfig, device: torch.device):
        from medray.models.causal_lm import load_causal_lm
        from medray.models.freeze import apply_freeze
        from medray.models.vlm import load_vlm

        # Saved weights load on the CPU and the engine moves them: `from_pretrained(device_map=...)` needs accelerate.
        loaded = cfg.model.path is not None or cfg.vlm_path is not None or (cfg.vlm is not None and cfg.vlm.vision.path)
        place = None if loaded else device
        if cfg.vlm is None:
            model, tokenizer = load_causal_lm(cfg.model, device=place, extra_tokens=(IMAGE_TOKEN,))
        else:
            model, tokenizer, self._preprocessor = load_vlm(cfg.vlm_config(), device=place)
        apply_freeze(model, cfg.freeze.policy, cfg.freeze.unfreeze_vision)
        self._tokenizer = tokenizer
        return model, tokenizer

    def save_model(self, model, tokenizer, out: str) -> None:
        from medray.models.hf_io import save_hf
        from medray.models.vlm import save_vlm

        if is_vlm(model):
            save_vlm(model, tokenizer, out, preprocessor=self._preprocessor)
        else:
            save_hf(model, tokenizer, out)

    # ---- the worker side ----

    def collator(self, cfg: SFTConfig) -> SFTCollator:
        """Right padding with the model's pad id; pixels by the tower's preprocessor (set by `build_model`)."""
        if self._tokenizer is None:
            from medray.models.causal_lm import load_model_tokenizer

            self._tokenizer = load_model_tokenizer(cfg.model.tokenizer_path, None, (IMAGE_TOKEN,))
        return SFTCollator(self._tokenizer.pad_token_id, pad_to_multiple_of=cfg.data.pad_to_multiple_of,
                           image_processor=self._preprocessor)

    def micro_batches(self, cfg: SFTConfig, start_step: int) -> Iterator[dict]:
        import ray.train

        columns = TRAIN_COLUMNS if cfg.vlm is not None else TRAIN_COLUMNS[:2]
        sources = {s.name: shard_rows(ray.train.get_dataset_shard(f"sft_{s.name}"), columns, cfg.data.read_batch_rows)
                   for s in cfg.data.sources}
        yield from step_micro_batches(self.plan(cfg), sources, self.collator(cfg), cfg.micro_batch_size, start_step)

    @staticmethod
    def targets(batch: dict) -> torch.Tensor:
        """Next-token targets: labels shifted by one (the collator already put -100 on pads and prompts)."""
        return batch["labels"][:, 1:]

    def loss_tokens(self, batch: dict) -> int:
        return int((self.targets(batch) != IGNORE_INDEX).sum())

    def input_tokens(self, batch: dict) -> int:
        return int(batch["attention_mask"].sum())

    def loss(self, model, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        targets = self.targets(batch).to(device)
        inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
        inner = getattr(model, "module", model)  # under DDP
        vision = is_vlm(inner)
        if "pixel_values" in batch:
            dtype = next(inner.model.vision_tower.parameters()).dtype
            inputs["pixel_values"] = batch["pixel_values"].to(device, dtype=dtype)
        logits = model(**inputs, use_cache=False).logits[:, :-1]
        trained = targets != IGNORE_INDEX
        loss = torch.nn.functional.cross_entropy(logits[trained].float(), targets[trained], reduction="sum")
        if vision and "pixel_values" not in batch:
            loss = loss + _vision_anchor(model, device)
        return loss, trained.sum()


def train_sft_command(conf: str, overrides: list[str] | None = None, as_json: bool = False) -> None:
    """Mid-training / SFT on chat and structured-CoT data (text or images), checkpointed and resumable."""
    from medray import console as out
    from medray.config import load_config
    from medray.train.loop import run_training

    cfg = load_config(SFTConfig, conf, overrides or [])
    with out.stdout_to_stderr(as_json):
        progress = (lambda msg: None) if as_json else out.status
        task = SFTTask(progress=progress)
        summary = run_training(cfg, task, progress=progress)
    summary["data"] = task.data_report
    if as_json:
        return out.print_json(summary)
    print_data_report(summary.pop("data"))
    out.key_values("SFT / mid-training", summary)


def print_data_report(report: dict) -> None:
    """Per source: rows in, kept, rejected by reason, tokens; and where the prepared data is."""
    from medray import console as out

    out.table("SFT data (prepared once, reused while inputs and settings are unchanged)",
              ("source", "in", "kept", "rejected", "reasons", "tokens", "reused"),
              ((name, r["in"], r["kept"], r["rejected"], ", ".join(f"{k} {v}" for k, v in r["rejected_by_reason"].items()) or "-",
                r["tokens"], "yes" if r["reused"] else "no") for name, r in report.items()))
