"""MedTrim's encoders: shapes and unit norms, grey radiographs in, freezing, save/load, the packaged MiniLM."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medray.errors import ConfigError, MedrayError
from medray.medtrim.model import (
    ImageEncoderConfig,
    MedTrimModel,
    MedTrimModelConfig,
    TextEncoderConfig,
    build_text_tokenizer,
    preprocess_images,
    tokenize_texts,
)
from medray.models.images import ImagePreprocessor

REPORTS = ["Small left pleural effusion.", "Heart size is normal. No pneumothorax.",
           "Moderate cardiomegaly with mild edema.", "Large right pneumothorax."]


def grey_images(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def tiny_config(**image) -> MedTrimModelConfig:
    cfg = MedTrimModelConfig.tiny(image_size=64, proj_dim=16)
    cfg.image.patch_size = 16
    for key, value in image.items():
        setattr(cfg.image, key, value)
    return cfg


@pytest.fixture(scope="module")
def tiny():
    cfg = tiny_config()
    model = MedTrimModel(cfg).eval()
    return model, build_text_tokenizer(cfg)


def embed(model, tokenizer, images, texts):
    with torch.no_grad():
        return model(preprocess_images(images, model.preprocessor), **tokenize_texts(tokenizer, texts))


def test_forward_gives_unit_vectors_of_proj_dim(tiny):
    model, tokenizer = tiny
    image, text = embed(model, tokenizer, grey_images(4), REPORTS)
    assert image.shape == text.shape == (4, 16)
    assert torch.allclose(image.norm(dim=-1), torch.ones(4), atol=1e-6)
    assert torch.allclose(text.norm(dim=-1), torch.ones(4), atol=1e-6)
    assert torch.cdist(image, image).triu(1).sum() > 0  # different inputs, different embeddings
    only_image, no_text = model(pixel_values=preprocess_images(grey_images(2), model.preprocessor))
    assert only_image.shape == (2, 16) and no_text is None


def test_an_embedding_does_not_depend_on_its_batch(tiny):
    model, tokenizer = tiny
    images = grey_images(3, seed=5)
    batched, texts = embed(model, tokenizer, images, REPORTS[:3])
    alone, text_alone = embed(model, tokenizer, images[1], REPORTS[1:2])  # one image, one (unpadded) report
    assert torch.allclose(batched[1], alone[0], atol=1e-5)
    assert torch.allclose(texts[1], text_alone[0], atol=1e-5)


def test_grey_uint8_images_become_the_towers_three_normalised_channels():
    pre = ImagePreprocessor.for_tower("vit", 224)  # mean = std = 0.5: 0 -> -1, 255 -> +1
    images = grey_images(3, seed=1)
    images[0, :2, :2] = [[0, 255], [255, 0]]
    pixels = preprocess_images(images, pre)
    assert pixels.shape == (3, 3, 224, 224) and pixels.dtype == torch.float32
    assert pixels[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0] and pixels[0, :, 0, 1].tolist() == [1.0, 1.0, 1.0]
    assert torch.equal(pixels[:, 0], pixels[:, 2])  # grey repeated, not tinted
    # the batched path gives the numbers of the one-image-at-a-time preprocessor
    assert torch.allclose(pixels, pre.batch(list(images)), atol=1e-6)
    assert torch.equal(preprocess_images(list(images), pre), pixels)
    assert torch.equal(preprocess_images(images[2], pre), pixels[2:])


def test_resizing_matches_pil_to_within_one_grey_level():
    pre = ImagePreprocessor.for_tower("vit", 64)
    images = np.stack([np.tile(np.linspace(0, 255, 224, dtype=np.uint8), (224, 1)), grey_images(1, seed=2)[0]])
    ours, pil = preprocess_images(images, pre), pre.batch(list(images))
    assert ours.shape == (2, 3, 64, 64)
    assert (ours[0] - pil[0]).abs().max().item() <= 2 / 255 / 0.5 + 1e-6  # smooth ramp: at most a rounding step
    assert (ours - pil).abs().mean().item() < 0.02  # noise: same on average


def test_other_inputs_fall_back_to_the_per_image_preprocessor():
    pre = ImagePreprocessor.for_tower("vit", 32)
    colour = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert torch.equal(preprocess_images(colour, pre), pre.batch([colour]))
    sixteen_bit = np.random.default_rng(4).integers(0, 4096, (40, 40), dtype=np.uint16)
    assert torch.equal(preprocess_images([sixteen_bit], pre), pre.batch([sixteen_bit]))
    with pytest.raises(MedrayError, match="not a readable image"):
        preprocess_images([b"not an image"], pre)


def test_save_and_load_give_identical_embeddings(tiny, tmp_path):
    model, tokenizer = tiny
    out = model.save(tmp_path / "medtrim")
    loaded = MedTrimModel.load(out).eval()
    before = embed(model, tokenizer, grey_images(3, seed=7), REPORTS[:3])
    after = embed(loaded, build_text_tokenizer(loaded.config), grey_images(3, seed=7), REPORTS[:3])
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert loaded.preprocessor == model.preprocessor
    assert loaded.config.proj_dim == 16 and loaded.config.image.pooling == "cls"
    assert loaded.parameter_counts() == model.parameter_counts()
    with pytest.raises(MedrayError, match="not a saved MedTrim model"):
        MedTrimModel.load(tmp_path / "nothing")


def test_save_and_load_through_s3(tiny, s3_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDRAY_CACHE_DIR", str(tmp_path / "cache"))
    model, tokenizer = tiny
    out = model.save(f"{s3_prefix}/medtrim")
    loaded = MedTrimModel.load(out).eval()
    before = embed(model, tokenizer, grey_images(2, seed=8), REPORTS[:2])
    after = embed(loaded, build_text_tokenizer(loaded.config), grey_images(2, seed=8), REPORTS[:2])
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


@pytest.mark.parametrize("kind, pooling", [("vit", "cls"), ("vit", "mean"), ("clip", "cls"), ("siglip", "mean")])
def test_every_trainable_parameter_gets_a_gradient(kind, pooling):
    """DDP refuses trainable parameters without a gradient: unused pooler and head must be frozen."""
    model = MedTrimModel(tiny_config(kind=kind, pooling=pooling, image_size=32))
    image, text = model(preprocess_images(grey_images(2, 32), model.preprocessor),
                        **tokenize_texts(build_text_tokenizer(model.config), REPORTS[:2]))
    (image * text).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name in dict(model.named_parameters()) if ".pooler." in name or ".head." in name}


def test_trainable_layers_freeze_everything_before_the_last_n():
    cfg = tiny_config()
    cfg.image.trainable_layers, cfg.text.trainable_layers = 1, 0
    model = MedTrimModel(cfg)
    trains = {name for name, p in model.named_parameters() if p.requires_grad}
    assert not any(name.startswith("text_tower.") for name in trains)  # 0: the whole text tower is frozen
    assert {"image_proj.weight", "text_proj.weight"} <= trains
    assert any(name.startswith("image_tower.layers.1.") for name in trains)
    assert "image_tower.layernorm.weight" in trains  # the final norm after the last layer trains with it
    assert not any(name.startswith(("image_tower.layers.0.", "image_tower.embeddings.")) for name in trains)
    counts = model.parameter_counts()
    assert counts["text_tower"]["trainable"] == 0
    assert counts["total"]["trainable"] == sum(model.get_parameter(n).numel() for n in trains)


@pytest.mark.parametrize("change, key", [
    (lambda c: setattr(c.image, "pooling", "max"), "model.image.pooling"),
    (lambda c: (setattr(c.image, "kind", "siglip"), setattr(c.image, "pooling", "cls")), "model.image.pooling"),
    (lambda c: setattr(c.image, "trainable_layers", 5), "model.image.trainable_layers"),
    (lambda c: setattr(c.image, "patch_size", 24), "model.image.patch_size"),
    (lambda c: setattr(c.text, "trainable_layers", -2), "model.text.trainable_layers"),
    (lambda c: setattr(c.text, "path", "/nonexistent/bert"), "model.text.path"),
    (lambda c: setattr(c.text, "num_heads", 5), "model.text.num_heads"),
    (lambda c: setattr(c, "proj_dim", 0), "model.proj_dim"),
])
def test_config_errors_name_the_key_before_anything_loads(change, key):
    cfg = tiny_config()
    change(cfg)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        MedTrimModel(cfg)


def test_packaged_minilm_loads_offline_and_ranks_paraphrases_closer():
    start = time.perf_counter()
    cfg = MedTrimModelConfig(image=ImageEncoderConfig(image_size=32, patch_size=16, hidden_size=32, num_layers=1,
                                                      num_heads=2, intermediate_size=32), text=TextEncoderConfig())
    model = MedTrimModel(cfg).eval()
    tokenizer = build_text_tokenizer(cfg)
    assert model.text_tower.config.hidden_size == 384 and model.text_tower.config.num_hidden_layers == 6
    texts = ["left pleural effusion", "pleural effusion on the left", "normal heart size"]
    with torch.no_grad():
        pooled = F.normalize(model.text_features(**tokenize_texts(tokenizer, texts)), dim=-1)
    paraphrase, unrelated = (pooled[0] @ pooled[1]).item(), (pooled[0] @ pooled[2]).item()
    assert paraphrase > unrelated + 0.2, (paraphrase, unrelated)
    # the pooled output is all-MiniLM-L6-v2's own sentence embedding
    from medray.met.embed import Embedder

    reference = torch.from_numpy(Embedder().encode(texts)).float()
    assert torch.allclose(pooled, reference, atol=1e-5)
    assert time.perf_counter() - start < 20
