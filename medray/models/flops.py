"""Parameter counts and training FLOPs per token: the numerator of the MFU the trainer reports.

MFU = achieved FLOP/s over the device's peak, and achieved FLOP/s is tokens
per second times `flops_per_token`. The estimate is the standard one (Kaplan
et al. 2020; PaLM, Chowdhery et al. 2022, appendix B):

    flops_per_token = 6 * N + 12 * L * H * T

N is the number of parameters that take part in a matrix multiply per token:
every weight except the input embedding table (a lookup, not a matmul), with
the output head counted once even when it shares the table. 6N is the
forward (2N) and backward (4N) pass through them. 12*L*H*T is the attention
scores and the weighted sum over T positions in each of L layers, forward
and backward, with H the query width (heads x head size). It counts the full
T x T square, as PaLM does, not the causal half, so that MFU figures compare
with published ones. Computed from the config alone, so a 7B model's figure
needs no weights.
"""

from __future__ import annotations

from medray.errors import MedrayError

# Llama-style decoders: q/k/v/o projections, a gated MLP (gate, up, down), RMS norms.
_LLAMA_LIKE = {"llama", "qwen2", "qwen3", "mistral"}


def count_params(model, trainable_only: bool = False) -> int:
    """Distinct parameters of `model` (tied weights once; ZeRO-3 partitions at their full size)."""
    total = 0
    for p in model.parameters():
        if trainable_only and not p.requires_grad:
            continue
        total += getattr(p, "ds_numel", p.numel())
    return total


def _text_config(config):
    return getattr(config, "text_config", None) or config


def matmul_params(config) -> int:
    """N of the formula above for a Llama-style decoder config (Llama, Qwen2/3, Mistral)."""
    c = _text_config(config)
    if c.model_type not in _LLAMA_LIKE:
        raise MedrayError(f"no parameter formula for model type {c.model_type!r}: pass num_params "
                          "(count_params(model) minus the input embedding)")
    h, n_layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    head = getattr(c, "head_dim", None) or h // c.num_attention_heads
    q_width, kv_width = c.num_attention_heads * head, c.num_key_value_heads * head
    qkv_bias = c.model_type == "qwen2" or bool(getattr(c, "attention_bias", False))
    o_bias = bool(getattr(c, "attention_bias", False)) and c.model_type != "qwen2"
    attention = h * q_width + 2 * h * kv_width + q_width * h
    attention += (q_width + 2 * kv_width) * qkv_bias + h * o_bias
    if c.model_type == "qwen3":
        attention += 2 * head  # per-head RMS norms on queries and keys
    mlp = 3 * h * c.intermediate_size + (2 * c.intermediate_size + h) * bool(getattr(c, "mlp_bias", False))
    norms = 2 * h
    return n_layers * (attention + mlp + norms) + h + vocab * h


def flops_per_token(config, seq_len: int, num_params: int | None = None) -> float:
    """Training FLOPs per token, 6N + 12*L*H*T (see the module docstring); a VLM counts its LLM only.

    `num_params` overrides N for architectures `matmul_params` does not know.
    """
    c = _text_config(config)
    n = matmul_params(c) if num_params is None else num_params
    head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return float(6 * n + 12 * c.num_hidden_layers * c.num_attention_heads * head * seq_len)
