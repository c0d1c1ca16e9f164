"""Paint whole slides with synthetic tissue: blobs of tissue cut into regions of the tissue classes.

`TissueLayout` says which site's stain, which classes in which proportions and how large the regions
are; `TissuePainter` renders any level-0 rectangle of such a slide with `g2l.synth.tissue` (exact
bytes on every CPU). Tissue blobs are ellipses with wavy edges (the same `Blob`s as the plain
synthetic slides, evaluated here in float64 with basic operations only); inside them, a Voronoi
partition with jittered seeds on a `region_um` grid gives each region one class, a fibre direction
and staining intensities. `g2l.synth.slides.write_synthetic_slide(..., tissue=layout)` uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from g2l.config import require
from g2l.exact_ops import gaussian_blur
from g2l.synth.tissue import (
    CLASSES,
    SITES,
    Stain,
    cell_hash,
    hashed_uniform,
    render_densities,
    stain_rgb,
    value_noise,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TissueLayout:
    """What tissue a slide carries: the site's stain, class proportions, region size, physical scale."""

    site: str = "A1"  # a key of g2l.synth.tissue.SITES (ignored when `stain` is given)
    stain: Stain | None = None
    classes: tuple[str, ...] = CLASSES
    weights: tuple[float, ...] = ()  # relative frequency of each class; () = equal
    region_um: float = 220.0  # typical region (Voronoi cell) size
    mpp: float = 0.5  # true level-0 resolution (um/px), also when the file records none
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.stain is not None or self.site in SITES,
                f"tissue site must be one of {', '.join(SITES)} (or give a stain), got {self.site!r}")
        unknown = [c for c in self.classes if c not in CLASSES]
        require(bool(self.classes) and not unknown,
                f"tissue classes must be some of {', '.join(CLASSES)}, got {list(self.classes)}")
        require(
            not self.weights or (len(self.weights) == len(self.classes) and all(w > 0 for w in self.weights)),
            f"tissue weights must be one positive number per class, got {list(self.weights)}",
        )
        require(20 <= self.region_um <= 5000, f"tissue region_um must be 20..5000, got {self.region_um}")
        require(0.05 <= self.mpp <= 4, f"tissue mpp must be 0.05..4 um/px, got {self.mpp}")

    @property
    def site_stain(self) -> Stain:
        """The stain the slide is painted with."""
        return self.stain if self.stain is not None else SITES[self.site]

    def class_thresholds(self) -> np.ndarray:
        """Cumulative class probabilities (a region's uniform below entry k picks class k)."""
        w = np.array(self.weights or [1.0] * len(self.classes), dtype=np.float64)
        return np.cumsum(w) / w.sum()


def _cos_sin(t: float) -> tuple[float, float]:
    """cos and sin of a scalar angle from basic operations (Taylor series after halving), CPU-exact."""
    halvings = 0
    while abs(t) > 0.25:
        t *= 0.5
        halvings += 1
    c, s, term_c, term_s = 1.0, t, 1.0, t
    for n in range(1, 10):
        term_c = -term_c * t * t / ((2 * n - 1) * (2 * n))
        term_s = -term_s * t * t / ((2 * n) * (2 * n + 1))
        c += term_c
        s += term_s
    for _ in range(halvings):  # double angle
        c, s = c * c - s * s, 2 * s * c
    return c, s


def tissue_membership(x: np.ndarray, y: np.ndarray, blobs: Sequence) -> np.ndarray:
    """Boolean tissue membership of level-0 points (px) for `g2l.synth.slides.Blob`s, in float64.

    The wavy edge 1 + sum(a sin(f theta + phase)) is evaluated without libm: cos/sin of f theta are
    powers of the unit vector (u + iv) / rho, the phase's cos/sin come from `_cos_sin`.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape), bool)
    for b in blobs:
        bx0, by0, bx1, by1 = b.bbox()
        if x.max() < bx0 or x.min() > bx1 or y.max() < by0 or y.min() > by1:
            continue
        ca, sa = _cos_sin(float(b.angle))
        dx, dy = x - b.cx, y - b.cy
        u = (dx * ca + dy * sa) / b.rx
        v = (dy * ca - dx * sa) / b.ry
        rho = np.sqrt(u * u + v * v)
        safe = np.where(rho > 0, rho, 1.0)
        cu, su = np.where(rho > 0, u / safe, 1.0), v / safe  # cos, sin of theta
        edge = np.ones_like(rho)
        for amp, freq, phase in b.wave:
            pc, ps = 1.0, 0.0  # (cu + i su) ** freq by repeated multiplication
            for _ in range(int(freq)):
                pc, ps = pc * cu - ps * su, pc * su + ps * cu
            cp, sp = _cos_sin(float(phase))
            edge = edge + amp * (ps * cp + pc * sp)
        inside = rho < edge
        if b.hole is not None:
            hx, hy, hrx, hry = b.hole
            inside &= ((x - hx) / hrx) ** 2 + ((y - hy) / hry) ** 2 >= 1.0
        out |= inside
    return out


class TissuePainter:
    """Renders level-0 rectangles of a slide whose blobs carry `layout`'s tissue (see the module doc)."""

    def __init__(self, *, blobs: Sequence, layout: TissueLayout, pen_mask_fn=None,
                 pen_rgb: tuple[int, int, int] = (30, 150, 70)) -> None:
        self.blobs = tuple(blobs)
        self.layout = layout
        self.stain = layout.site_stain
        self.pen_mask_fn = pen_mask_fn  # (xs, ys) level-0 px -> bool mask, or None
        self.pen_rgb = pen_rgb
        self.thresholds = layout.class_thresholds()
        self.margin = int(np.ceil(3 * self.stain.blur_um / layout.mpp)) if self.stain.blur_um > 0 else 0
        self._glass: dict[int, list[np.ndarray]] = {}

    def _glass_tile(self, x0: int, y0: int, size: int) -> np.ndarray:
        """Plain glass with scanner noise: one of four precomputed tiles (most of a slide is glass)."""
        if size not in self._glass:
            zeros = np.zeros((size, size))
            self._glass[size] = [stain_rgb(zeros, zeros, self.stain, self.layout.seed + 7919 * k, (0, 0))
                                 for k in range(4)]
        return self._glass[size][((x0 // size) * 31 + (y0 // size) * 17) % 4].copy()

    def regions(self, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        """uint32 region id per point: the nearest jittered seed of a `region_um` grid (warped edges)."""
        pitch = self.layout.region_um
        salt = self.layout.seed * 131 + 17
        wx = x_um + 0.35 * pitch * (value_noise(x_um, y_um, 0.6 * pitch, salt) - 0.5)
        wy = y_um + 0.35 * pitch * (value_noise(x_um, y_um, 0.6 * pitch, salt + 1) - 0.5)
        ix, iy = np.floor(wx / pitch), np.floor(wy / pitch)
        shape = np.broadcast_shapes(wx.shape, wy.shape)
        best = np.full(shape, np.inf)
        region = np.zeros(shape, np.uint32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                h = cell_hash(ix + dx, iy + dy, salt + 2)
                sx = (ix + dx + 0.15 + 0.7 * hashed_uniform(h, 1)) * pitch
                sy = (iy + dy + 0.15 + 0.7 * hashed_uniform(h, 2)) * pitch
                d = (wx - sx) ** 2 + (wy - sy) ** 2
                closer = d < best
                best = np.where(closer, d, best)
                region = np.where(closer, h, region)
        return region

    def region_class(self, region: int) -> str:
        """The tissue class of a region id."""
        u = float(hashed_uniform(np.array([region], np.uint32), 3)[0])
        k = min(int(np.searchsorted(self.thresholds, u, side="right")), len(self.layout.classes) - 1)
        return self.layout.classes[k]

    def tile(self, x0: int, y0: int, size: int) -> np.ndarray:
        """RGB uint8 [size, size, 3] of the level-0 square whose top-left corner is (x0, y0)."""
        m = self.margin
        n = size + 2 * m
        xs = np.arange(x0 - m, x0 - m + n, dtype=np.float64)[None, :] + 0.5
        ys = np.arange(y0 - m, y0 - m + n, dtype=np.float64)[:, None] + 0.5
        tissue = tissue_membership(xs, ys, self.blobs)
        pen = None if self.pen_mask_fn is None else self.pen_mask_fn(xs[:, m:m + size], ys[m:m + size])
        if not tissue.any() and (pen is None or not pen.any()):
            return self._glass_tile(x0, y0, size)
        hema = np.zeros((n, n))
        eos = np.zeros((n, n))
        if tissue.any():
            mpp = self.layout.mpp
            region = self.regions(xs * mpp, ys * mpp)
            for rid in np.unique(region[tissue]):
                where = tissue & (region == rid)
                h, e = render_densities(self.region_class(int(rid)), x0 - m, y0 - m, n, n, mpp,
                                        seed=self.layout.seed, region_hash=int(rid))
                hema = np.where(where, h, hema)
                eos = np.where(where, e, eos)
        rgb = stain_rgb(hema, eos, self.stain, self.layout.seed, (x0 - m, y0 - m))
        if m:
            rgb = gaussian_blur(rgb, 2 * m + 1, self.stain.blur_um / self.layout.mpp)[m:-m, m:-m]
        if pen is not None and pen.any():
            rgb = np.where(pen[..., None], np.array(self.pen_rgb, np.uint8), rgb)
        return np.ascontiguousarray(rgb)
