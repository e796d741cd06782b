"""Findings painted onto a phantom's layers, one rule per class, with severity and side visible.

Each painter writes into the canvas layers (`density` for what fills the lung fields, `air`
and `marking_gain` for a pneumothorax, `fluid` for effusions, `overlay` for the pleural line);
`phantom_draw.compose` turns them into pixels. Sizes and densities grow with severity so that
"large" is measurably more than "small" in the zone the finding names.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from medray.mm.phantom_anatomy import (
    OUTWARD,
    SIDES,
    ZONES,
    dome_curve,
    lung_box,
    lung_mask,
    outward,
)
from medray.mm.phantom_draw import Canvas

EFFUSION_HEIGHT = {"small": 0.10, "moderate": 0.19, "large": 0.32}
CONSOLIDATION = {"mild": (0.055, 0.22), "moderate": (0.08, 0.30), "severe": (0.105, 0.38)}  # radius, density
OPACITY = {"mild": (0.07, 0.10), "moderate": (0.10, 0.15), "severe": (0.13, 0.21)}
PNEUMOTHORAX_DEPTH = {"small": 0.03, "large": 0.07}
LESION = {"small": (0.017, 0.024, 0.28), "large": (0.045, 0.065, 0.32)}  # radius range, density
ATELECTASIS = {"mild": (0.09, 0.007, 0.26), "moderate": (0.13, 0.011, 0.32), "severe": (0.16, 0.016, 0.38)}
EDEMA = {"mild": (0.09, 0.85, 0.0), "moderate": (0.13, 0.7, 0.09), "severe": (0.20, 0.55, 0.13)}  # haze, markings kept, Kerley


def sides_of(side: str | None) -> tuple[str, ...]:
    return SIDES if side in (None, "bilateral") else (side,)


def _to_u(c: Canvas, side: str, t: float) -> float:
    return c.anatomy.midline + OUTWARD[side] * t


def _lung_point(c: Canvas, side: str, zone: str | None, rng: np.random.Generator,
                margin: float) -> tuple[float, float]:
    """A point inside `zone` of a lung, at least `margin` from its walls and mostly lateral of the heart."""
    a = c.anatomy
    zone = zone or ZONES[int(rng.integers(3))]
    top, bottom = a.lung_top + 0.06, a.dome(side) + 0.02
    k = ZONES.index(zone)
    lo, hi = top + k * (bottom - top) / 3, top + (k + 1) * (bottom - top) / 3
    medial, lateral = c.lung_borders(side)
    for _ in range(32):
        y = float(rng.uniform(lo, hi))
        row = min(c.size - 1, int(y * c.size))
        t_lo = max(float(medial[row, 0]), 0.12) + margin
        t_hi = float(lateral[row, 0]) - margin
        if t_hi <= t_lo:
            continue
        t = float(rng.uniform(t_lo, t_hi))
        if y < float(dome_curve(a, side, np.float32(t))) - margin:
            return _to_u(c, side, t), y
    mid_t = 0.6 * a.thorax_half
    return _to_u(c, side, mid_t), min(0.5 * (lo + hi), a.dome(side) - margin)


def _blob(c: Canvas, x: float, y: float, r: float, rng: np.random.Generator, balls: int,
          level: float, soft: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """An irregular patch (a few merged Gaussian balls, thresholded) and the box it lies in."""
    box = c.box(x - 2 * r, x + 2 * r, y - 2 * r, y + 2 * r)
    u, v = c.grid(box)
    field = np.zeros((v.shape[0], u.shape[1]), np.float32)
    for _ in range(balls):
        bx, by = x + 0.45 * r * float(rng.standard_normal()), y + 0.45 * r * float(rng.standard_normal())
        br = r * float(rng.uniform(0.6, 0.9))
        field += np.exp(-((u - bx) ** 2 + (v - by) ** 2) / (br * br))
    return box, np.clip((field - level) / soft, 0.0, 1.0)


def _segment_distance(u: np.ndarray, v: np.ndarray, p: tuple[float, float], q: tuple[float, float]) -> np.ndarray:
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    s = np.clip(((u - px) * dx + (v - py) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.sqrt((u - px - s * dx) ** 2 + (v - py - s * dy) ** 2)


def paint_effusion(c: Canvas, f, rng: np.random.Generator) -> None:
    """Fluid filling the costophrenic angle with a meniscus that climbs the lateral wall."""
    a = c.anatomy
    for side in sides_of(f.side):
        height = EFFUSION_HEIGHT[f.severity] * float(rng.uniform(0.92, 1.08))
        box = lung_box(a, c.size, side)
        u, v = c.grid(box)
        _, lateral = c.lung_borders(side)
        t = outward(a, side, u)
        s = np.clip((t - 0.03) / (a.thorax_half - 0.03), 0.0, 1.0)
        top = a.dome(side) + 0.10 - height - 0.045 * s * s
        cover = c.ramp(v - top, 0.035) * c.ramp(dome_curve(a, side, t) + 0.06 - v, 0.02)
        cover *= c.ramp(t - 0.025) * c.ramp(lateral[box[0]] + 0.004 - t)
        np.maximum(c.fluid[box], 0.92 * cover, out=c.fluid[box])


def paint_cardiomegaly(c: Canvas, f, rng: np.random.Generator) -> None:
    """Nothing to paint: the heart's width comes from the anatomy (`apply_volume_effects`)."""


def paint_consolidation(c: Canvas, f, rng: np.random.Generator) -> None:
    """A dense patch with air bronchograms: dark branching tubes running away from the hilum."""
    radius, density = CONSOLIDATION[f.severity]
    for side in sides_of(f.side):
        x, y = _lung_point(c, side, f.zone, rng, 0.4 * radius)
        box, patch = _blob(c, x, y, radius, rng, 4, 0.55, 0.2)
        u, v = c.grid(box)
        hx, hy = c.anatomy.hilum(side)
        heading = math.atan2(y - hy, x - hx)
        tubes = np.zeros_like(patch)
        start = (x - 0.6 * radius * math.cos(heading), y - 0.6 * radius * math.sin(heading))
        for turn, length in ((0.0, 1.3), (0.45, 0.8), (-0.5, 0.7)):
            ang = heading + turn + 0.15 * float(rng.standard_normal())
            mid = (start[0] + 0.5 * radius * math.cos(heading), start[1] + 0.5 * radius * math.sin(heading))
            origin = start if turn == 0.0 else mid
            end = (origin[0] + length * radius * math.cos(ang), origin[1] + length * radius * math.sin(ang))
            tubes = np.maximum(tubes, c.ramp(0.0055 - _segment_distance(u, v, origin, end)))
        c.density[box] += density * patch * (1.0 - 0.55 * tubes)
        c.marking_gain[box] *= 1.0 - 0.9 * patch


def paint_lung_opacity(c: Canvas, f, rng: np.random.Generator) -> None:
    """A fainter, hazier patch than consolidation: markings still show through."""
    radius, density = OPACITY[f.severity]
    for side in sides_of(f.side):
        x, y = _lung_point(c, side, f.zone, rng, 0.3 * radius)
        box, patch = _blob(c, x, y, radius, rng, 3, 0.3, 0.55)
        c.density[box] += density * patch
        c.marking_gain[box] *= 1.0 - 0.4 * patch


def paint_pneumothorax(c: Canvas, f, rng: np.random.Generator) -> None:
    """Free air between the chest wall and a collapsed lung: dark, no markings, a thin pleural line.

    Apical when the zone is "upper", apicolateral down to the base otherwise.
    """
    a = c.anatomy
    for side in sides_of(f.side):
        depth = PNEUMOTHORAX_DEPTH[f.severity] * float(rng.uniform(0.9, 1.1))
        collapsed = dataclasses.replace(a, thorax_half=a.thorax_half - depth, lung_top=a.lung_top + 0.9 * depth)
        inner = lung_mask(collapsed, c.size, side)
        line_band = lung_mask(collapsed, c.size, side, edge_px=2.5)
        extent = c.lungs[side]
        if f.zone == "upper":
            extent = extent * c.ramp(a.lung_top + 0.3 - c.v, 0.08)
        band = extent * (1.0 - inner)
        np.maximum(c.air, band, out=c.air)
        c.marking_gain *= 1.0 - band
        c.overlay += 0.11 * 4.0 * line_band * (1.0 - line_band) * extent


def paint_lung_lesion(c: Canvas, f, rng: np.random.Generator) -> None:
    """A round nodule (small) or a lobulated mass (large) with a sharp edge."""
    r_lo, r_hi, density = LESION[f.severity]
    for side in sides_of(f.side):
        r = max(float(rng.uniform(r_lo, r_hi)), 2.5 / c.size)
        x, y = _lung_point(c, side, f.zone, rng, r + 0.01)
        if f.severity == "large":
            box, patch = _blob(c, x, y, r, rng, 3, 0.5, 0.08)
        else:
            box = c.box(x - 2 * r, x + 2 * r, y - 2 * r, y + 2 * r)
            d = np.sqrt((c.u[:, box[1]] - x) ** 2 + (c.v[box[0], :] - y) ** 2)
            patch = c.ramp(r - d)
        c.density[box] += density * patch


def paint_atelectasis(c: Canvas, f, rng: np.random.Generator) -> None:
    """A plate-like band above the base (the raised hemidiaphragm is the anatomy's part);
    a basal wedge as well when severe."""
    length, thickness, density = ATELECTASIS[f.severity]
    a = c.anatomy
    for side in sides_of(f.side):
        t0 = float(rng.uniform(0.17, 0.27)) * a.thorax_half / 0.39
        x0 = a.midline + OUTWARD[side] * t0
        y0 = float(dome_curve(a, side, np.float32(t0))) - float(rng.uniform(0.045, 0.075))
        angle = float(rng.uniform(-0.18, 0.18))
        box = c.box(x0 - length, x0 + length, y0 - length, y0 + length)
        du, dv = c.u[:, box[1]] - x0, c.v[box[0], :] - y0
        along = du * np.cos(angle) + dv * np.sin(angle)
        across = -du * np.sin(angle) + dv * np.cos(angle)
        plate = c.ramp(0.5 * length - np.abs(along), 0.02) * c.ramp(thickness - np.abs(across))
        c.density[box] += density * plate
        if f.severity == "severe":
            t1 = 0.85 * a.thorax_half
            xw, yw = _to_u(c, side, t1), float(dome_curve(a, side, np.float32(t1))) - 0.02
            wbox, wedge = _blob(c, xw, yw, 0.05, rng, 3, 0.5, 0.25)
            c.density[wbox] += 0.22 * wedge


def paint_edema(c: Canvas, f, rng: np.random.Generator) -> None:
    """Perihilar haze fading outward, blurred vessels, and Kerley B lines at the bases when worse."""
    haze, kept, kerley = EDEMA[f.severity]
    a = c.anatomy
    phase = float(rng.uniform())
    for side in sides_of(f.side):
        box = lung_box(a, c.size, side)
        u, v = c.grid(box)
        hx, hy = a.hilum(side)
        dx, dy = OUTWARD[side] * (u - hx), v - hy
        c.density[box] += haze * (np.exp(-((dx / 0.17) ** 2 + (dy / 0.21) ** 2)) + 0.3) * c.lungs[side][box]
        if kerley:
            _, lateral = c.lung_borders(side)
            t = outward(a, side, u)
            periphery = c.ramp(t - (lateral[box[0]] - 0.045), 0.01) * c.ramp(v - (a.dome(side) - 0.2), 0.03)
            frac = v / 0.018 + phase
            lines = c.ramp(0.0045 - np.abs(frac - np.floor(frac) - 0.5) * 0.018)
            c.density[box] += kerley * lines * periphery
    c.marking_gain *= kept


PAINTERS = {
    "pleural_effusion": paint_effusion,
    "cardiomegaly": paint_cardiomegaly,
    "consolidation": paint_consolidation,
    "lung_opacity": paint_lung_opacity,
    "pneumothorax": paint_pneumothorax,
    "lung_lesion": paint_lung_lesion,
    "atelectasis": paint_atelectasis,
    "edema": paint_edema,
}
