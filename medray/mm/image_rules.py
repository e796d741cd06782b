"""Stage-1 image checks: decode, size and aspect, and a perceptual hash for near-duplicate images.

The hash is computed on a small grey copy, so re-encodes, rescales and mild noise of one
radiograph land within a few bits of each other while different studies land far apart.
`dct` is the classic pHash (the signs of the lowest DCT frequencies against their median);
`dhash` compares neighbouring pixels of a (n+1) x n thumbnail (cheaper, a little less robust).

Near-duplicate search splits each hash into `max_distance + 1` bands: two hashes within that
Hamming distance agree on at least one whole band (pigeonhole), so only pairs sharing a band are
compared and the search is exact without comparing every pair.
"""

from __future__ import annotations

import concurrent.futures
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dctn

from medray import storage
from medray.mm.mm_settings import ImageRulesConfig


@dataclass(frozen=True)
class ImageInfo:
    """What stage 1 needs of one image; `problem` is set (and the rest empty) when it does not decode."""

    width: int = 0
    height: int = 0
    hash: int | None = None
    problem: str | None = None


def _grey(image) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode in ("I;16", "I;16B", "I", "F"):  # 16-bit radiographs: rescale before 8-bit grey
        arr = np.asarray(image, dtype=np.float64)
        span = arr.max() - arr.min()
        arr = (arr - arr.min()) / span * 255.0 if span > 0 else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8))
    return image.convert("L")


def dct_hash(image, hash_size: int = 8) -> int:
    """pHash: DCT of a 4n x 4n grey thumbnail; bit = lowest n x n coefficient above their median (DC left out)."""
    side = hash_size * 4
    thumb = np.asarray(_grey(image).resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(thumb, type=2, norm="ortho")[:hash_size, :hash_size].ravel()
    bits = low > np.median(low[1:])
    return _pack(bits)


def difference_hash(image, hash_size: int = 8) -> int:
    """dHash: bit = pixel brighter than its right neighbour on an (n+1) x n grey thumbnail."""
    thumb = np.asarray(_grey(image).resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS), dtype=np.int16)
    return _pack((thumb[:, 1:] > thumb[:, :-1]).ravel())


def _pack(bits: np.ndarray) -> int:
    return int("".join("1" if b else "0" for b in bits), 2)


def image_hash(image, kind: str = "dct", hash_size: int = 8) -> int:
    return dct_hash(image, hash_size) if kind == "dct" else difference_hash(image, hash_size)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def inspect_image(uri: str, cfg: ImageRulesConfig) -> ImageInfo:
    """Decode fully (a truncated file fails here, not in a later stage) and hash; never raises."""
    try:
        with Image.open(io.BytesIO(storage.read_bytes(uri))) as img:
            img.load()
            width, height = img.size
            digest = image_hash(img, cfg.hash, cfg.hash_size)
    except Exception as err:  # PIL and storage raise many types; each means "this image is unusable"
        return ImageInfo(problem=f"{type(err).__name__}: {err}"[:300])
    return ImageInfo(width, height, digest)


def inspect_images(uris: Sequence[str], cfg: ImageRulesConfig) -> list[ImageInfo]:
    """`inspect_image` for each uri, in order, on `cfg.threads` threads (the work waits on storage)."""
    with concurrent.futures.ThreadPoolExecutor(cfg.threads) as pool:
        return list(pool.map(lambda u: inspect_image(u, cfg), uris))


def size_rule(info: ImageInfo, cfg: ImageRulesConfig) -> tuple[str, str] | None:
    """(rule, detail) for an image too small or too elongated; None when it passes."""
    if info.width < cfg.min_width or info.height < cfg.min_height:
        return "image_too_small", f"{info.width}x{info.height} < {cfg.min_width}x{cfg.min_height}"
    aspect = info.width / info.height
    if not cfg.min_aspect <= aspect <= cfg.max_aspect:
        return "aspect_ratio", f"width/height {aspect:.3f} outside [{cfg.min_aspect}, {cfg.max_aspect}]"
    return None


def near_duplicates(ids: Sequence[str], hashes: Sequence[int], max_distance: int, bits: int = 64) -> dict[str, tuple[str, int]]:
    """id -> (the kept id it duplicates, distance) for every image within `max_distance` of an earlier kept one.

    Images are taken in `ids` order: the first of a group is kept, later ones map to it. Only
    kept images act as representatives, so a chain a~b~c with a, c far apart keeps c.
    """
    if max_distance < 0:
        return {}
    n_bands = max_distance + 1
    edges = np.linspace(0, bits, n_bands + 1).astype(int)
    bands: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(n_bands)]
    kept: list[int] = []
    out: dict[str, tuple[str, int]] = {}

    def keys(h: int) -> list[int]:
        return [(h >> int(lo)) & ((1 << int(hi - lo)) - 1) for lo, hi in zip(edges[:-1], edges[1:])]

    for i, (pair_id, h) in enumerate(zip(ids, hashes)):
        hk = keys(h)
        candidates = sorted({j for b, k in enumerate(hk) for j in bands[b].get(k, ())})
        match = next(((j, d) for j in candidates if (d := hamming(h, hashes[j])) <= max_distance), None)
        if match is not None:
            out[pair_id] = (ids[match[0]], match[1])
            continue
        kept.append(i)
        for b, k in enumerate(hk):
            bands[b][k].append(i)
    return out
