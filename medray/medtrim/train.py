"""MedTrim training: triplets of image-report pairs on Ray Train (DDP), or in one process for a sweep.

`train_medtrim` prepares the data once on the driver (`medray.medtrim.data`: pairs, OBER, mining,
rejects) and runs the shared harness (`medray.train.loop.run_training`) with `MedTrimTask`:
checkpoints (local or s3://) with exact resume, restarts on a lost worker, MLflow from rank zero.
`fit_in_process` trains the same task in one process with the same engine and `train_step`, no
Ray Train, and calls `report(metrics)` after each epoch: what a Ray Tune trial runs, so ASHA can
stop it between epochs.

How the harness's counts read here: a micro-batch's loss is the SUM of its per-triplet losses and
`loss_tokens` is its triplet count, so the harness's token normalisation gives the mean over the
global batch's triplets. `input_tokens` counts images, so the logged `tokens` and `tokens_per_s`
are images and images per second (3 per triplet; 1 per pair for InfoNCE). InfoNCE is
batch-contrastive: its contrast set is the micro-batch (each anchor's own image and report
against the other anchors' in the same micro-batch), so its difficulty grows with
`micro_batch_size` and it is not divided further across ranks.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.medtrim.data import (
    ROLES,
    PreparedData,
    member_columns,
    mine_triplets,
    pool_too_small,
    prepare,
)
from medray.medtrim.job_settings import MedTrimTrainConfig
from medray.medtrim.loss import LossConfig, compute_loss
from medray.medtrim.model import (
    MINILM,
    MedTrimModel,
    build_text_tokenizer,
    preprocess_images,
    tokenize_texts,
)
from medray.mm.pairs import read_image

DATASET = "medtrim_triplets"


def roles_for(loss: LossConfig) -> tuple[str, ...]:
    """Which members a micro-batch carries: all three for triplets, the anchor alone for InfoNCE."""
    return ROLES if loss.needs_triplets else ROLES[:1]


class MedTrimTrainable(nn.Module):
    """`MedTrimModel` as the harness sees it: one forward for both towers (what DDP needs), and no
    `config` attribute, because the harness reads `model.config` as a Hugging Face LM config for
    its MFU figure, which two encoders do not have (MFU is then left out)."""

    def __init__(self, medtrim: MedTrimModel):
        super().__init__()
        self.medtrim = medtrim

    def forward(self, pixel_values, input_ids, attention_mask):
        return self.medtrim(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)


def collate(rows: dict, roles: tuple[str, ...], tokenizer, preprocessor, max_length: int) -> dict:
    """A micro-batch: images and texts of every member, role after role (anchors, positives, negatives)."""
    images = [read_image(uri) for role in roles for uri in rows[f"{role}_image"]]
    texts = [str(text) for role in roles for text in rows[f"{role}_text"]]
    return {"pixel_values": preprocess_images(images, preprocessor), **tokenize_texts(tokenizer, texts, max_length),
            "triplets": len(rows[f"{roles[0]}_id"])}


def micro_seed(seed: int, rank: int, index: int) -> int:
    """The RNG seed of a rank's `index`-th micro-batch. Why: the text towers have dropout, and a
    resumed run must draw the same masks as an uninterrupted one whatever RNG state it restarts with."""
    return int(np.random.SeedSequence([seed, rank, index]).generate_state(1)[0])


class MedTrimTask:
    """The `Task` of MedTrim (see `medray.train.loop`)."""

    name = "medtrim"

    def __init__(self, progress: Callable[[str], None] | None = None):
        self.progress = progress
        self.prepared: PreparedData | None = None
        self.loss_config = LossConfig()
        self._tokenizer = None
        self._preprocessor = None

    def __getstate__(self) -> dict:
        """What travels to the workers: the driver's progress callback and the tools stay behind."""
        return {**self.__dict__, "progress": None, "_tokenizer": None, "_preprocessor": None}

    def check(self, cfg: MedTrimTrainConfig) -> None:
        self.loss_config = cfg.loss

    def datasets(self, cfg: MedTrimTrainConfig) -> dict:
        """Prepare (or reuse) the triplets, refuse too few for one step, and read them in training order."""
        import ray.data

        run_dir = storage.join(cfg.checkpoint.storage_path, cfg.checkpoint.name)
        self.prepared = prepare(cfg.data, run_dir, progress=self.progress or print)
        need = cfg.micro_batch_size * cfg.scaling.num_workers
        for k, counts in enumerate(self.prepared.counts["passes"]):
            if counts["triplets"] < need:
                raise ConfigError("micro_batch_size", f"mining pass {k} gave {counts['triplets']} triplets, fewer than "
                                  f"micro_batch_size x scaling.num_workers = {cfg.micro_batch_size} x "
                                  f"{cfg.scaling.num_workers}: every worker needs a micro-batch")
        fs, _ = storage.filesystem_for(self.prepared.triplets[0])
        paths = [storage.filesystem_for(f)[1] for f in self.prepared.triplets]
        return {DATASET: ray.data.read_parquet(paths, filesystem=fs).select_columns(member_columns(roles_for(cfg.loss)))}

    @property
    def data_report(self) -> dict:
        p = self.prepared
        return {} if p is None else {**p.counts, "reused": p.reused, "manifest": p.manifest, "rejects": p.rejects}

    def seq_len(self, cfg: MedTrimTrainConfig) -> int:
        return cfg.medtrim_model.text.max_length

    def build_model(self, cfg: MedTrimTrainConfig, device: torch.device):
        model = MedTrimModel(cfg.medtrim_model)  # on the CPU: the engine moves it
        self._tokenizer, self._preprocessor = build_text_tokenizer(cfg.medtrim_model), model.preprocessor
        return MedTrimTrainable(model), self._tokenizer

    def save_model(self, model, tokenizer, out: str) -> None:
        getattr(model, "medtrim", model).save(out, tokenizer)

    # ---- the worker side ----

    def batch_of(self, rows: dict, cfg: MedTrimTrainConfig, seed: int) -> dict:
        if self._preprocessor is None:
            raise MedrayError("MedTrimTask.build_model must run before batches are made (it sets the image preprocessor)")
        batch = collate(rows, roles_for(cfg.loss), self._tokenizer, self._preprocessor, cfg.medtrim_model.text.max_length)
        return {**batch, "seed": seed}

    def micro_batches(self, cfg: MedTrimTrainConfig, start_step: int) -> Iterator[dict]:
        import ray.train

        shard = ray.train.get_dataset_shard(DATASET)
        rank = ray.train.get_context().get_world_rank()
        index = start_step * cfg.grad_accum  # the order is a function of the step: a resumed run reads on exactly
        skip = index
        while True:
            produced = False
            for rows in shard.iter_batches(batch_size=cfg.micro_batch_size, drop_last=True, batch_format="numpy"):
                produced = True
                if skip:
                    skip -= 1
                    continue
                yield self.batch_of({k: v.tolist() for k, v in rows.items()}, cfg, micro_seed(cfg.seed, rank, index))
                index += 1
            if not produced:
                raise MedrayError("this rank's shard of triplets is empty: fewer triplets than workers x micro_batch_size")

    def loss_tokens(self, batch: dict) -> int:
        return batch["triplets"]

    def input_tokens(self, batch: dict) -> int:
        return int(batch["pixel_values"].shape[0])

    def loss(self, model, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(batch["seed"])  # dropout masks: a function of the micro-batch, as its rows are
        image, text = model(batch["pixel_values"].to(device), batch["input_ids"].to(device),
                            batch["attention_mask"].to(device))
        n = batch["triplets"]
        members = [m for pair in zip(image.float().split(n), text.float().split(n)) for m in pair]
        value, _ = compute_loss(self.loss_config, *members)  # a mean over the micro-batch's triplets
        return value * n, torch.tensor(n)


# ---- the driver ---------------------------------------------------------------------------------


def absolute_paths(cfg: MedTrimTrainConfig) -> MedTrimTrainConfig:
    """A copy whose local input paths are absolute: Ray Train workers run in their own directory."""
    cfg = copy.deepcopy(cfg)

    def fix(obj, attr: str) -> None:
        value = getattr(obj, attr)
        if isinstance(value, str) and value and value != MINILM and "://" not in value:
            setattr(obj, attr, os.path.abspath(os.path.expanduser(value)))

    for obj, attr in ((cfg.data, "pairs"), (cfg.data.ober, "tree"), (cfg.medtrim_model.image, "path"),
                      (cfg.medtrim_model.text, "path"), (cfg.medtrim_model.text, "tokenizer")):
        fix(obj, attr)
    return cfg


def train_medtrim(cfg: MedTrimTrainConfig, progress: Callable[[str], None] = print) -> dict:
    """Prepare the triplets and train on Ray Train; the harness's summary plus `data` (counts, rejects)."""
    from medray.train.loop import run_training

    task = MedTrimTask(progress=progress)
    summary = run_training(absolute_paths(cfg), task, progress=progress)
    summary["data"] = task.data_report
    return summary


@dataclass
class FitResult:
    model: MedTrimModel
    history: list[dict] = field(default_factory=list)  # one row per epoch: what `report` was given


def fit_in_process(cfg: MedTrimTrainConfig, records: pa.Table, epochs: int = 1,
                   report: Callable[[dict], None] | None = None, *,
                   evaluate: Callable[[MedTrimModel], dict] | None = None,
                   device: torch.device | str | None = None) -> FitResult:
    """Train in this process on `records` (`medray.medtrim.data.read_records`), mining each epoch's
    triplets with the trial's own settings (pass k of `data.epochs_of_triplets` for epoch k).

    The global batch is `global_batch_size` triplets, as on Ray Train (accumulated in micro-batches,
    world size 1). After each epoch `report(metrics)` gets epoch, step, loss (the epoch's mean),
    last_loss, triplets, seconds and, with `evaluate`, what it returns for the model.
    """
    from medray.train.engines import make_engine
    from medray.train.loop import train_step
    from medray.train.schedule import lr_multiplier
    from medray.train.state import seed_everything

    cfg = dataclasses.replace(cfg, scaling=dataclasses.replace(cfg.scaling, num_workers=1))
    cfg.check_training()
    if epochs < 1:
        raise ConfigError("epochs", f"must be at least 1, got {epochs}")
    device = torch.device(device or ("cuda" if cfg.scaling.use_gpu and torch.cuda.is_available() else "cpu"))
    passes = [_mined(records, cfg, k) for k in range(min(epochs, cfg.data.epochs_of_triplets))]
    steps = [passes[e % len(passes)].num_rows // cfg.global_batch_size for e in range(epochs)]
    task = MedTrimTask()
    task.check(cfg)
    seed_everything(cfg.seed)
    model, _ = task.build_model(cfg, device)
    engine = make_engine(model, cfg, device, 1)
    engine.model.train()
    history, step, total = [], 0, sum(steps)
    for epoch in range(epochs):
        table, started, losses = passes[epoch % len(passes)], time.perf_counter(), []
        for first in range(0, steps[epoch] * cfg.global_batch_size, cfg.global_batch_size):
            micro = [task.batch_of(table.slice(first + i * cfg.micro_batch_size, cfg.micro_batch_size).to_pydict(), cfg,
                                   micro_seed(cfg.seed, 0, step * cfg.grad_accum + i)) for i in range(cfg.grad_accum)]
            lr = cfg.optim.lr * lr_multiplier(step, total, cfg.schedule)
            loss, _, _ = train_step(engine, task, micro, lr, device)
            losses.append(loss)
            step += 1
        metrics = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)), "last_loss": losses[-1],
                   "triplets": table.num_rows, "seconds": round(time.perf_counter() - started, 3)}
        if evaluate is not None:
            engine.model.eval()
            with torch.no_grad():
                metrics.update(evaluate(model.medtrim))
            engine.model.train()
        history.append(metrics)
        if report is not None:
            report(metrics)
    return FitResult(model.medtrim, history)


def _mined(records: pa.Table, cfg: MedTrimTrainConfig, pass_index: int) -> pa.Table:
    triplets, _, counts = mine_triplets(records, cfg.data, pass_index)
    if "error" in counts:
        raise pool_too_small({"records": records.num_rows, "pairs": records.num_rows}, cfg.data, "the records given")
    if triplets.num_rows < cfg.global_batch_size:
        raise ConfigError("global_batch_size", f"mining pass {pass_index} gave {triplets.num_rows} triplets, fewer "
                                               f"than one global batch of {cfg.global_batch_size}")
    return triplets


def train_medtrim_command(conf: str, overrides: list[str] | None = None, as_json: bool = False) -> None:
    """`medray medtrim train CONF [key=value ...]`: MedTrim on Ray Train, with its data report."""
    from medray import console as out
    from medray.config import load_config

    cfg = load_config(MedTrimTrainConfig, conf, overrides or [])
    with out.stdout_to_stderr(as_json):
        summary = train_medtrim(cfg, progress=(lambda msg: None) if as_json else out.status)
    if as_json:
        return out.print_json(summary)
    data = summary.pop("data")
    out.key_values("MedTrim data (prepared once, reused while inputs and settings are unchanged)",
                   {k: v for k, v in data.items() if k not in ("passes", "rejected")})
    if data.get("rejected"):
        out.table("Rejects", ("reason", "count"), data["rejected"].items())
    out.key_values("MedTrim training (tokens are images)", summary)
