"""Causal LMs: seeded builds, config errors, Hugging Face save/load (local and S3), FLOPs per token."""

from __future__ import annotations

import math
import os

import pytest
import torch

from medray import storage
from medray.errors import ConfigError
from medray.models.causal_lm import ModelConfig, load_causal_lm
from medray.models.flops import count_params, flops_per_token, matmul_params
from medray.models.hf_io import SAVE_MARKER, fetch_model_dir, is_saved, save_hf

PROMPT = "Chest radiograph shows pleural effusion in the left lung"


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def ids_of(tokenizer, text: str = PROMPT) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


@pytest.mark.parametrize("architecture, cls", [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")])
def test_tiny_models_are_seeded_and_agree_with_the_tokenizer(tokenizer_dir, architecture, cls):
    cfg = ModelConfig(tokenizer=tokenizer_dir, architecture=architecture, seed=5)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model, tokenizer = load_causal_lm(cfg)
    assert torch.equal(torch.rand(3), expected_next)  # the build drew from its own seed, not the global RNG
    again, _ = load_causal_lm(cfg)
    other, _ = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir, architecture=architecture, seed=6))
    assert type(model).__name__ == cls
    assert same_weights(state(model), state(again))
    assert not same_weights(state(model), state(other))
    assert model.config.vocab_size == len(tokenizer) == 400
    assert (model.config.eos_token_id, model.config.pad_token_id, model.config.bos_token_id) == (0, 1, None)
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (0, 1)
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tie_word_embeddings defaults on
    ids = ids_of(tokenizer)
    loss = model(input_ids=ids, labels=ids).loss
    # A fresh model predicts close to uniformly over the 400 tokens.
    assert math.isfinite(loss.item()) and abs(loss.item() - math.log(400)) < 0.3


def test_config_errors_name_the_key_before_anything_loads(tokenizer_dir, tmp_path):
    missing = str(tmp_path / "no-such-model")
    cases = [
        (ModelConfig(path=missing), "model.path", missing),
        (ModelConfig(tokenizer=tokenizer_dir, hidden_size=60, num_heads=8), "model.num_heads", "does not divide"),
        (ModelConfig(tokenizer=tokenizer_dir, num_heads=4, num_kv_heads=3), "model.num_kv_heads", "does not divide"),
        (ModelConfig(tokenizer=tokenizer_dir, architecture="gpt9"), "model.architecture", "llama, qwen2"),
        (ModelConfig(tokenizer=tokenizer_dir, dtype="float8"), "model.dtype", "bfloat16"),
        (ModelConfig(tokenizer=tokenizer_dir, attn_implementation="flash_attention_2"), "model.dtype", "flash_attention_2"),
        (ModelConfig(tokenizer=str(tmp_path / "no-tok")), "model.tokenizer", "no-tok"),
        (ModelConfig(), "model.tokenizer", "vocab_size"),
    ]
    for cfg, key, text in cases:
        with pytest.raises(ConfigError) as err:
            load_causal_lm(cfg)
        assert err.value.key == key and text in str(err.value), (key, str(err.value))
    with pytest.raises(ConfigError) as err:
        ModelConfig(path=missing).check(prefix="stage.model")
    assert err.value.key == "stage.model.path"


def test_vocab_grows_to_the_tokenizer_and_extra_tokens(tokenizer_dir):
    small = ModelConfig(tokenizer=tokenizer_dir, vocab_size=300, tie_word_embeddings=False)
    model, tokenizer = load_causal_lm(small)
    again, _ = load_causal_lm(small)
    assert model.get_input_embeddings().num_embeddings == model.lm_head.out_features == 400
    assert same_weights(state(model), state(again))  # the new rows are seeded too
    model, tokenizer = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir), extra_tokens=("<scan>", "<image>"))
    assert len(tokenizer) == 401 and tokenizer.convert_tokens_to_ids("<scan>") == 400
    assert tokenizer.convert_tokens_to_ids("<image>") == 4  # already there: not added twice
    assert model.get_input_embeddings().num_embeddings == 401
    assert tokenizer("a <scan> b")["input_ids"].count(400) == 1


def test_saved_model_loads_with_transformers_and_generates(tokenizer_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir, architecture="qwen2", tie_word_embeddings=False))
    out = tmp_path / "export"
    save_hf(model, tokenizer, str(out))
    assert is_saved(str(out)) and (out / SAVE_MARKER).is_file()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging folder left behind
    loaded = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    loaded_tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    ids = ids_of(tokenizer)
    assert torch.equal(ids_of(loaded_tok), ids)
    model.eval()
    assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    generated = loaded.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    reference = model.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 6) and torch.equal(generated, reference)
    assert torch.equal(generated[:, : ids.shape[1]], ids)
    # what a training worker does: load the saved folder onto its device (no `accelerate` needed)
    on_device, _ = load_causal_lm(ModelConfig(path=str(out)), device=torch.device("cpu"))
    assert torch.equal(on_device(input_ids=ids).logits, model(input_ids=ids).logits)

    (out / "model.safetensors").unlink()
    assert not is_saved(str(out))


def test_s3_round_trip_reuses_the_cache_until_the_model_changes(tokenizer_dir, s3_prefix):
    model, tokenizer = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir, seed=1))
    uri = storage.join(s3_prefix, "cpt", "final")
    save_hf(model, tokenizer, uri)
    assert is_saved(uri)
    names = {u.rsplit("/", 1)[1] for u in storage.list_files(uri)}
    assert {"config.json", "model.safetensors", "tokenizer.json", SAVE_MARKER} <= names

    loaded, loaded_tok = load_causal_lm(ModelConfig(path=uri))
    ids = ids_of(tokenizer)
    model.eval()
    assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert loaded_tok.convert_ids_to_tokens([0, 1, 4]) == ["<|endoftext|>", "<|pad|>", "<image>"]
    first = fetch_model_dir(uri)
    assert fetch_model_dir(uri) == first  # unchanged upload: the cached copy is reused

    changed, _ = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir, seed=2))
    save_hf(changed, tokenizer, uri)
    assert fetch_model_dir(uri) != first
    reloaded, _ = load_causal_lm(ModelConfig(path=uri))
    assert same_weights(state(reloaded), state(changed))

    with pytest.raises(ConfigError) as err:
        load_causal_lm(ModelConfig(path=storage.join(s3_prefix, "absent")))
    assert err.value.key == "model.path" and "absent" in str(err.value)


def test_gradient_checkpointing_gives_the_same_gradients(tokenizer_dir):
    grads = []
    for checkpointing in (False, True):
        model, tokenizer = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir, gradient_checkpointing=checkpointing))
        model.train()
        assert model.is_activation_checkpointing is checkpointing
        ids = ids_of(tokenizer)
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


@pytest.mark.parametrize("architecture, tied", [("llama", True), ("llama", False), ("qwen2", True), ("qwen2", False)])
def test_matmul_params_match_the_built_model(tokenizer_dir, architecture, tied):
    model, _ = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir, architecture=architecture, tie_word_embeddings=tied))
    embedding = model.get_input_embeddings().weight.numel()
    assert count_params(model) == matmul_params(model.config) + (0 if tied else embedding)
    c = model.config
    assert flops_per_token(c, 128) == 6 * matmul_params(c) + 12 * 2 * 64 * 128


def test_flops_of_a_half_billion_model_shape():
    """Qwen2.5-0.5B's shape, built on the meta device: 494,032,768 parameters (its published count)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert count_params(model) == matmul_params(config) == 494_032_768
    assert flops_per_token(config, 2048) == 6 * 494_032_768 + 12 * 24 * 896 * 2048
    model.model.embed_tokens.requires_grad_(False)
    assert count_params(model, trainable_only=True) == 494_032_768 - 151936 * 896


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_build_on_gpu_trains_and_saves(tokenizer_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    attn = "flash_attention_2" if _has_flash_attn() else "sdpa"
    cfg = ModelConfig(tokenizer=tokenizer_dir, dtype="bfloat16", attn_implementation=attn, hidden_size=128, num_heads=4)
    model, tokenizer = load_causal_lm(cfg, device="cuda")
    again, _ = load_causal_lm(cfg, device="cuda")
    assert next(model.parameters()).device.type == "cuda" and next(model.parameters()).dtype == torch.bfloat16
    assert same_weights(state(model), state(again))
    ids = ids_of(tokenizer).cuda()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert math.isfinite(loss.item()) and model.lm_head.weight.grad is not None
    save_hf(model, tokenizer, str(tmp_path / "gpu"))
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "gpu"), dtype=torch.bfloat16).cuda()
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits.float(), model(input_ids=ids).logits.float(), atol=1e-2)


def _has_flash_attn() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None
