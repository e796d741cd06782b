"""The vision-language model: a vision tower, Llava's MLP connector and a causal LM, as one Llava model.

Why Llava: `LlavaForConditionalGeneration` is what `transformers` saves and
loads and what vLLM serves, so the assembled model needs no code of ours to
run elsewhere. vLLM serves Llava with a CLIP or SigLIP tower; a ViT tower
trains and loads with `transformers` but vLLM does not serve it.

Assembly moves the given modules in rather than copying weights: the Llava
shell is built on the meta device (no memory, no init), then the tower and
the LLM's body and head take their places, and only the connector is new
(seeded). So the assembled model's LLM is the given LLM, weight for weight.

Images enter at placeholders: one `<image>` in a prompt becomes N copies of
the image token (`expand_image_placeholders`), N being the tower's patches
(`image_tokens_per_image`: CLIP and ViT drop their CLS token under the
"default" selection; SigLIP has none, so its default here is "full"). In the
forward pass Llava writes the i-th image's N projected features over the
i-th run of N placeholders, in batch order; a count that does not match the
images is refused before the tower runs (`check_image_placeholders`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from medray.data.tokenizer import IMAGE_TOKEN
from medray.errors import ConfigError, MedrayError
from medray.models.causal_lm import (
    DTYPES,
    ModelConfig,
    enable_checkpointing,
    load_causal_lm,
    load_model_tokenizer,
    seeded,
)
from medray.models.hf_io import has_model, local_model_dir, save_hf
from medray.models.images import ImagePreprocessor, hf_image_processor

IMAGE_TOKEN_ID = 4  # `<image>` in the project tokenizer
IGNORE_INDEX = -100
VISION_KINDS = ("siglip", "clip", "vit")
SELECT_STRATEGIES = ("default", "full")
# model_type in a checkpoint's config.json -> kind; full CLIP/SigLIP checkpoints give their vision half.
_KIND_OF_MODEL_TYPE = {"siglip": "siglip", "siglip_vision_model": "siglip", "clip": "clip",
                       "clip_vision_model": "clip", "vit": "vit"}
_HAS_CLS = {"siglip": False, "clip": True, "vit": True}


@dataclass
class VisionConfig:
    """A vision tower: `path` to load one, else a small tower of `kind` built from the fields below."""

    kind: str = "siglip"  # siglip | clip | vit
    path: Optional[str] = None  # noqa: UP045  (HF folder of the tower or of a full CLIP/SigLIP model)
    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    seed: int = 0

    def check(self, prefix: str = "vision") -> None:
        if self.kind not in VISION_KINDS:
            raise ConfigError(f"{prefix}.kind", f"{self.kind!r}: expected one of {', '.join(VISION_KINDS)}")
        if self.path is not None:
            if not has_model(self.path):
                raise ConfigError(f"{prefix}.path", f"no vision model at {self.path} (expected a Hugging Face folder with config.json)")
            return
        for name in ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{prefix}.{name}", f"must be at least 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"{prefix}.patch_size", f"{self.patch_size} does not divide image_size {self.image_size}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{prefix}.num_heads", f"{self.num_heads} does not divide hidden_size {self.hidden_size}")


@dataclass
class VLMConfig:
    """A saved Llava model (`path`), or one assembled from `vision` and `llm` with a new connector."""

    path: Optional[str] = None  # noqa: UP045  (a folder written by save_vlm or any Llava checkpoint)
    llm: ModelConfig = field(default_factory=ModelConfig)  # dtype and attention apply to a `path` model too
    vision: VisionConfig = field(default_factory=VisionConfig)
    feature_layer: int = -2  # which tower layer feeds the connector (LLaVA uses the second to last)
    select_strategy: Optional[str] = None  # noqa: UP045  (default: drop CLS; full: keep all; None: full for siglip, else default)
    connector_seed: int = 0

    @property
    def strategy(self) -> str:
        return self.select_strategy or ("full" if self.vision.kind == "siglip" else "default")

    def check(self, prefix: str = "model") -> None:
        if self.path is not None:
            self.llm.check_precision(f"{prefix}.llm")
            if not has_model(self.path):
                raise ConfigError(f"{prefix}.path", f"no model at {self.path} (expected a Hugging Face folder with config.json)")
            return
        self.llm.check(f"{prefix}.llm")
        if self.llm.tokenizer_path is None:
            raise ConfigError(f"{prefix}.llm.tokenizer", "a VLM needs a tokenizer (it holds the <image> token)")
        self.vision.check(f"{prefix}.vision")
        if self.select_strategy is not None and self.select_strategy not in SELECT_STRATEGIES:
            raise ConfigError(f"{prefix}.select_strategy", f"{self.select_strategy!r}: expected one of {', '.join(SELECT_STRATEGIES)}")
        if self.vision.path is None and not -self.vision.num_layers - 1 <= self.feature_layer <= self.vision.num_layers:
            raise ConfigError(f"{prefix}.feature_layer", f"{self.feature_layer} is outside the tower's {self.vision.num_layers} layers")


# ---- the vision tower ---------------------------------------------------------------------------


def _vision_classes(kind: str):
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        SiglipVisionConfig,
        SiglipVisionModel,
        ViTConfig,
        ViTModel,
    )

    return {"siglip": (SiglipVisionConfig, SiglipVisionModel), "clip": (CLIPVisionConfig, CLIPVisionModel),
            "vit": (ViTConfig, ViTModel)}[kind]


def vision_hf_config(cfg: VisionConfig):
    """The `transformers` config of a tower built from `cfg` (SigLIP without its unused pooling head)."""
    config_cls, _ = _vision_classes(cfg.kind)
    extra = {"vision_use_head": False} if cfg.kind == "siglip" else {}
    return config_cls(image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
                      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                      intermediate_size=cfg.intermediate_size, **extra)


def _preprocessor_from_folder(folder, kind: str, image_size: int) -> ImagePreprocessor:
    """The tower's own normalisation when its folder has an image processor config, else the kind's defaults."""
    default = ImagePreprocessor.for_tower(kind, image_size)
    for name in ("preprocessor_config.json", "processor_config.json"):
        file = folder / name
        if file.is_file():
            data = json.loads(file.read_text())
            data = data.get("image_processor", data)
            if "image_mean" in data and "image_std" in data:
                resample = {2: "BILINEAR", 3: "BICUBIC"}.get(data.get("resample"), default.resample)
                return ImagePreprocessor(image_size, tuple(data["image_mean"]), tuple(data["image_std"]), resample)
    return default


def load_vision_tower(cfg: VisionConfig, *, dtype=None, device=None):
    """`(tower, preprocessor)`: a SigLIP / CLIP vision / ViT model and the image transform it expects."""
    cfg.check()
    _, model_cls = _vision_classes(cfg.kind)
    if cfg.path is None:
        with seeded(cfg.seed, device), torch.device(device or "cpu"):
            tower = model_cls(vision_hf_config(cfg))
        return tower.to(dtype=dtype) if dtype is not None else tower, ImagePreprocessor.for_tower(cfg.kind, cfg.image_size)
    local = local_model_dir(cfg.path)
    model_type = json.loads((local / "config.json").read_text()).get("model_type")
    if _KIND_OF_MODEL_TYPE.get(model_type) != cfg.kind:
        raise MedrayError(f"{cfg.path}: a {model_type!r} model, not a {cfg.kind} vision tower (set vision.kind)")
    tower = model_cls.from_pretrained(str(local), dtype=dtype, local_files_only=True)
    tower = tower.to(device) if device is not None else tower  # device_map would need `accelerate`
    return tower, _preprocessor_from_folder(local, cfg.kind, _square_size(tower.config.image_size))


def _square_size(size) -> int:
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise MedrayError(f"image size {list(size)}: only square inputs are supported")
        return int(size[0])
    return int(size)


# ---- placeholders -------------------------------------------------------------------------------


def _kind_of(vision_config) -> str:
    kind = _KIND_OF_MODEL_TYPE.get(vision_config.model_type)
    if kind is None:
        raise MedrayError(f"unsupported vision tower type {vision_config.model_type!r}: expected SigLIP, CLIP or ViT")
    return kind


def image_tokens_per_image(config) -> int:
    """N placeholders per image: patches, plus the CLS token when the tower has one and the strategy keeps it.

    `config` is a `LlavaConfig`, a model holding one, or a `VLMConfig` with a tower built from config.
    """
    if isinstance(config, VLMConfig):
        if config.vision.path is not None or config.path is not None:
            raise MedrayError("image_tokens_per_image needs the tower's config: pass the loaded model's config")
        side = config.vision.image_size // config.vision.patch_size
        return side * side + int(_HAS_CLS[config.vision.kind]) - int(config.strategy == "default")
    config = getattr(config, "config", config)
    vision = config.vision_config
    size, patch = vision.image_size, vision.patch_size
    h, w = (size, size) if isinstance(size, int) else size
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    keeps_cls = int(_HAS_CLS[_kind_of(vision)])
    return (h // ph) * (w // pw) + keeps_cls - int(config.vision_feature_select_strategy == "default")


def expand_image_placeholders(input_ids: Sequence[int], labels: Sequence[int] | None, n: int,
                              image_token_id: int = IMAGE_TOKEN_ID) -> tuple[list[int], list[int] | None]:
    """Each `<image>` becomes `n` image tokens; their labels are -100 (the model never predicts pixels)."""
    ids = np.asarray(input_ids, dtype=np.int64)
    is_image = ids == image_token_id
    repeats = np.where(is_image, n, 1)
    out_ids = np.repeat(ids, repeats).tolist()
    if labels is None:
        return out_ids, None
    lab = np.asarray(labels, dtype=np.int64)
    if lab.shape != ids.shape:
        raise MedrayError(f"labels ({lab.shape[0]}) and input_ids ({ids.shape[0]}) differ in length")
    return out_ids, np.repeat(np.where(is_image, IGNORE_INDEX, lab), repeats).tolist()


def check_image_placeholders(input_ids: torch.Tensor, n_images: int, tokens_per_image: int,
                             image_token_id: int = IMAGE_TOKEN_ID) -> None:
    """Refuse a batch whose placeholders do not hold exactly `n_images` whole images, naming the counts."""
    mask = (input_ids == image_token_id).to(torch.int8)
    found = int(mask.sum())
    if found != n_images * tokens_per_image:
        raise MedrayError(f"the batch has {found} image placeholder tokens but {n_images} image(s) of "
                          f"{tokens_per_image} tokens each need {n_images * tokens_per_image}: expand each <image> "
                          "with expand_image_placeholders and pass one image per <image>")
    edges = torch.nn.functional.pad(mask, (1, 1)).diff(dim=-1)
    lengths = torch.nonzero(edges == -1)[:, -1] - torch.nonzero(edges == 1)[:, -1]
    if bool((lengths % tokens_per_image != 0).any()):
        raise MedrayError(f"an image placeholder run of {int(lengths[lengths % tokens_per_image != 0][0])} tokens is not "
                          f"a whole number of images ({tokens_per_image} tokens each): was a sample truncated inside an image?")


def _cache_is_empty(cache) -> bool:
    return cache is None or (hasattr(cache, "get_seq_length") and cache.get_seq_length() == 0)


def attach_placeholder_check(model) -> None:
    """Run `check_image_placeholders` before every forward of a Llava model (once per model)."""
    if getattr(model, "_medray_placeholder_check", False):
        return
    per_image, token_id = image_tokens_per_image(model.config), model.config.image_token_id

    def hook(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        pixel_values = kwargs.get("pixel_values", args[1] if len(args) > 1 else None)
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("image")  # generate() encodes images first
        if input_ids is None:
            return None
        if pixel_values is not None:
            check_image_placeholders(input_ids, pixel_values.shape[0], per_image, token_id)
        elif encoded is not None:
            check_image_placeholders(input_ids, len(encoded.pooler_output), per_image, token_id)
        elif _cache_is_empty(kwargs.get("past_key_values")) and bool((input_ids == token_id).any()):
            check_image_placeholders(input_ids, 0, per_image, token_id)
        return None

    model.register_forward_pre_hook(hook, with_kwargs=True)
    model._medray_placeholder_check = True


# ---- assembly, loading, saving ------------------------------------------------------------------


def build_vlm(tower, llm, *, image_token_id: int = IMAGE_TOKEN_ID, feature_layer: int = -2,
              select_strategy: str | None = None, seed: int = 0):
    """A `LlavaForConditionalGeneration` made of `tower`, a new seeded connector and `llm` (moved in, not copied)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    kind = _kind_of(tower.config)
    strategy = select_strategy or ("full" if kind == "siglip" else "default")
    param = next(llm.parameters())
    tower = tower.to(device=param.device, dtype=param.dtype)
    config = LlavaConfig(vision_config=tower.config, text_config=llm.config, image_token_index=image_token_id,
                         vision_feature_layer=feature_layer, vision_feature_select_strategy=strategy,
                         projector_hidden_act="gelu", multimodal_projector_bias=True,
                         tie_word_embeddings=bool(llm.config.tie_word_embeddings))
    config.image_seq_length = image_tokens_per_image(config)
    with torch.device("meta"):
        vlm = LlavaForConditionalGeneration(config)
    vlm.config.vision_config, vlm.config.text_config = tower.config, llm.config
    vlm.model.vision_tower = tower
    vlm.model.language_model = llm.model
    vlm.lm_head = llm.lm_head
    with seeded(seed, param.device), torch.device(param.device):
        vlm.model.multi_modal_projector = LlavaMultiModalProjector(config).to(param.dtype)
    vlm.generation_config = llm.generation_config
    vlm.train(llm.training)
    attach_placeholder_check(vlm)
    return vlm


def load_vlm(cfg: VLMConfig, *, device=None):
    """`(model, tokenizer, preprocessor)`: a saved VLM from `cfg.path`, else one assembled from `cfg`."""
    cfg.check()
    if cfg.path is not None:
        return _load_saved(cfg, device)
    llm, tokenizer = load_causal_lm(cfg.llm, device=device, extra_tokens=(IMAGE_TOKEN,))
    tower, preprocessor = load_vision_tower(cfg.vision, dtype=DTYPES[cfg.llm.dtype], device=device)
    vlm = build_vlm(tower, llm, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                    feature_layer=cfg.feature_layer, select_strategy=cfg.strategy, seed=cfg.connector_seed)
    if cfg.llm.gradient_checkpointing:
        enable_checkpointing(vlm)
    return vlm, tokenizer, preprocessor


def _load_saved(cfg: VLMConfig, device):
    from transformers import LlavaForConditionalGeneration

    local = local_model_dir(cfg.path)
    try:
        vlm = LlavaForConditionalGeneration.from_pretrained(
            str(local), dtype=DTYPES[cfg.llm.dtype], attn_implementation=cfg.llm.attn_implementation,
            local_files_only=True)
        vlm = vlm.to(device) if device is not None else vlm  # device_map would need `accelerate`
    except (OSError, ValueError, ImportError) as err:
        raise MedrayError(f"{cfg.path}: cannot load the vision-language model ({err})") from None
    tokenizer = load_model_tokenizer(cfg.llm.tokenizer, local)
    vision = vlm.config.vision_config
    preprocessor = _preprocessor_from_folder(local, _kind_of(vision), _square_size(vision.image_size))
    if cfg.llm.gradient_checkpointing:
        enable_checkpointing(vlm)
    attach_placeholder_check(vlm)
    return vlm, tokenizer, preprocessor


def llava_processor(model, tokenizer, preprocessor: ImagePreprocessor):
    """A `LlavaProcessor` that expands `<image>` and preprocesses pixels exactly as training did."""
    from transformers import LlavaProcessor

    vision = model.config.vision_config
    return LlavaProcessor(image_processor=hf_image_processor(preprocessor), tokenizer=tokenizer,
                          patch_size=vision.patch_size, image_token=IMAGE_TOKEN,
                          vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                          num_additional_image_tokens=int(_HAS_CLS[_kind_of(vision)]))


def save_vlm(model, tokenizer, out: str, preprocessor: ImagePreprocessor | None = None) -> str:
    """Save as a Hugging Face Llava folder (model, tokenizer, processor) at `out`, local or s3://."""
    vision = model.config.vision_config
    if preprocessor is None:
        preprocessor = ImagePreprocessor.for_tower(_kind_of(vision), _square_size(vision.image_size))
    return save_hf(model, tokenizer, out, processor=llava_processor(model, tokenizer, preprocessor))
