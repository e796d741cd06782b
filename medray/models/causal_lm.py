"""Causal language models: any `transformers` checkpoint from a path, or a small one built from config.

Two ways in, one way out. A `path` (local or ``s3://``) loads a real model
(0.5B-7B on GPU) with `AutoModelForCausalLM`; without one, a Llama- or
Qwen2-shaped model is built from the config fields and seeded, so tests and
the demo need no hub and the same seed gives the same weights. Either way
the model leaves here agreeing with its tokenizer: the embedding table holds
every token id (resized when the tokenizer has more), and the pad and EOS ids
in the model and generation configs are the tokenizer's, so training masks
and `generate` stop where the data says.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.models.hf_io import has_model, local_model_dir

ARCHITECTURES = ("llama", "qwen2")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def _keyed(prefix: str):
    """name -> the dotted key a user wrote it under."""
    return (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)


@dataclass
class ModelConfig:
    """A causal LM: `path` to load one, else a small model of `architecture` built from the fields below."""

    path: Optional[str] = None  # noqa: UP045  (HF folder, local or s3://; when set, the shape fields are ignored)
    tokenizer: Optional[str] = None  # noqa: UP045  (HF tokenizer folder; default: `path`)
    architecture: str = "llama"  # llama | qwen2
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    vocab_size: Optional[int] = None  # noqa: UP045  (default: the tokenizer's size)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    gradient_checkpointing: bool = False
    seed: int = 0  # initialises a model built from config

    @property
    def tokenizer_path(self) -> str | None:
        return self.tokenizer or self.path

    def check(self, prefix: str = "model") -> None:
        """Fail before anything loads, naming the key (`prefix` is where this config sits in the job's)."""
        key = _keyed(prefix)
        self.check_precision(prefix)
        if self.path is not None:
            if not has_model(self.path):
                raise ConfigError(key("path"), f"no model at {self.path} (expected a Hugging Face folder with config.json)")
        else:
            self._check_shape(key)
        tok = self.tokenizer_path
        if tok is not None and not any(storage.exists(storage.join(tok, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
            raise ConfigError(key("tokenizer"), f"no tokenizer at {tok} (train one with `medray tokenizer train`)")
        if self.path is None and tok is None and self.vocab_size is None:
            raise ConfigError(key("tokenizer"), "a model built from config needs a tokenizer or a vocab_size")

    def check_precision(self, prefix: str = "model") -> None:
        """The dtype and attention settings alone: they apply to any model, however it is loaded."""
        key = _keyed(prefix)
        if self.dtype not in DTYPES:
            raise ConfigError(key("dtype"), f"{self.dtype!r}: expected one of {', '.join(DTYPES)}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ConfigError(key("attn_implementation"),
                              f"{self.attn_implementation!r}: expected one of {', '.join(ATTN_IMPLEMENTATIONS)}")
        if self.attn_implementation == "flash_attention_2" and self.dtype == "float32":
            raise ConfigError(key("dtype"), "flash_attention_2 needs bfloat16 or float16")

    def _check_shape(self, key) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(key("architecture"), f"{self.architecture!r}: expected one of {', '.join(ARCHITECTURES)}")
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ConfigError(key(name), f"must be at least 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(key("num_heads"), f"{self.num_heads} does not divide hidden_size {self.hidden_size}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(key("num_heads"), f"head size {self.hidden_size // self.num_heads} must be even (rotary embeddings)")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(key("num_kv_heads"), f"{self.num_kv_heads} does not divide num_heads {self.num_heads}")
        if self.rope_theta <= 0:
            raise ConfigError(key("rope_theta"), f"must be positive, got {self.rope_theta}")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ConfigError(key("vocab_size"), f"must be at least 1, got {self.vocab_size}")


def hf_config(cfg: ModelConfig, vocab_size: int, eos_id: int | None = None, pad_id: int | None = None):
    """The `transformers` config of the model `cfg` describes (built from config, no `path`)."""
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[cfg.architecture]
    return cls(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=cfg.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id,
    )


def load_model_tokenizer(source: str | None, model_dir=None, extra_tokens: Sequence[str] = ()):
    """The tokenizer at `source` (local or s3://), else the one in the fetched model folder `model_dir`.

    None when there is neither. `extra_tokens` missing from it are added as
    special tokens; a tokenizer without a pad token pads with EOS.
    """
    from transformers import AutoTokenizer

    from medray.data.tokenizer import load_tokenizer

    if source is not None:
        tokenizer = load_tokenizer(source)
    elif model_dir is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    elif extra_tokens:
        raise MedrayError(f"tokens {list(extra_tokens)} need a tokenizer: set model.tokenizer")
    else:
        return None
    missing = [t for t in extra_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@contextmanager
def seeded(seed: int, device=None):
    """Draw from `seed` inside the block and leave the global RNG state as it was."""
    devices = [device] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _build_from_config(cfg: ModelConfig, tokenizer, device):
    from transformers import AutoModelForCausalLM

    vocab = cfg.vocab_size or len(tokenizer)
    eos = tokenizer.eos_token_id if tokenizer is not None else None
    pad = tokenizer.pad_token_id if tokenizer is not None else None
    config = hf_config(cfg, vocab, eos, pad)
    with seeded(cfg.seed, device), torch.device(device or "cpu"):
        return AutoModelForCausalLM.from_config(config, dtype=DTYPES[cfg.dtype],
                                                attn_implementation=cfg.attn_implementation)


def _load_pretrained(local, cfg: ModelConfig, device):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(local), dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation, local_files_only=True)
        return model.to(device) if device is not None else model  # device_map would need `accelerate`
    except (OSError, ValueError, ImportError) as err:
        raise MedrayError(f"{cfg.path}: cannot load the model ({err})") from None


def align_with_tokenizer(model, tokenizer, seed: int = 0) -> None:
    """Grow the embeddings to hold every token id and take pad/EOS from the tokenizer."""
    if tokenizer is None:
        return
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        with seeded(seed):
            model.resize_token_embeddings(len(tokenizer))
    for config in (model.config, model.generation_config):
        if config is None:
            continue
        config.pad_token_id = tokenizer.pad_token_id
        eos = config.eos_token_id
        ids = list(eos) if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos])
        if tokenizer.eos_token_id not in ids:  # keep the checkpoint's own stop ids beside the tokenizer's
            ids.insert(0, tokenizer.eos_token_id)
        config.eos_token_id = ids[0] if len(ids) == 1 else ids


def load_causal_lm(cfg: ModelConfig, *, device=None, extra_tokens: Sequence[str] = ()):
    """`(model, tokenizer)` for `cfg`; `tokenizer` is None for a model built from `vocab_size` alone.

    `device` places the weights (default CPU); building from config on the
    target device skips a copy for large shapes, and the same seed and
    device give the same weights. `extra_tokens` (such as `<image>`) are
    added to the tokenizer when missing and the embeddings grow to match.
    """
    cfg.check()
    if cfg.path is not None:
        local = local_model_dir(cfg.path)
        tokenizer = load_model_tokenizer(cfg.tokenizer, local, extra_tokens)
        model = _load_pretrained(local, cfg, device)
    else:
        tokenizer = load_model_tokenizer(cfg.tokenizer, None, extra_tokens)
        model = _build_from_config(cfg, tokenizer, device)
    align_with_tokenizer(model, tokenizer, cfg.seed)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    return model, tokenizer


def enable_checkpointing(model) -> None:
    """Recompute activations in the backward pass: memory for long sequences at about a third more compute."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    text_config = getattr(model.config, "text_config", None) or model.config
    text_config.use_cache = False  # a KV cache is useless in training and conflicts with recomputation
