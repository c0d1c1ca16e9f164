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
from typing import Any

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


def _surely_inside(x: np.ndarray, y: np.ndarray, b: Any, ca: float, sa: float) -> bool:
    """True when every point of the rectangle spanned by x, y lies inside blob `b` (and not in its hole).

    The squared elliptic radius is convex, so its maximum over the rectangle is at a corner; below the
    smallest the wavy edge can be (1 - sum of amplitudes, less a rounding allowance) every point is in.
    """
    inner = 1.0 - sum(abs(a) for a, _, _ in b.wave) - 1e-9
    corners = [(float(cx), float(cy)) for cx in (x.min(), x.max()) for cy in (y.min(), y.max())]
    for px, py in corners:
        dx, dy = px - b.cx, py - b.cy
        u, v = (dx * ca + dy * sa) / b.rx, (dy * ca - dx * sa) / b.ry
        if u * u + v * v >= inner * inner:
            return False
    if b.hole is not None:
        hx, hy, hrx, hry = b.hole
        if not (x.max() < hx - hrx or x.min() > hx + hrx or y.max() < hy - hry or y.min() > hy + hry):
            return False
    return True


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
        if _surely_inside(x, y, b, ca, sa):
            out[...] = True
            continue
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


#: Region borders are decided on a lattice of this many level-0 pixels (see TissuePainter._region_map).
_REGION_LATTICE_PX = 4


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
        # Seeds of every cell around the points, computed once per cell, then gathered per point.
        x0, y0 = int(ix.min()) - 1, int(iy.min()) - 1
        gx = np.arange(x0, int(ix.max()) + 2)
        gy = np.arange(y0, int(iy.max()) + 2)
        ids = cell_hash(gx[None, :], gy[:, None], salt + 2)
        seed_x = (gx[None, :] + 0.15 + 0.7 * hashed_uniform(ids, 1)) * pitch
        seed_y = (gy[:, None] + 0.15 + 0.7 * hashed_uniform(ids, 2)) * pitch
        col, row = (ix - x0).astype(np.intp), (iy - y0).astype(np.intp)
        shape = np.broadcast_shapes(wx.shape, wy.shape)
        best = np.full(shape, np.inf)
        region = np.zeros(shape, np.uint32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                r, c = row + dy, col + dx
                d = (wx - seed_x[r, c]) ** 2 + (wy - seed_y[r, c]) ** 2
                closer = d < best
                best = np.where(closer, d, best)
                region = np.where(closer, ids[r, c], region)
        return region

    def region_class(self, region: int) -> str:
        """The tissue class of a region id."""
        u = float(hashed_uniform(np.array([region], np.uint32), 3)[0])
        k = min(int(np.searchsorted(self.thresholds, u, side="right")), len(self.layout.classes) - 1)
        return self.layout.classes[k]

    def _region_map(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Region ids of pixel centres xs [1, n], ys [n, 1] (level-0 px), decided on a lattice of 4 px cells.

        Regions are hundreds of um across: their borders need no pixel precision. The lattice is aligned
        to the slide, not to the tile, so neighbouring tiles agree.
        """
        lattice = _REGION_LATTICE_PX
        cx = np.floor(xs[0] / lattice) * lattice + lattice / 2
        cy = np.floor(ys[:, 0] / lattice) * lattice + lattice / 2
        ux, ix = np.unique(cx, return_inverse=True)
        uy, iy = np.unique(cy, return_inverse=True)
        coarse = self.regions(ux[None, :] * self.layout.mpp, uy[:, None] * self.layout.mpp)
        return coarse[iy[:, None], ix[None, :]]

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
            region = self._region_map(xs, ys)
            for rid in np.unique(region[tissue]):
                where = tissue & (region == rid)
                # Render only the region's bounding box: densities depend on absolute position alone.
                rows, cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
                r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
                h, e = render_densities(self.region_class(int(rid)), int(x0 - m + c0), int(y0 - m + r0),
                                        int(c1 - c0), int(r1 - r0), self.layout.mpp, seed=self.layout.seed,
                                        region_hash=int(rid))
                box = where[r0:r1, c0:c1]
                hema[r0:r1, c0:c1] = np.where(box, h, hema[r0:r1, c0:c1])
                eos[r0:r1, c0:c1] = np.where(box, e, eos[r0:r1, c0:c1])
        rgb = stain_rgb(hema, eos, self.stain, self.layout.seed, (x0 - m, y0 - m))
        if m:
            rgb = gaussian_blur(rgb, 2 * m + 1, self.stain.blur_um / self.layout.mpp)[m:-m, m:-m]
        if pen is not None and pen.any():
            rgb = np.where(pen[..., None], np.array(self.pen_rgb, np.uint8), rgb)
        return np.ascontiguousarray(rgb)
