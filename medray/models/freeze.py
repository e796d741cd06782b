"""Which weights train in a stage: freezing policies by name, for the VLM and for a plain causal LM.

The LLaVA recipe trains a new connector alone first (the LLM and the tower
stay as they were, so the connector learns to speak the LLM's language),
then the LLM with the connector, and the tower only on request. A policy is
a name in the stage's config; `apply_freeze` sets `requires_grad` on every
parameter accordingly and returns counts to log, so a wrong stage shows in
the run's parameters rather than in a slow drift of the loss.

A trainable tower still has weights that can never get a gradient: layers
after the one that feeds the connector, and pooling heads or final norms
Llava does not read. They are frozen too (listed under `unused`), because
DDP refuses parameters that receive no gradient and an optimiser would
carry them for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medray.errors import ConfigError

VLM_POLICIES = ("connector", "llm+connector", "all", "none")
LM_POLICIES = ("all", "none")
# policy -> the VLM parts that train (the tower joins any policy but "none" with unfreeze_vision)
_VLM_TRAINS = {"connector": {"connector"}, "llm+connector": {"connector", "llm"},
               "all": {"connector", "llm", "vision_tower"}, "none": set()}


@dataclass
class FreezeConfig:
    policy: str = "all"  # VLM: connector | llm+connector | all | none; causal LM: all | none
    unfreeze_vision: bool = False  # also train the vision tower (VLM only)

    def check(self, is_vlm: bool, prefix: str = "freeze") -> None:
        allowed = VLM_POLICIES if is_vlm else LM_POLICIES
        if self.policy not in allowed:
            model = "a vision-language model" if is_vlm else "a causal LM"
            raise ConfigError(f"{prefix}.policy", f"{self.policy!r} is not a policy for {model}: expected one of {', '.join(allowed)}")
        if self.unfreeze_vision and not is_vlm:
            raise ConfigError(f"{prefix}.unfreeze_vision", "a causal LM has no vision tower")


def is_vlm(model) -> bool:
    return hasattr(getattr(model, "model", None), "vision_tower")


def vlm_parts(model) -> dict[str, torch.nn.Module]:
    """The three parts a VLM policy names; the LLM is its body and its output head."""
    body = model.model
    return {"vision_tower": body.vision_tower, "connector": body.multi_modal_projector,
            "llm": torch.nn.ModuleList([body.language_model, model.get_output_embeddings()])}


def unused_tower_parameters(model) -> list[str]:
    """Tower parameters the image features do not depend on, found by one backward pass on a blank image."""
    body, tower = model.model, model.model.vision_tower
    params = dict(tower.named_parameters())
    before = {name: (p.requires_grad, p.grad) for name, p in params.items()}
    connector = list(body.multi_modal_projector.parameters())
    connector_trains = [p.requires_grad for p in connector]
    size = tower.config.image_size
    h, w = (size, size) if isinstance(size, int) else size
    first = next(iter(params.values()))
    pixels = torch.zeros(1, tower.config.num_channels, h, w, dtype=first.dtype, device=first.device)
    try:
        for p in connector:
            p.requires_grad_(False)  # gradients pass through it to the tower without landing on it
        for p in params.values():
            p.requires_grad_(True)
            p.grad = None
        with torch.enable_grad():
            features = body.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
            torch.stack([f.float().sum() for f in features]).sum().backward()
        return sorted(name for name, p in params.items() if p.grad is None)
    finally:
        for p, trains in zip(connector, connector_trains):
            p.requires_grad_(trains)
        for name, p in params.items():
            p.requires_grad_(before[name][0])
            p.grad = before[name][1]


def _counts(module: torch.nn.Module) -> dict[str, int]:
    out = {"trainable": 0, "frozen": 0}
    for p in module.parameters():
        out["trainable" if p.requires_grad else "frozen"] += p.numel()
    return out


def apply_freeze(model, policy: str = "all", unfreeze_vision: bool = False) -> dict:
    """Set `requires_grad` as `policy` says; returns {policy, trainable, frozen, by_module, unused}."""
    vlm = is_vlm(model)
    FreezeConfig(policy, unfreeze_vision).check(vlm)
    unused: list[str] = []
    if not vlm:
        model.requires_grad_(policy == "all")
        by_module = {"llm": _counts(model)}
    else:
        parts = vlm_parts(model)
        trains = set(_VLM_TRAINS[policy])
        if unfreeze_vision and policy != "none":
            trains.add("vision_tower")
        for name, part in parts.items():
            part.requires_grad_(name in trains)
        if "vision_tower" in trains:
            unused = unused_tower_parameters(model)
            params = dict(parts["vision_tower"].named_parameters())
            for name in unused:
                params[name].requires_grad_(False)
        by_module = {name: _counts(part) for name, part in parts.items()}
    totals = _counts(model)
    return {"policy": policy, "unfreeze_vision": unfreeze_vision, **totals, "by_module": by_module, "unused": unused}
