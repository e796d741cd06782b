"""The vision-language model: image features land exactly on the placeholders; the LLM is the given one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.models.causal_lm import ModelConfig, load_causal_lm
from medray.models.hf_io import is_saved
from medray.models.vlm import (
    IMAGE_TOKEN_ID,
    VisionConfig,
    VLMConfig,
    check_image_placeholders,
    expand_image_placeholders,
    image_tokens_per_image,
    load_vision_tower,
    load_vlm,
    save_vlm,
)

PAD = 1


def vlm_config(tokenizer_dir, kind="siglip", **kw) -> VLMConfig:
    return VLMConfig(llm=ModelConfig(tokenizer=tokenizer_dir, seed=3), vision=VisionConfig(kind=kind, seed=4), **kw)


def images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (20 + 7 * i, 30, 3), dtype=np.uint8) for i in range(count)]


def batch_with_images(tokenizer, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows, three images: row 0 holds two (at different offsets), row 1 one, right-padded."""
    rows = [f"{tokenizer.eos_token}Chest radiograph <image> shows effusion, and the lateral view <image> agrees",
            "Prior study for comparison: left lung clear <image>"]
    ids = [expand_image_placeholders(tokenizer(r)["input_ids"], None, n)[0] for r in rows]
    width = max(map(len, ids))
    input_ids = torch.full((2, width), PAD)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return input_ids, mask


def placeholder_runs(input_ids: torch.Tensor, token: int) -> list[tuple[int, int, int]]:
    """(row, start, end) of each run of image tokens, in row-major order."""
    runs = []
    for row, values in enumerate(input_ids.tolist()):
        col = 0
        while col < len(values):
            if values[col] == token:
                start = col
                while col < len(values) and values[col] == token:
                    col += 1
                runs.append((row, start, col))
            else:
                col += 1
    return runs


@pytest.mark.parametrize("kind, strategy", [("siglip", None), ("clip", "default"), ("clip", "full"), ("vit", "default")])
def test_image_features_land_exactly_on_the_placeholders(tokenizer_dir, kind, strategy):
    vlm, tokenizer, pre = load_vlm(vlm_config(tokenizer_dir, kind, select_strategy=strategy))
    vlm.eval()
    n = image_tokens_per_image(vlm.config)
    assert n == 16 + (kind == "clip" and strategy == "full")
    input_ids, mask = batch_with_images(tokenizer, n)
    runs = placeholder_runs(input_ids, IMAGE_TOKEN_ID)
    assert [(r, e - s) for r, s, e in runs] == [(0, n), (0, n), (1, n)] and runs[0][1] != runs[2][1]
    pixel_values = pre.batch(images(3))

    seen = {}
    hook = vlm.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(embeds=kwargs["inputs_embeds"].detach().clone()), with_kwargs=True)
    with torch.no_grad():
        vlm(input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values)
        hidden = vlm.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[-2]
        if vlm.config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]  # the CLS token
        features = vlm.model.multi_modal_projector(hidden)
        token_rows = vlm.get_input_embeddings()(input_ids)
    hook.remove()

    embeds = seen["embeds"]
    assert features.shape == (3, n, vlm.config.text_config.hidden_size)
    is_image = torch.zeros_like(input_ids, dtype=torch.bool)
    for image, (row, start, end) in enumerate(runs):
        assert torch.equal(embeds[row, start:end], features[image]), f"image {image}"
        is_image[row, start:end] = True
    assert torch.equal(embeds[~is_image], token_rows[~is_image])
    assert not torch.equal(features[0], features[1])  # different images really give different rows


def test_placeholder_counts_that_do_not_match_the_images_are_refused(tokenizer_dir):
    vlm, tokenizer, pre = load_vlm(vlm_config(tokenizer_dir))
    n = image_tokens_per_image(vlm.config)
    input_ids, mask = batch_with_images(tokenizer, n)
    with pytest.raises(MedrayError, match=rf"{3 * n} image placeholder tokens but 2 image\(s\) of {n} tokens"):
        vlm(input_ids=input_ids, attention_mask=mask, pixel_values=pre.batch(images(2)))
    with pytest.raises(MedrayError, match=rf"{3 * n} image placeholder tokens but 0 image"):
        vlm(input_ids=input_ids, attention_mask=mask)
    cut = torch.tensor([[5] + [IMAGE_TOKEN_ID] * (n - 2) + [6] + [IMAGE_TOKEN_ID] * (n + 2)])
    with pytest.raises(MedrayError, match=rf"run of {n - 2} tokens is not a whole number of images"):
        check_image_placeholders(cut, 2, n)
    check_image_placeholders(torch.tensor([[5] + [IMAGE_TOKEN_ID] * (2 * n) + [6]]), 2, n)  # two adjacent images


def test_expand_image_placeholders_and_token_counts():
    ids, labels = expand_image_placeholders([7, 4, 8, 4], [7, 4, 8, 9], 3)
    assert ids == [7, 4, 4, 4, 8, 4, 4, 4]
    assert labels == [7, -100, -100, -100, 8, -100, -100, -100]
    assert expand_image_placeholders([4, 5], None, 2) == ([4, 4, 5], None)
    with pytest.raises(MedrayError, match="differ in length"):
        expand_image_placeholders([4, 5], [1], 2)
    square = dict(image_size=56, patch_size=14)
    assert image_tokens_per_image(VLMConfig(vision=VisionConfig(kind="siglip", **square))) == 16
    assert image_tokens_per_image(VLMConfig(vision=VisionConfig(kind="clip", **square))) == 16
    assert image_tokens_per_image(VLMConfig(vision=VisionConfig(kind="clip", **square), select_strategy="full")) == 17
    assert image_tokens_per_image(VLMConfig(vision=VisionConfig(kind="vit", **square))) == 16


def test_the_assembled_llm_and_tower_are_the_given_ones(tokenizer_dir):
    cfg = vlm_config(tokenizer_dir)
    vlm, tokenizer, _ = load_vlm(cfg)
    llm, _ = load_causal_lm(cfg.llm)
    tower, _ = load_vision_tower(cfg.vision)
    vlm.eval()
    llm.eval()
    ids = torch.tensor([tokenizer("Pleural effusion with cardiomegaly, no pneumothorax")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(vlm(input_ids=ids).logits, llm(input_ids=ids).logits)
    tower_state = tower.state_dict()
    assert all(torch.equal(v, tower_state[k]) for k, v in vlm.model.vision_tower.state_dict().items())
    assert vlm.config.image_token_id == tokenizer.convert_tokens_to_ids("<image>") == IMAGE_TOKEN_ID
    assert vlm.config.text_config.pad_token_id == PAD and vlm.generation_config.eos_token_id == 0


def test_saved_vlm_loads_with_transformers_processor_and_s3(tokenizer_dir, tmp_path, s3_prefix):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    vlm, tokenizer, pre = load_vlm(vlm_config(tokenizer_dir, "clip"))
    vlm.eval()
    out = str(tmp_path / "vlm")
    save_vlm(vlm, tokenizer, out, pre)
    assert is_saved(out)
    loaded = LlavaForConditionalGeneration.from_pretrained(out, local_files_only=True)
    n = image_tokens_per_image(loaded.config)
    input_ids, mask = batch_with_images(tokenizer, n)
    pixel_values = pre.batch(images(3))
    with torch.no_grad():
        expected = vlm(input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values).logits
        assert torch.equal(loaded(input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values).logits, expected)

    processor = AutoProcessor.from_pretrained(out, local_files_only=True)
    prompt = "Chest radiograph <image> shows effusion"
    inputs = processor(images=images(1), text=prompt, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == expand_image_placeholders(tokenizer(prompt)["input_ids"], None, n)[0]
    assert torch.equal(inputs["pixel_values"][0], pre(images(1)[0]))
    generated = loaded.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4

    uri = storage.join(s3_prefix, "vlm")
    save_vlm(vlm, tokenizer, uri, pre)
    from_s3, tok_s3, pre_s3 = load_vlm(VLMConfig(path=uri))
    from_s3.eval()
    assert pre_s3 == pre and len(tok_s3) == len(tokenizer)
    with torch.no_grad():
        assert torch.equal(from_s3(input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values).logits, expected)
    with pytest.raises(MedrayError, match="image placeholder tokens"):
        from_s3(input_ids=input_ids, pixel_values=pixel_values[:1])
    # The placeholder check runs on every forward of our models, generation's cached steps included.
    assert torch.equal(from_s3.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False), generated)


def test_vlm_config_errors_name_the_key(tokenizer_dir, tmp_path):
    base = dict(llm=ModelConfig(tokenizer=tokenizer_dir))
    cases = [
        (VLMConfig(vision=VisionConfig(path=str(tmp_path / "no-tower")), **base), "model.vision.path"),
        (VLMConfig(vision=VisionConfig(kind="resnet"), **base), "model.vision.kind"),
        (VLMConfig(vision=VisionConfig(image_size=30, patch_size=8), **base), "model.vision.patch_size"),
        (VLMConfig(select_strategy="cls", **base), "model.select_strategy"),
        (VLMConfig(feature_layer=-5, **base), "model.feature_layer"),
        (VLMConfig(llm=ModelConfig(vocab_size=400)), "model.llm.tokenizer"),
        (VLMConfig(llm=ModelConfig(tokenizer=tokenizer_dir, num_heads=5)), "model.llm.num_heads"),
        (VLMConfig(path=str(tmp_path / "no-vlm")), "model.path"),
    ]
    for cfg, key in cases:
        with pytest.raises(ConfigError) as err:
            load_vlm(cfg)
        assert err.value.key == key, (key, str(err.value))


def test_a_tower_path_must_hold_the_named_kind(tokenizer_dir, tmp_path):
    tower, _ = load_vision_tower(VisionConfig(kind="clip"))
    tower.save_pretrained(str(tmp_path / "clip"))
    loaded, pre = load_vision_tower(VisionConfig(kind="clip", path=str(tmp_path / "clip")))
    assert all(torch.equal(v, tower.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert pre.mean == (0.48145466, 0.4578275, 0.40821073)
    with pytest.raises(MedrayError, match="not a siglip vision tower"):
        load_vision_tower(VisionConfig(kind="siglip", path=str(tmp_path / "clip")))


def test_a_full_siglip_checkpoint_gives_its_vision_half_and_its_normalisation(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    full = SiglipModel(SiglipConfig(text_config=dict(small, vocab_size=100),
                                    vision_config=dict(small, image_size=32, patch_size=8)))
    full.save_pretrained(str(tmp_path / "siglip"))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    (tmp_path / "siglip" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": mean, "image_std": std, "resample": 2}))
    tower, pre = load_vision_tower(VisionConfig(kind="siglip", path=str(tmp_path / "siglip")))
    assert type(tower).__name__ == "SiglipVisionModel"
    expected = full.vision_model.state_dict()
    assert all(torch.equal(v, expected[k.removeprefix("vision_model.")]) for k, v in tower.state_dict().items())
    assert (pre.image_size, pre.mean, pre.std, pre.resample) == (32, tuple(mean), tuple(std), "BILINEAR")
