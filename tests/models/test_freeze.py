"""Freezing policies: requires_grad exactly as named, and a training step moves only what trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medray.errors import ConfigError
from medray.models.causal_lm import ModelConfig, load_causal_lm
from medray.models.flops import count_params
from medray.models.freeze import apply_freeze, vlm_parts
from medray.models.vlm import (
    VisionConfig,
    VLMConfig,
    expand_image_placeholders,
    image_tokens_per_image,
    load_vlm,
)


@pytest.fixture(scope="module")
def vlm_bundle(tokenizer_dir):
    return load_vlm(VLMConfig(llm=ModelConfig(tokenizer=tokenizer_dir, tie_word_embeddings=False),
                              vision=VisionConfig(kind="clip")))


def part_of(vlm) -> dict[str, str]:
    """Parameter name -> the part that holds it."""
    owner = {}
    for part, module in vlm_parts(vlm).items():
        ids = {id(p) for p in module.parameters()}
        for name, p in vlm.named_parameters():
            if id(p) in ids:
                owner[name] = part
    return owner


def image_batch(vlm, tokenizer, pre):
    n = image_tokens_per_image(vlm.config)
    ids, labels = expand_image_placeholders(tokenizer("Chest film <image> shows a small effusion")["input_ids"],
                                            tokenizer("Chest film <image> shows a small effusion")["input_ids"], n)
    rng = np.random.default_rng(0)
    pixels = pre.batch([rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)])
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "pixel_values": pixels}


@pytest.mark.parametrize("policy, unfreeze_vision, trains", [
    ("connector", False, {"connector"}),
    ("connector", True, {"connector", "vision_tower"}),
    ("llm+connector", False, {"connector", "llm"}),
    ("llm+connector", True, {"connector", "llm", "vision_tower"}),
    ("all", False, {"connector", "llm", "vision_tower"}),
    ("none", True, set()),
])
def test_vlm_policies_set_requires_grad_and_a_step_moves_only_what_trains(vlm_bundle, policy, unfreeze_vision, trains):
    vlm, tokenizer, pre = vlm_bundle
    summary = apply_freeze(vlm, policy, unfreeze_vision)
    owner = part_of(vlm)
    unused = {f"model.vision_tower.{name}" for name in summary["unused"]}
    assert bool(unused) == ("vision_tower" in trains)
    # feature_layer -2: the tower's last layer and its post-layernorm never reach the connector.
    assert all(".encoder.layers.1." in name or ".post_layernorm." in name for name in unused)
    for name, p in vlm.named_parameters():
        assert p.requires_grad == (owner[name] in trains and name not in unused), name
    assert summary["trainable"] + summary["frozen"] == count_params(vlm)
    assert summary["trainable"] == count_params(vlm, trainable_only=True)
    assert sum(m["trainable"] for m in summary["by_module"].values()) == summary["trainable"]
    if not trains:
        return

    before = {n: p.detach().clone() for n, p in vlm.named_parameters()}
    # An optimiser over every parameter, with weight decay: frozen ones must still not move.
    optimizer = torch.optim.AdamW(vlm.parameters(), lr=1e-2, weight_decay=0.1)
    vlm.train()
    vlm(**image_batch(vlm, tokenizer, pre)).loss.backward()
    for name, p in vlm.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name  # every trainable weight gets a gradient (DDP-safe)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for name, p in vlm.named_parameters():
        assert torch.equal(p, before[name]) != p.requires_grad, name
    with torch.no_grad():  # put the shared model back for the next case
        for name, p in vlm.named_parameters():
            p.copy_(before[name])


def test_causal_lm_policies_and_errors(tokenizer_dir, vlm_bundle):
    model, tokenizer = load_causal_lm(ModelConfig(tokenizer=tokenizer_dir))
    summary = apply_freeze(model, "none")
    assert summary["trainable"] == 0 and summary["frozen"] == count_params(model)
    assert not any(p.requires_grad for p in model.parameters())
    summary = apply_freeze(model, "all")
    assert summary["frozen"] == 0 and all(p.requires_grad for p in model.parameters())
    assert summary["by_module"] == {"llm": {"trainable": count_params(model), "frozen": 0}}
    with pytest.raises(ConfigError) as err:
        apply_freeze(model, "connector")
    assert err.value.key == "freeze.policy" and "causal LM" in str(err.value)
    with pytest.raises(ConfigError) as err:
        apply_freeze(model, "all", unfreeze_vision=True)
    assert err.value.key == "freeze.unfreeze_vision"
    with pytest.raises(ConfigError) as err:
        apply_freeze(vlm_bundle[0], "projector")
    assert err.value.key == "freeze.policy" and "connector, llm+connector, all, none" in str(err.value)
