"""A synthetic frontal chest radiograph: the patient's anatomy, then findings painted by rule.

Bright is dense (bone, heart, fluid), dark is air (lungs, pneumothorax). Drawing is a pure
function of the anatomy, the findings and a seed, and each finding's shape comes from its own
seed, so a study redrawn without one finding differs only where that finding was: that is what
lets tests measure that a label changes the pixels it should and no others. Every layer is
computed inside its own bounding box, which keeps an image at a few milliseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from medray.mm.phantom_anatomy import (
    OUTWARD,
    SIDES,
    Anatomy,
    Box,
    apply_volume_effects,
    dome_curve,
    grid_axis,
    lung_borders,
    lung_box,
    lung_mask,
    outward,
    pixel_box,
    ramp,
)

# --- the canvas ------------------------------------------------------------------------------

@dataclass
class Canvas:
    """The sampling grid and the layers that findings paint into before composition."""

    size: int
    anatomy: Anatomy
    u: np.ndarray  # (1, size) column coordinates
    v: np.ndarray  # (size, 1) row coordinates
    lungs: dict[str, np.ndarray]  # soft lung mask per side
    density: np.ndarray  # added to the lung fields (consolidation, haze, nodules, plates)
    marking_gain: np.ndarray  # lung markings kept (0 where a pneumothorax has none)
    air: np.ndarray  # pneumothorax: how far a pixel goes from lung to free air
    fluid: np.ndarray  # pleural fluid coverage (blended in over lungs, heart and diaphragm)
    overlay: np.ndarray  # lines that sit on top of everything (the visceral pleural line)

    @property
    def edge(self) -> float:
        """The width of a soft edge: about one pixel, so shapes are antialiased at any size."""
        return 1.2 / self.size

    def ramp(self, x: np.ndarray, width: float | None = None) -> np.ndarray:
        return ramp(x, width or self.edge)

    def box(self, x0: float, x1: float, y0: float, y1: float) -> Box:
        """The rows and columns of a region (clipped to the image), so local shapes cost little."""
        return pixel_box(self.size, x0, x1, y0, y1)

    def grid(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        return self.u[:, box[1]], self.v[box[0], :]

    def lung_borders(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        return lung_borders(self.anatomy, self.size, side)


def new_canvas(anatomy: Anatomy, size: int) -> Canvas:
    axis = grid_axis(size)
    zeros = functools.partial(np.zeros, (size, size), np.float32)
    lungs = {side: lung_mask(anatomy, size, side) for side in SIDES}
    return Canvas(size, anatomy, axis[None, :], axis[:, None], lungs, zeros(),
                  np.ones((size, size), np.float32), zeros(), zeros(), zeros())


# --- anatomy layers, each painted into its own box --------------------------------------------


def _paint_centre(c: Canvas, img: np.ndarray) -> None:
    """Mediastinum (aortic knob on the patient's left) and heart: the bright central shadow.

    The heart lies a third right of the midline and two thirds left; its width over the thoracic
    width is the cardiothoracic ratio.
    """
    a = c.anatomy
    width = a.heart_ratio * 2 * a.thorax_half
    cx, half_w = a.midline + width / 6, width / 2
    half_h = 0.13 + 0.12 * (a.heart_ratio - 0.45)
    box = c.box(min(cx - half_w, a.midline - 0.07), max(cx + half_w, a.midline + 0.1),
                0.0, max(a.dome_right, a.dome_left) + 0.12)
    u, v = c.grid(box)
    knob = 0.03 * np.exp(-(((v - 0.31) / 0.04) ** 2))
    band = c.ramp(u - (a.midline - 0.05 - 0.01 * np.clip((v - 0.3) / 0.2, 0, 1)))
    band *= c.ramp(a.midline + 0.055 + knob - u)
    band *= c.ramp(a.heart_v + 0.05 - v, 0.05)
    # Below its widest row the heart runs on into the diaphragm instead of closing.
    dy = (v - a.heart_v) / np.where(v > a.heart_v, 1.8 * half_h, half_h)
    r = np.sqrt(((u - cx) / half_w) ** 2 + dy * dy)
    centre = np.maximum(band, c.ramp((1.0 - r) * min(half_w, half_h)))
    img[box] = img[box] * (1.0 - centre) + (0.64 + 0.5 * c.density[box]) * centre
    trachea = c.ramp(0.012 - np.abs(u - a.midline)) * c.ramp(0.36 - v, 0.03)
    img[box] -= 0.2 * trachea


def _paint_ribs(c: Canvas, img: np.ndarray) -> None:
    """Posterior ribs as one periodic field of arcs over the thorax, anterior ribs fainter."""
    a = c.anatomy
    box = c.box(a.midline - a.thorax_half - 0.03, a.midline + a.thorax_half + 0.03,
                a.lung_top - 0.06, max(a.dome_right, a.dome_left) + 0.1)
    u, v = c.grid(box)
    s = np.abs(u - a.midline) * (1.0 / a.thorax_half)
    phase = (v + 0.05 * s - 0.2 * s * s) * (1.0 / a.rib_spacing) - a.rib_phase
    frac = phase - np.floor(phase) - 0.5
    ribs = np.clip(1.0 - (frac * (1 / 0.2)) ** 2, 0.0, 1.0)
    phase = (v - 0.1 * s) * (1.0 / (1.3 * a.rib_spacing)) - 0.5 * a.rib_phase
    frac = phase - np.floor(phase) - 0.5
    ribs += 0.4 * np.clip(1.0 - (frac * (1 / 0.14)) ** 2, 0.0, 1.0)
    ribs *= c.ramp(1.03 - s, 0.03) * c.ramp(s - 0.07, 0.04)
    ribs *= c.ramp(v - a.lung_top + 0.04, 0.03) * c.ramp(max(a.dome_right, a.dome_left) + 0.08 - v, 0.04)
    img[box] += 0.06 * ribs


def _paint_spine_and_clavicles(c: Canvas, img: np.ndarray) -> None:
    a = c.anatomy
    box = c.box(a.midline - 0.045, a.midline + 0.045, 0.0, 1.0)
    u, v = c.grid(box)
    plates = 0.6 + 0.4 * np.abs(np.sin(v * (np.pi / 0.045)))
    img[box] += 0.08 * c.ramp(0.03 - np.abs(u - a.midline), 0.01) * plates * c.ramp(a.dome_right + 0.05 - v, 0.1)
    box = c.box(a.midline - 0.42, a.midline + 0.42, 0.08, 0.24)
    u, v = c.grid(box)
    du = np.abs(u - a.midline)
    clavicle = c.ramp(0.011 - np.abs(v - (0.125 + 0.06 * (du * 2.5) ** 2)))
    img[box] += 0.16 * clavicle * c.ramp(du - 0.05, 0.02) * c.ramp(0.40 - du, 0.03)


def _markings(c: Canvas, side: str, box: Box) -> np.ndarray:
    """Vessel-like lines radiating from the hilum, thinning and fading toward the periphery.

    An angular line of half-width w/r keeps a constant physical width; two families at
    different counts and waviness read as branching, a third fine one as the peripheral vessels.
    """
    a = c.anatomy
    u, v = c.grid(box)
    hx, hy = a.hilum(side)
    dx = OUTWARD[side] * (u - hx)
    dy = v - hy
    r = np.sqrt(dx * dx + dy * dy) + 1e-3
    theta = np.arctan2(dy, dx)
    wobble = np.sin(11.0 * r + a.vessel_phase)
    out = None
    for n, wave, width in ((13, 2.6, 0.0045), (7, 3.4, 0.0035), (29, 1.8, 0.003)):
        arg = n * theta + wave * wobble + (a.vessel_phase * n) % (2 * np.pi)
        slack = 0.5 * (n * width) ** 2 / (r * r)
        line = np.clip((np.cos(arg) - 1.0 + slack) / np.maximum(slack, 1e-3), 0.0, 1.0)
        out = line if out is None else np.maximum(out, line)
    return out * np.exp(r * (-1 / 0.24)) * c.ramp(r - 0.035, 0.02)


def _smooth_noise(size: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency mottle: coarse noise upsampled bilinearly.

    Two small products, through einsum: a threaded BLAS call costs more in start-up than the work.
    """
    k = size // 16 + 2
    coarse = rng.standard_normal((k, k)).astype(np.float32)
    w = _bilinear(size, k)
    return np.einsum("ik,jk->ij", np.einsum("ik,kl->il", w, coarse), w)


@functools.lru_cache(maxsize=8)
def _bilinear(size: int, k: int) -> np.ndarray:
    pos = np.linspace(0, k - 1.001, size)
    i = pos.astype(np.int64)
    w = np.zeros((size, k), np.float32)
    w[np.arange(size), i] = 1 - (pos - i)
    w[np.arange(size), i + 1] = pos - i
    return w


# --- composition -----------------------------------------------------------------------------


def compose(c: Canvas, noise_rng: np.random.Generator) -> np.ndarray:
    """Tissue, lungs (with what findings painted), heart, fluid, bones, exposure, noise -> uint8."""
    a = c.anatomy
    half = (a.thorax_half + 0.085) * np.sqrt(np.clip(1.0 - ((c.v - 0.62) / 0.74) ** 2, 0.0, 1.0))
    chest_wall = c.ramp(a.thorax_half + 0.07 - np.abs(c.u - a.midline), 0.05)
    img = 0.03 + c.ramp(half - np.abs(c.u - a.midline), 0.02) * (0.40 + 0.03 * chest_wall)
    for side in SIDES:
        box = c.box(a.midline - a.thorax_half - 0.03, a.midline + a.thorax_half + 0.03, a.dome(side) - 0.01, 1.0)
        u, v = c.grid(box)
        t = outward(a, side, u)
        img[box] += 0.2 * c.ramp(v - dome_curve(a, side, t)) * c.ramp(t, 0.02) * c.ramp(a.thorax_half + 0.02 - t)
        box = lung_box(a, c.size, side)
        u, v = c.grid(box)
        lung = c.lungs[side][box]
        value = 0.125 + 0.06 * np.clip((v - a.lung_top) / (a.dome(side) - a.lung_top), 0, 1)
        value = value + 0.16 * _markings(c, side, box) * c.marking_gain[box] + c.density[box]
        air = c.air[box]
        value += (0.07 - value) * air
        img[box] += (value - img[box]) * lung
    _paint_centre(c, img)
    img += (0.6 - img) * c.fluid
    _paint_ribs(c, img)
    _paint_spine_and_clavicles(c, img)
    img += c.overlay
    img = img * a.contrast + a.brightness
    img += 0.02 * _smooth_noise(c.size, noise_rng)
    img += a.noise * noise_rng.standard_normal((c.size, c.size), dtype=np.float32)
    img = np.clip(img, 0.0, 1.0, out=img)
    return (img * 255.0 + 0.5).astype(np.uint8)


FINDING_ORDER = ("pleural_effusion", "cardiomegaly", "consolidation", "lung_opacity", "pneumothorax",
                 "lung_lesion", "atelectasis", "edema")


def draw_chest(anatomy: Anatomy, findings: Iterable = (), size: int = 224, seed: int = 0) -> np.ndarray:
    """The radiograph of `anatomy` with `findings` (objects with name, severity, side, zone).

    Each finding is painted from its own generator, seeded by (seed, its class), so adding or
    removing one leaves the others, and the noise, exactly as they were.
    """
    from medray.mm.phantom_findings import PAINTERS

    findings = list(findings)
    canvas = new_canvas(apply_volume_effects(anatomy, findings), size)
    for f in findings:
        PAINTERS[f.name](canvas, f, np.random.default_rng([seed, 1 + FINDING_ORDER.index(f.name)]))
    return compose(canvas, np.random.default_rng([seed, 0]))
