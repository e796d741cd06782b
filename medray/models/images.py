"""Images to `pixel_values` for a vision tower, with no hub and the same numbers `transformers` gives.

The tower fixes the input: a square of `image_size` pixels, RGB, scaled to
[0, 1] and normalised with the mean and std it was trained with (CLIP's own,
0.5/0.5 for SigLIP and ViT). `ImagePreprocessor` does exactly that from PIL
images, NumPy arrays, encoded bytes or file paths (local or s3://), and
`hf_image_processor` writes the same settings as a `transformers` image
processor so that a saved VLM preprocesses identically under `AutoProcessor`
and vLLM. Medical images are often 16-bit or float: those are rescaled
per image to 0..255 (min to max) before the usual 8-bit path.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medray import storage
from medray.errors import MedrayError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
# kind -> (mean, std, PIL resample name); the defaults of each tower's own image processor.
TOWER_DEFAULTS = {
    "clip": (CLIP_MEAN, CLIP_STD, "BICUBIC"),
    "siglip": (HALF, HALF, "BICUBIC"),
    "vit": (HALF, HALF, "BILINEAR"),
}


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating) and values.min() >= 0.0 and values.max() <= 1.0:
        return np.round(values * 255.0).astype(np.uint8)
    low, high = values.min(), values.max()  # 12/16-bit scans and other ranges: stretch per image
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((values - low) * scale).astype(np.uint8)


def to_rgb(image):
    """A PIL RGB image from a PIL image, an HxW / HxWxC array, encoded bytes or a path (local or s3://)."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        try:
            image = storage.read_bytes(str(image))
        except MedrayError:
            raise MedrayError(f"{image}: image file not found") from None
    if isinstance(image, (bytes, bytearray)):
        try:
            image = Image.open(io.BytesIO(image))
            image.load()
        except OSError as err:
            raise MedrayError(f"not a readable image ({err})") from None
    if isinstance(image, Image.Image):
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            image = np.asarray(image)
        else:
            return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        array = _to_uint8(image)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)):
            return Image.fromarray(array).convert("RGB")
        raise MedrayError(f"image array of shape {image.shape}: expected HxW or HxWxC with C in 1, 3, 4")
    raise MedrayError(f"cannot read an image from a {type(image).__name__}")


@dataclass(frozen=True)
class ImagePreprocessor:
    """Callable: one image -> float tensor [3, image_size, image_size]; `batch` stacks several."""

    image_size: int
    mean: tuple[float, float, float] = HALF
    std: tuple[float, float, float] = HALF
    resample: str = "BICUBIC"

    @classmethod
    def for_tower(cls, kind: str, image_size: int) -> ImagePreprocessor:
        if kind not in TOWER_DEFAULTS:
            raise MedrayError(f"unknown vision tower kind {kind!r}: expected one of {', '.join(TOWER_DEFAULTS)}")
        mean, std, resample = TOWER_DEFAULTS[kind]
        return cls(image_size, mean, std, resample)

    def __call__(self, image) -> torch.Tensor:
        from PIL import Image

        rgb = to_rgb(image)
        size = (self.image_size, self.image_size)
        if rgb.size != size:
            rgb = rgb.resize(size, resample=getattr(Image.Resampling, self.resample))
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / np.float32(255.0))
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        return ((pixels - mean) / std).permute(2, 0, 1).contiguous()

    def batch(self, images: Sequence) -> torch.Tensor:
        """[N, 3, S, S] in the order given (the order their placeholders appear in the batch)."""
        if not len(images):
            return torch.empty(0, 3, self.image_size, self.image_size)
        return torch.stack([self(image) for image in images])


def hf_image_processor(pre: ImagePreprocessor):
    """The same preprocessing as a `transformers` image processor, saved beside a VLM for serving."""
    from transformers.image_utils import PILImageResampling
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    size = {"height": pre.image_size, "width": pre.image_size}
    return CLIPImageProcessorPil(
        do_resize=True, size=size, resample=getattr(PILImageResampling, pre.resample),
        do_center_crop=False, crop_size=size, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=list(pre.mean), image_std=list(pre.std), do_convert_rgb=True,
    )
