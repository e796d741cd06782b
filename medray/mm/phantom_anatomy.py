"""The phantom patient: body habitus, lung geometry and the zones findings are placed in.

Geometry is in units of the image width (0..1), rows downward, and the image reads like a PA film:
image left is the patient's right. Lung borders are computed per row, so a lung field is a few
array operations whatever its shape; the same functions place findings and let tests measure them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SIDES = ("right", "left")
# Direction from the midline toward the patient's side, in image columns (patient right = image left).
OUTWARD = {"right": -1.0, "left": 1.0}
ZONES = ("upper", "middle", "lower")

# Heart width over the inner thoracic width, by cardiomegaly severity (about 0.45 is normal).
HEART_RATIO = {"mild": 0.55, "moderate": 0.62, "severe": 0.70}
# Hemidiaphragm elevation from atelectatic volume loss, by severity.
DOME_LIFT = {"mild": 0.0, "moderate": 0.015, "severe": 0.035}



@dataclass(frozen=True)
class Anatomy:
    """One patient's body habitus and exposure; findings may adjust it (volume loss, heart size)."""

    midline: float = 0.5
    thorax_half: float = 0.39  # half the inner thoracic width: the cardiothoracic ratio's denominator
    lung_top: float = 0.11
    dome_right: float = 0.74  # row of each hemidiaphragm's apex; the right usually sits higher
    dome_left: float = 0.765
    heart_ratio: float = 0.45
    heart_v: float = 0.675  # row of the heart's widest extent
    rib_phase: float = 0.0
    rib_spacing: float = 0.068
    vessel_phase: float = 0.0
    contrast: float = 1.0
    brightness: float = 0.0
    noise: float = 0.012

    def __post_init__(self):
        # NumPy scalars would promote every float32 layer they touch to float64.
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, float(getattr(self, f.name)))

    def dome(self, side: str) -> float:
        return self.dome_right if side == "right" else self.dome_left

    def hilum(self, side: str) -> tuple[float, float]:
        return self.midline + OUTWARD[side] * 0.085, 0.43

    def with_dome(self, side: str, dome: float) -> Anatomy:
        key = "dome_right" if side == "right" else "dome_left"
        return dataclasses.replace(self, **{key: dome})


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """A plausible adult: small variations in build, position, rib phase and exposure."""
    u = rng.uniform(size=12)
    dome_right = 0.72 + 0.04 * u[3]
    return Anatomy(
        midline=0.5 + 0.02 * (u[0] - 0.5),
        thorax_half=0.375 + 0.03 * u[1],
        lung_top=0.10 + 0.03 * u[2],
        dome_right=dome_right,
        dome_left=dome_right + 0.01 + 0.025 * u[4],
        heart_ratio=0.42 + 0.06 * u[5],
        heart_v=0.66 + 0.03 * u[6],
        rib_phase=float(u[7]),
        rib_spacing=0.064 + 0.01 * u[8],
        vessel_phase=float(6.283 * u[9]),
        contrast=0.92 + 0.16 * u[10],
        brightness=0.04 * (u[11] - 0.5),
        noise=0.010 + 0.006 * float(rng.uniform()),
    )


# --- geometry -------------------------------------------------------------------------------

Box = tuple[slice, slice]


@functools.lru_cache(maxsize=8)
def grid_axis(size: int) -> np.ndarray:
    return ((np.arange(size, dtype=np.float32) + 0.5) / size).astype(np.float32)


def pixel_box(size: int, x0: float, x1: float, y0: float, y1: float) -> Box:
    cols = slice(max(0, int(x0 * size)), max(0, min(size, int(np.ceil(x1 * size)) + 1)))
    rows = slice(max(0, int(y0 * size)), max(0, min(size, int(np.ceil(y1 * size)) + 1)))
    return rows, cols


def ramp(x: np.ndarray, width: float) -> np.ndarray:
    """0 outside, 1 inside, linear across `width` around the border x = 0."""
    out = x * (1.0 / width) + 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def lung_borders(anatomy: Anatomy, size: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the medial and lateral lung borders as distances from the midline: (size, 1) each.

    Both leave a rounded apex and reach their widest a little above the diaphragm; row-wise
    borders make a lung a handful of array operations whatever its shape. Rows above the apex
    get medial > lateral, which no point satisfies.
    """
    v = grid_axis(size)[:, None]
    apex_t = 0.46 * anatomy.thorax_half
    s = (v - anatomy.lung_top) / (anatomy.dome(side) - anatomy.lung_top)
    down = np.clip(s / 0.55, 0.0, 1.0)
    lateral = apex_t + (anatomy.thorax_half - apex_t) * (1.0 - (1.0 - down) ** 2) ** 0.6
    inner = np.clip(s / 0.3, 0.0, 1.0)
    medial = apex_t - (apex_t - 0.035) * (1.0 - (1.0 - inner) ** 2) ** 0.5
    above = s < 0
    medial = np.where(above, 1.0, medial).astype(np.float32)
    return medial, np.where(above, 0.0, lateral).astype(np.float32)


def dome_curve(anatomy: Anatomy, side: str, t: np.ndarray) -> np.ndarray:
    """The hemidiaphragm's row at distance `t` from the midline: high in the middle, low at the angles."""
    return anatomy.dome(side) + 0.09 * ((t - 0.17) / 0.22) ** 2


def outward(anatomy: Anatomy, side: str, u: np.ndarray) -> np.ndarray:
    """Distance from the midline toward `side` (negative on the other side)."""
    return OUTWARD[side] * (u - anatomy.midline)


def lung_box(anatomy: Anatomy, size: int, side: str) -> Box:
    """The rows and columns one lung field can occupy."""
    near = anatomy.midline + OUTWARD[side] * 0.02
    far = anatomy.midline + OUTWARD[side] * (anatomy.thorax_half + 0.02)
    return pixel_box(size, min(near, far), max(near, far), anatomy.lung_top - 0.01, anatomy.dome(side) + 0.12)


def lung_mask(anatomy: Anatomy, size: int, side: str, edge_px: float = 1.2) -> np.ndarray:
    """Soft mask of one lung field (heart and mediastinum not yet removed), full size."""
    axis = grid_axis(size)
    rows, cols = lung_box(anatomy, size, side)
    medial, lateral = lung_borders(anatomy, size, side)
    edge = edge_px / size
    t = outward(anatomy, side, axis[None, cols])
    inside = ramp(t - medial[rows], edge) * ramp(lateral[rows] - t, edge)
    inside *= ramp(dome_curve(anatomy, side, t) - axis[rows, None], edge)
    out = np.zeros((size, size), np.float32)
    out[rows, cols] = inside
    return out


def zone_mask(anatomy: Anatomy, size: int, side: str, zone: str) -> np.ndarray:
    """Boolean mask of one third (upper, middle, lower) of a lung field, for placing and measuring."""
    lung = lung_mask(anatomy, size, side) > 0.5
    top, bottom = anatomy.lung_top, anatomy.dome(side) + 0.05
    k = ZONES.index(zone)
    v = grid_axis(size)[:, None]
    lo, hi = top + k * (bottom - top) / 3, top + (k + 1) * (bottom - top) / 3
    return lung & (v >= lo) & (v < hi)


def apply_volume_effects(anatomy: Anatomy, findings: Iterable) -> Anatomy:
    """What findings do to the anatomy itself: a larger heart, a hemidiaphragm raised by collapse."""
    for f in findings:
        if f.name == "cardiomegaly":
            anatomy = dataclasses.replace(anatomy, heart_ratio=HEART_RATIO[f.severity])
        elif f.name == "atelectasis":
            for side in (SIDES if f.side == "bilateral" else (f.side,)):
                anatomy = anatomy.with_dome(side, anatomy.dome(side) - DOME_LIFT[f.severity])
    return anatomy

