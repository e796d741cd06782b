"""Image preprocessing: the tower's normalisation, every input kind, and the same numbers as transformers."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from medray import storage
from medray.errors import MedrayError
from medray.models.images import CLIP_MEAN, CLIP_STD, ImagePreprocessor, hf_image_processor


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (45, 61, 3), dtype=np.uint8)


def test_normalisation_uses_the_towers_mean_and_std():
    white = np.full((16, 16, 3), 255, dtype=np.uint8)
    clip = ImagePreprocessor.for_tower("clip", 16)(white)
    assert clip.shape == (3, 16, 16) and clip.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(clip[c], torch.full((16, 16), (1 - CLIP_MEAN[c]) / CLIP_STD[c]))
    black = ImagePreprocessor.for_tower("siglip", 16)(np.zeros((16, 16, 3), dtype=np.uint8))
    assert torch.equal(black, torch.full((3, 16, 16), -1.0))
    with pytest.raises(MedrayError, match="unknown vision tower kind"):
        ImagePreprocessor.for_tower("resnet", 16)


@pytest.mark.parametrize("kind", ["clip", "siglip", "vit"])
def test_matches_the_transformers_image_processor_it_saves(photo, kind):
    pre = ImagePreprocessor.for_tower(kind, 32)
    ours = pre.batch([photo, Image.fromarray(photo[:20])])
    theirs = hf_image_processor(pre)(images=[photo, photo[:20]], return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape == (2, 3, 32, 32)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_every_input_kind_gives_the_same_pixels(photo, tmp_path, s3_prefix):
    pre = ImagePreprocessor.for_tower("siglip", 24)
    expected = pre(Image.fromarray(photo))
    data = png_bytes(Image.fromarray(photo))
    (tmp_path / "scan.png").write_bytes(data)
    storage.atomic_write_bytes(storage.join(s3_prefix, "scan.png"), data)
    for source in (photo, data, str(tmp_path / "scan.png"), tmp_path / "scan.png", storage.join(s3_prefix, "scan.png"),
                   torch.from_numpy(photo), np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])):
        assert torch.equal(pre(source), expected), type(source).__name__


def test_grey_sixteen_bit_and_float_images_become_rgb():
    pre = ImagePreprocessor.for_tower("siglip", 8)
    grey = np.tile(np.arange(8, dtype=np.uint8) * 30, (8, 1))
    out = pre(grey)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert torch.equal(out[0, 0], torch.tensor(grey[0] / 255.0, dtype=torch.float32) * 2 - 1)
    deep = grey.astype(np.uint16) * 100 + 1000  # a 16-bit scan: stretched from its min to its max
    stretched = pre(deep)[0, 0]
    assert stretched[0] == -1.0 and stretched[-1] == 1.0
    assert torch.equal(pre(Image.fromarray(deep.astype(np.uint16))), pre(deep))
    assert torch.equal(pre(grey.astype(np.float32) / 255.0), out)
    assert pre.batch([]).shape == (0, 3, 8, 8)


def test_unreadable_inputs_say_what_is_wrong(tmp_path):
    pre = ImagePreprocessor.for_tower("siglip", 8)
    with pytest.raises(MedrayError, match="image file not found"):
        pre(str(tmp_path / "missing.png"))
    with pytest.raises(MedrayError, match="not a readable image"):
        pre(b"not an image")
    with pytest.raises(MedrayError, match="shape"):
        pre(np.zeros((4, 4, 2), dtype=np.uint8))
