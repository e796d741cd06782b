"""Stage-2 alignment scores: the cosine of a pair's image and text embeddings from a vision-text model.

Two kinds of model, one interface (`embed_images`, `embed_texts`, both unit vectors): a MedTrim
model (`MedTrimModel.save` folder) and any CLIP-style `transformers` folder (model, tokenizer and
image processor; local or s3://). `score_rows` is the plain function; `PairScorer` wraps it for a
Ray Data actor pool so each actor loads the model once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from medray.errors import MedrayError
from medray.mm.mm_settings import ScoreConfig
from medray.mm.pairs import read_image

SCORE_SCHEMA = pa.schema([("id", pa.string()), ("score", pa.float64()), ("problem", pa.string())])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_rows(images: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """Row i of `images` against row i of `texts` (float64)."""
    return np.einsum("ij,ij->i", _unit(images), _unit(texts))


class MedTrimScorer:
    """A MedTrim model's towers, through the evaluation code's embedding functions."""

    def __init__(self, model, tokenizer=None, batch_size: int = 32, device: str = "cpu"):
        from medray.medtrim.model import build_text_tokenizer

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer or build_text_tokenizer(model.config)
        self.batch_size, self.device = batch_size, device

    @classmethod
    def load(cls, path: str, batch_size: int = 32, device: str = "cpu") -> MedTrimScorer:
        from medray.medtrim.model import MedTrimModel

        return cls(MedTrimModel.load(path), batch_size=batch_size, device=device)

    def embed_images(self, uris: Sequence[str]) -> tuple[np.ndarray, list[int], list[str | None]]:
        """(embeddings of the images that load, their indices, a problem per uri or None)."""
        from medray.medtrim.evaluate import embed_images

        emb, kept, rejects = embed_images(self.model, [{"id": str(i), "image_path": u} for i, u in enumerate(uris)],
                                          self.batch_size, self.device, threads=1)
        problems: list[str | None] = [None] * len(uris)
        for r in rejects:
            problems[int(r["id"])] = r.get("detail") or r.get("reason")
        return emb, kept, problems

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        from medray.medtrim.evaluate import embed_texts

        return embed_texts(self.model, self.tokenizer, list(texts), self.batch_size, self.device)


class ClipScorer:
    """A CLIP-style folder: `get_image_features` / `get_text_features` after its own processors."""

    def __init__(self, path: str, batch_size: int = 32, device: str = "cpu", max_length: int = 77):
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        from medray.models.hf_io import local_model_dir

        folder = str(local_model_dir(path))
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "get_text_features"):
            raise MedrayError(f"{path}: a {type(self.model).__name__} has no image and text features (not CLIP-style)")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.batch_size, self.device = batch_size, device
        limit = getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", max_length)
        self.max_length = min(max_length, limit)

    @staticmethod
    def _features(out) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.no_grad()
    def embed_images(self, uris: Sequence[str]) -> tuple[np.ndarray, list[int], list[str | None]]:
        from PIL import Image

        images, kept, problems = [], [], [None] * len(uris)
        for i, uri in enumerate(uris):
            try:
                image = read_image(uri)
                images.append((Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB"))
                kept.append(i)
            except MedrayError as err:
                problems[i] = str(err)[:300]
        chunks = []
        for s in range(0, len(images), self.batch_size):
            pixels = self.processor(images=images[s:s + self.batch_size], return_tensors="pt")["pixel_values"]
            chunks.append(self._features(self.model.get_image_features(pixel_values=pixels.to(self.device))).float().cpu().numpy())
        dim = self.model.config.projection_dim
        return (np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)), kept, problems

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        chunks = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[s:s + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            out = self.model.get_text_features(input_ids=enc["input_ids"].to(self.device),
                                               attention_mask=enc["attention_mask"].to(self.device))
            chunks.append(self._features(out).float().cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.model.config.projection_dim), np.float32)


def load_scorer(cfg: ScoreConfig):
    """The scorer `cfg.model` names, loaded from `cfg.model_path`."""
    if cfg.model == "medtrim":
        return MedTrimScorer.load(cfg.model_path, cfg.batch_size, cfg.device)
    if cfg.model == "clip":
        return ClipScorer(cfg.model_path, cfg.batch_size, cfg.device)
    raise MedrayError(f"no scorer for model {cfg.model!r}")


def score_rows(scorer, ids: Sequence[str], uris: Sequence[str], texts: Sequence[str]) -> pa.Table:
    """(id, score, problem): score null and a problem where the image would not load for the model."""
    image_emb, kept, problems = scorer.embed_images(list(uris))
    scores: list[float | None] = [None] * len(ids)
    if kept:
        text_emb = scorer.embed_texts([texts[i] for i in kept])
        for i, s in zip(kept, cosine_rows(image_emb, text_emb)):
            scores[i] = round(float(s), 6)
    return pa.table({"id": pa.array(list(ids), pa.string()), "score": pa.array(scores, pa.float64()),
                     "problem": pa.array(problems, pa.string())}, schema=SCORE_SCHEMA)


class PairScorer:
    """Ray Data actor: one model per actor, a batch of (id, image, text) in, `SCORE_SCHEMA` out."""

    def __init__(self, cfg: ScoreConfig, columns: tuple[str, str, str]):
        self.scorer = load_scorer(cfg)
        self.columns = columns

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids, uris, texts = (batch.column(c).to_pylist() for c in self.columns)
        return score_rows(self.scorer, [str(i) for i in ids], uris, ["" if t is None else t for t in texts])


def score_table(table: pa.Table, cfg: ScoreConfig, columns: tuple[str, str, str], scorer=None,
                use_ray: bool = False) -> pa.Table:
    """Scores of every row of `table`, in its order: in-process with `scorer` (or one loaded from
    `cfg`), or on Ray Data with `cfg.actors` model replicas."""
    if not table.num_rows:
        return SCORE_SCHEMA.empty_table()
    if not use_ray:
        ids, uris, texts = (table.column(c).to_pylist() for c in columns)
        return score_rows(scorer or load_scorer(cfg), [str(i) for i in ids], uris,
                          ["" if t is None else t for t in texts])
    import ray
    from ray.data import ActorPoolStrategy

    out = ray.data.from_arrow(table.select(list(dict.fromkeys(columns)))).map_batches(
        PairScorer, fn_constructor_args=(cfg, columns), batch_format="pyarrow", batch_size=cfg.batch_size,
        compute=ActorPoolStrategy(size=cfg.actors), num_cpus=1)
    parts = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
             for b in out.iter_batches(batch_format="pyarrow", batch_size=None)]
    scored = pa.concat_tables([p.cast(SCORE_SCHEMA) for p in parts])
    order = {str(pair_id): i for i, pair_id in enumerate(table.column(columns[0]).to_pylist())}
    rank = pa.array([order[i] for i in scored.column("id").to_pylist()], pa.int64())
    return scored.append_column("_order", rank).sort_by("_order").drop(["_order"])
