"""Synthetic H&E tissue: classes told apart by structure, stained and scanned differently per site.

Four tissue classes, drawn in physical units (um) so that a slide scanned at 0.25 um/px and one at
0.5 um/px show the same tissue at different pixel sizes:
- `gland`: rings of columnar nuclei around pale lumens, in loose stroma;
- `nuclei`: densely packed small round dark nuclei (lymphocyte-like);
- `stroma`: wavy oriented collagen fibres with sparse spindle nuclei along them;
- `tumour`: sheets of large pleomorphic vesicular nuclei with nucleoli.
Each is a hematoxylin and an eosin density map; a site's `Stain` turns them into RGB by Beer-Lambert
(its own stain vectors and gains, glass colour, scanner noise and blur). Stain intensity also varies
from region to region, so colour alone is a weak cue and the sites differ more than the classes do:
what a network must learn to recognise tissue is structure (ADR-free note: this is the confounder the
robustness index measures).

Pixels are the same bytes on every CPU: cell parameters come from an integer hash, geometry uses only
IEEE basic operations and sqrt on float64, Beer-Lambert goes through an integer table made with
`g2l.exact_ops.exp_neg`, noise is hashed integers and blur is `g2l.exact_ops.gaussian_blur`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from g2l.config import require
from g2l.exact_ops import exp_neg, gaussian_blur

CLASSES = ("gland", "nuclei", "stroma", "tumour")

#: Optical density quantisation of the Beer-Lambert table: OD steps of 1/_OD_STEPS, up to _OD_MAX.
_OD_STEPS = 256
_OD_MAX = 8.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stain:
    """How one site stains and scans: stain OD vectors (R, G, B), gains, glass colour, noise, blur."""

    hematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    h_gain: float = 1.0
    e_gain: float = 1.0
    glass: tuple[int, int, int] = (242, 240, 245)
    noise: float = 3.0  # scanner noise, grey levels (standard deviation)
    blur_um: float = 0.0  # scanner blur, Gaussian sigma in um (0: none)

    def __post_init__(self) -> None:
        for name in ("hematoxylin", "eosin"):
            vec = getattr(self, name)
            require(len(vec) == 3 and all(0 <= v <= 2 for v in vec) and sum(vec) > 0,
                    f"stain {name} must be 3 optical densities in [0, 2], got {vec}")
        require(0 < self.h_gain <= 4 and 0 < self.e_gain <= 4,
                f"stain gains must be in (0, 4], got {self.h_gain}, {self.e_gain}")
        require(len(self.glass) == 3 and all(0 <= g <= 255 for g in self.glass),
                f"stain glass must be an RGB colour, got {self.glass}")
        require(0 <= self.noise <= 50, f"stain noise must be 0..50 grey levels, got {self.noise}")
        require(0 <= self.blur_um <= 4, f"stain blur_um must be 0..4 um, got {self.blur_um}")


#: The cohort's sites (TCGA tissue-source-site codes of the demo slides, then more for larger sets).
#: Hematoxylin from bluish to purple, eosin from pale pink to magenta, scanners from clean to noisy and
#: soft: site differences larger than the colour differences between tissue classes.
SITES: dict[str, Stain] = {
    "A1": Stain(hematoxylin=(0.65, 0.70, 0.29), eosin=(0.07, 0.99, 0.11), h_gain=1.0, e_gain=1.0,
                glass=(242, 240, 245), noise=2.0, blur_um=0.0),
    "A2": Stain(hematoxylin=(0.80, 0.62, 0.15), eosin=(0.02, 0.75, 0.30), h_gain=1.35, e_gain=0.6,
                glass=(236, 238, 246), noise=5.0, blur_um=0.4),
    "B6": Stain(hematoxylin=(0.45, 0.80, 0.35), eosin=(0.15, 1.10, 0.02), h_gain=0.7, e_gain=1.45,
                glass=(248, 236, 238), noise=3.5, blur_um=0.25),
    "C8": Stain(hematoxylin=(0.60, 0.60, 0.45), eosin=(0.05, 0.90, 0.25), h_gain=1.15, e_gain=0.85,
                glass=(240, 242, 240), noise=7.0, blur_um=0.5),
    "D8": Stain(hematoxylin=(0.72, 0.75, 0.20), eosin=(0.10, 0.85, 0.05), h_gain=0.85, e_gain=1.25,
                glass=(245, 235, 242), noise=1.5, blur_um=0.15),
    "E2": Stain(hematoxylin=(0.55, 0.68, 0.40), eosin=(0.04, 1.05, 0.18), h_gain=1.25, e_gain=1.1,
                glass=(238, 240, 248), noise=4.5, blur_um=0.35),
}


def random_stain(u: Callable[[], float]) -> Stain:
    """A stain drawn from a broad range around H&E (the teacher's pool and its augmentation).

    `u()` returns uniforms in [0, 1) (e.g. `random.Random(seed).random`); draws are basic arithmetic.
    """
    def around(base: tuple[float, float, float], spread: float) -> tuple[float, float, float]:
        return tuple(max(0.01, b + spread * (2 * u() - 1)) for b in base)  # type: ignore[return-value]

    return Stain(
        hematoxylin=around((0.65, 0.70, 0.29), 0.22),
        eosin=around((0.07, 0.95, 0.15), 0.2),
        h_gain=0.55 + 0.95 * u(),
        e_gain=0.5 + 1.0 * u(),
        glass=(int(228 + 24 * u()), int(228 + 24 * u()), int(232 + 20 * u())),
        noise=1.0 + 7.0 * u(),
        blur_um=0.6 * u(),
    )


# ------------------------------------------------------------------------------------- hashing


def _mix(h: np.ndarray) -> np.ndarray:
    """lowbias32 (C. Wellons): a well-mixed uint32 -> uint32 hash, exact integer arithmetic."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x7FEB352D)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x846CA68B)
    return h ^ (h >> np.uint32(16))


def cell_hash(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """uint32 hash of integer cell coordinates and a salt."""
    hx = _mix(np.asarray(ix).astype(np.int64).astype(np.uint32) ^ np.uint32(salt & 0xFFFFFFFF))
    return _mix(hx ^ (np.asarray(iy).astype(np.int64).astype(np.uint32) * np.uint32(0x9E3779B1)))


def hashed_uniform(h: np.ndarray, k: int) -> np.ndarray:
    """The k-th float64 uniform in [0, 1) derived from hash `h` (24 bits, exact)."""
    bits = _mix(h ^ np.uint32((k * 0x85EBCA6B) & 0xFFFFFFFF)) >> np.uint32(8)
    return bits.astype(np.float64) / 16777216.0


def grid_hash(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """`cell_hash` of integer-valued cell coordinates, hashed once per distinct cell then gathered.

    Equal to `cell_hash(ix, iy, salt)`; pixels share cells, so hashing the covering grid is far cheaper.
    """
    ix = np.asarray(ix)
    iy = np.asarray(iy)
    x0, y0 = int(ix.min()), int(iy.min())
    gx = np.arange(x0, int(ix.max()) + 1)
    gy = np.arange(y0, int(iy.max()) + 1)
    grid = cell_hash(gx[None, :], gy[:, None], salt)
    return grid[(iy - y0).astype(np.intp), (ix - x0).astype(np.intp)]


def value_noise(x: np.ndarray, y: np.ndarray, cell_um: float, salt: int) -> np.ndarray:
    """Smooth noise in [0, 1): hashed values on a grid, smoothstep-interpolated (basic operations).

    For a row of x [1, w] and a column of y [h, 1], rows of the grid are interpolated along x first
    (the same arithmetic, done once per grid row instead of once per pixel).
    """
    gx, gy = x / cell_um, y / cell_um
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = gx - ix, gy - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    x0, y0 = int(ix.min()), int(iy.min())
    cols = np.arange(x0, int(ix.max()) + 2)
    rows = np.arange(y0, int(iy.max()) + 2)
    values = hashed_uniform(cell_hash(cols[None, :], rows[:, None], salt), 0)
    i, j = (iy - y0).astype(np.intp), (ix - x0).astype(np.intp)
    if x.ndim == 2 and y.ndim == 2 and x.shape[0] == 1 and y.shape[1] == 1:
        along = values[:, j[0]] * (1 - fx) + values[:, j[0] + 1] * fx  # [grid rows, w]
        return along[i[:, 0]] * (1 - fy) + along[i[:, 0] + 1] * fy
    top = values[i, j] * (1 - fx) + values[i, j + 1] * fx
    bottom = values[i + 1, j] * (1 - fx) + values[i + 1, j + 1] * fx
    return top * (1 - fy) + bottom * fy


def _tri(t: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1 (a sine's shape from basic operations)."""
    return np.abs(2 * (t - np.floor(t)) - 1)


# ------------------------------------------------------------------------------------- nuclei


@dataclasses.dataclass(frozen=True)
class _Nuclei:
    """Nucleus centres (um), semi-axes (um), unit orientation, amplitude, and how vesicular they are."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    ox: np.ndarray
    oy: np.ndarray
    amp: np.ndarray
    rim: float = 0.0  # extra density at the membrane (vesicular chromatin)
    nucleolus: float = 0.0  # extra density of a central dot


def _grid_nuclei(
    x0: float, y0: float, x1: float, y1: float, *, pitch: float, salt: int, presence: float,
    radius: tuple[float, float], aspect: tuple[float, float], amp: tuple[float, float],
    margin: float,
) -> tuple[_Nuclei, np.ndarray]:
    """Nuclei on a jittered grid over the um box (with a margin); returns them and their cell hashes."""
    ixs = np.arange(np.floor((x0 - margin) / pitch), np.floor((x1 + margin) / pitch) + 1)
    iys = np.arange(np.floor((y0 - margin) / pitch), np.floor((y1 + margin) / pitch) + 1)
    ix, iy = (a.ravel() for a in np.meshgrid(ixs, iys))
    h = cell_hash(ix, iy, salt)
    keep = hashed_uniform(h, 1) < presence
    ix, iy, h = ix[keep], iy[keep], h[keep]
    cx = (ix + 0.1 + 0.8 * hashed_uniform(h, 2)) * pitch
    cy = (iy + 0.1 + 0.8 * hashed_uniform(h, 3)) * pitch
    a = radius[0] + (radius[1] - radius[0]) * hashed_uniform(h, 4)
    b = a * (aspect[0] + (aspect[1] - aspect[0]) * hashed_uniform(h, 5))
    vx, vy = 2 * hashed_uniform(h, 6) - 1, 2 * hashed_uniform(h, 7) - 1
    norm = np.sqrt(vx * vx + vy * vy)
    norm = np.where(norm < 1e-3, 1.0, norm)
    vx = np.where(norm == 1.0, 1.0, vx)
    amplitude = amp[0] + (amp[1] - amp[0]) * hashed_uniform(h, 8)
    return _Nuclei(cx=cx, cy=cy, a=a, b=b, ox=vx / norm, oy=vy / norm, amp=amplitude), h


def _splat_nuclei(out: np.ndarray, nuc: _Nuclei, x0: float, y0: float, mpp: float) -> None:
    """Max-composite nucleus densities into `out` [h, w] whose pixel (0, 0) centre is at (x0, y0) um.

    Every nucleus is evaluated in a square window around it; the per-pixel work is float32 (offsets
    from the nucleus centre are small, so nothing is lost), separable terms are formed per row/column.
    """
    n = nuc.cx.size
    if n == 0:
        return
    h, w = out.shape
    reach = float(nuc.a.max()) * 1.1
    win = int(np.ceil(2 * reach / mpp)) + 2
    i0 = np.floor((nuc.cy - reach - y0) / mpp).astype(np.int64)
    j0 = np.floor((nuc.cx - reach - x0) / mpp).astype(np.int64)
    di = np.arange(win)
    rows = i0[:, None] + di[None, :]  # [n, win]
    cols = j0[:, None] + di[None, :]
    f32 = np.float32
    px = (x0 + cols * mpp - nuc.cx[:, None]).astype(f32)[:, None, :]  # [n, 1, win]
    py = (y0 + rows * mpp - nuc.cy[:, None]).astype(f32)[:, :, None]  # [n, win, 1]
    cu, su = (nuc.ox / nuc.a).astype(f32)[:, None, None], (nuc.oy / nuc.a).astype(f32)[:, None, None]
    cv, sv = (nuc.ox / nuc.b).astype(f32)[:, None, None], (nuc.oy / nuc.b).astype(f32)[:, None, None]
    du = px * cu + py * su
    dv = py * cv - px * sv
    rho2 = du * du + dv * dv
    inside = np.clip((1 - rho2) * f32(6), 0, 1)  # soft edge over the outer sixth
    dens = inside * nuc.amp.astype(f32)[:, None, None]
    if nuc.rim:
        dens += f32(nuc.rim) * inside * np.clip((rho2 - f32(0.45)) * f32(3), 0, 1)
    if nuc.nucleolus:
        dens += f32(nuc.nucleolus) * np.clip((f32(0.06) - rho2) * f32(40), 0, 1)
    ok = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :] & (dens > 0)
    flat = (rows * w)[:, :, None] + cols[:, None, :]
    np.maximum.at(out.reshape(-1), flat[ok], dens[ok].astype(np.float64))


# ------------------------------------------------------------------------------------- classes


@dataclasses.dataclass(frozen=True)
class _Canvas:
    """Pixel-centre coordinates (um) of the rendered rectangle and its region parameters."""

    x: np.ndarray  # [1, w]
    y: np.ndarray  # [h, 1]
    mpp: float
    seed: int
    orient: tuple[float, float]  # the region's fibre direction (unit vector)
    h_gain: float  # the region's staining intensities
    e_gain: float

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the rectangle."""
        return (self.y.shape[0], self.x.shape[1])

    def box(self) -> tuple[float, float, float, float]:
        """The um box of the rectangle: (x0, y0, x1, y1) of its pixel centres."""
        return (float(self.x[0, 0]), float(self.y[0, 0]), float(self.x[0, -1]), float(self.y[-1, 0]))

    def nuclei(self, nuc: _Nuclei) -> np.ndarray:
        """Density map of `nuc` over the rectangle."""
        out = np.zeros(self.shape)
        _splat_nuclei(out, nuc, float(self.x[0, 0]), float(self.y[0, 0]), self.mpp)
        return out


def _fibres(c: _Canvas, period: float, salt: int) -> np.ndarray:
    """Wavy collagen fibres along the region's direction: a triangle wave of the across-fibre position."""
    ox, oy = c.orient
    along = c.x * ox + c.y * oy
    across = c.y * ox - c.x * oy
    wobble = 3.0 * _tri(along / 37.0) + 2.0 * value_noise(c.x, c.y, 23.0, salt)
    return _tri((across + wobble) / period)


def _stroma(c: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = c.box()
    nuc, _ = _grid_nuclei(x0, y0, x1, y1, pitch=12.0, salt=c.seed * 7 + 3, presence=0.75,
                          radius=(5.0, 7.5), aspect=(0.18, 0.28), amp=(0.8, 1.0), margin=8.0)
    ox, oy = c.orient  # spindle nuclei lie along the fibres
    nuc = dataclasses.replace(nuc, ox=np.full_like(nuc.ox, ox), oy=np.full_like(nuc.oy, oy))
    fibres = _fibres(c, 4.5, c.seed * 7 + 4)
    eos = 0.16 + 0.3 * fibres + 0.08 * value_noise(c.x, c.y, 15.0, c.seed * 7 + 5)
    return c.nuclei(nuc) + 0.06 + 0.04 * fibres, eos


def _nuclei_class(c: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = c.box()
    nuc, _ = _grid_nuclei(x0, y0, x1, y1, pitch=6.4, salt=c.seed * 7 + 1, presence=0.82,
                          radius=(2.1, 2.8), aspect=(0.85, 1.0), amp=(0.85, 1.05), margin=4.0)
    eos = 0.12 + 0.1 * value_noise(c.x, c.y, 9.0, c.seed * 7 + 2)
    return c.nuclei(nuc), eos


def _tumour(c: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = c.box()
    nuc, _ = _grid_nuclei(x0, y0, x1, y1, pitch=10.5, salt=c.seed * 7 + 6, presence=0.9,
                          radius=(3.8, 5.8), aspect=(0.55, 0.95), amp=(0.35, 0.55), margin=7.0)
    nuc = dataclasses.replace(nuc, rim=0.4, nucleolus=0.45)
    eos = 0.3 + 0.12 * value_noise(c.x, c.y, 7.0, c.seed * 7 + 7)
    return c.nuclei(nuc), eos


def _gland(c: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Glands on a coarse jittered grid: lumen, epithelial band with radial nuclei, stroma between."""
    pitch, band = 58.0, 9.0
    x0, y0, x1, y1 = c.box()
    gx = np.arange(np.floor((x0 - pitch) / pitch), np.floor((x1 + pitch) / pitch) + 1)
    gy = np.arange(np.floor((y0 - pitch) / pitch), np.floor((y1 + pitch) / pitch) + 1)
    gix, giy = (a.ravel() for a in np.meshgrid(gx, gy))
    gh = cell_hash(gix, giy, c.seed * 7 + 8)
    gcx = (gix + 0.3 + 0.4 * hashed_uniform(gh, 1)) * pitch
    gcy = (giy + 0.3 + 0.4 * hashed_uniform(gh, 2)) * pitch
    lumen = 9.0 + 7.0 * hashed_uniform(gh, 3)

    def nearest(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the nearest gland's centre minus its lumen radius, and that gland's index."""
        best = np.full(np.broadcast_shapes(px.shape, py.shape), np.inf)
        which = np.zeros(best.shape, np.int64)
        for k in range(gcx.size):
            d = np.sqrt((px - gcx[k]) ** 2 + (py - gcy[k]) ** 2) - lumen[k]
            closer = d < best
            best = np.where(closer, d, best)
            which = np.where(closer, k, which)
        return best, which

    # Depth below each gland's lumen edge (< 0 in the lumen, [0, band) in the epithelium), drawn gland by
    # gland in the window it can reach: the nearest gland wins.
    h, w = c.shape
    depth = np.full((h, w), np.inf)
    reach = float(lumen.max()) + band + 1.0
    for k in range(gcx.size):
        j0 = max(0, int(np.floor((gcx[k] - reach - x0) / c.mpp)))
        j1 = min(w, int(np.ceil((gcx[k] + reach - x0) / c.mpp)) + 1)
        i0 = max(0, int(np.floor((gcy[k] - reach - y0) / c.mpp)))
        i1 = min(h, int(np.ceil((gcy[k] + reach - y0) / c.mpp)) + 1)
        if j0 >= j1 or i0 >= i1:
            continue
        d = np.sqrt((c.x[:, j0:j1] - gcx[k]) ** 2 + (c.y[i0:i1] - gcy[k]) ** 2) - lumen[k]
        np.minimum(depth[i0:i1, j0:j1], d, out=depth[i0:i1, j0:j1])
    between = 0.14 + 0.14 * _fibres(c, 5.0, c.seed * 7 + 9)
    eos = np.where(depth < 0, 0.03, np.where(depth < band, 0.34, between))
    # Epithelial nuclei: candidates on a fine grid, kept in the band, oriented towards the lumen.
    cand, _ = _grid_nuclei(x0, y0, x1, y1, pitch=4.6, salt=c.seed * 7 + 10, presence=0.95,
                           radius=(2.6, 3.4), aspect=(0.5, 0.65), amp=(0.8, 1.0), margin=4.0)
    dist, which = nearest(cand.cx, cand.cy)
    keep = (dist > 1.5) & (dist < band - 2.0)
    rx, ry = cand.cx - gcx[which], cand.cy - gcy[which]
    rn = np.sqrt(rx * rx + ry * ry) + 1e-9
    epi = _Nuclei(cx=cand.cx[keep], cy=cand.cy[keep], a=cand.a[keep], b=cand.b[keep],
                  ox=(rx / rn)[keep], oy=(ry / rn)[keep], amp=cand.amp[keep])
    return c.nuclei(epi), eos


_RENDERERS: dict[str, Callable[[_Canvas], tuple[np.ndarray, np.ndarray]]] = {
    "gland": _gland, "nuclei": _nuclei_class, "stroma": _stroma, "tumour": _tumour,
}
#: Per-class (hematoxylin, eosin) scales that give every class the same mean densities (0.2, 0.3),
#: measured over many tiles (tests/test_synth_tissue.py checks them): the amount of each stain says
#: nothing about the class, only where it lies does.
_CLASS_SCALE: dict[str, tuple[float, float]] = {
    "gland": (2.06, 1.245), "nuclei": (0.694, 1.596), "stroma": (1.02, 0.783), "tumour": (0.858, 0.761),
}


# ------------------------------------------------------------------------------------- colour


@functools.lru_cache(maxsize=1)
def _transmission_q16() -> np.ndarray:
    """exp(-OD) in Q16 for OD bins of 1/_OD_STEPS (bin centres), made with exp_neg: exact everywhere."""
    n = int(_OD_MAX * _OD_STEPS)
    return np.array([int(round(65536 * exp_neg((q + 0.5) / _OD_STEPS))) for q in range(n)], np.int64)


def stain_rgb(hema: np.ndarray, eos: np.ndarray, stain: Stain, noise_salt: int,
              origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """uint8 RGB from hematoxylin and eosin density maps by Beer-Lambert, plus hashed scanner noise.

    `origin` (level-0 pixel x, y of the map's top-left) keys the noise so adjacent tiles differ.
    """
    lut = _transmission_q16()
    h, w = hema.shape
    rows = np.arange(h, dtype=np.int64)[:, None] + origin[1]
    cols = np.arange(w, dtype=np.int64)[None, :] + origin[0]
    sd_q16 = int(round(stain.noise / 104.1249 * 65536))  # the hashed triangle noise has sd 104.12
    if sd_q16:
        # Two hashes per pixel give six bytes: a triangle-distributed noise value per channel.
        first = cell_hash(cols, rows, noise_salt)
        second = _mix(first ^ np.uint32(0x68E31DA4))
        byte_pairs = (first, first >> np.uint32(16), second)
    out = np.empty((h, w, 3), np.uint8)
    for ch in range(3):
        od = hema * (stain.h_gain * stain.hematoxylin[ch]) + eos * (stain.e_gain * stain.eosin[ch])
        q = np.clip(np.floor(od * _OD_STEPS), 0, lut.size - 1).astype(np.intp)
        level = (stain.glass[ch] * lut[q] + 32768) >> 16
        if sd_q16:
            pair = byte_pairs[ch]
            tri = (pair & np.uint32(255)).astype(np.int64) + ((pair >> np.uint32(8)) & np.uint32(255)) - 255
            level = level + ((tri * sd_q16 + 32768) >> 16)
        out[..., ch] = np.clip(level, 0, 255)
    return out


# ------------------------------------------------------------------------------------- render


def region_params(region_hash: int) -> tuple[tuple[float, float], float, float]:
    """(fibre direction, H gain, E gain) of a tissue region, from its hash (exact arithmetic)."""
    h = np.array([region_hash & 0xFFFFFFFF], np.uint32)
    vx, vy = float(2 * hashed_uniform(h, 11)[0] - 1), float(2 * hashed_uniform(h, 12)[0] - 1)
    norm = (vx * vx + vy * vy) ** 0.5
    orient = (vx / norm, vy / norm) if norm > 1e-3 else (1.0, 0.0)
    return orient, float(0.55 + 0.9 * hashed_uniform(h, 13)[0]), float(0.55 + 0.9 * hashed_uniform(h, 14)[0])


def area_downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor` x `factor` blocks of a uint8 [H, W, 3] image, rounded half up (exact integers)."""
    h, w = img.shape[0] // factor, img.shape[1] // factor
    blocks = img[:h * factor, :w * factor].reshape(h, factor, w, factor, -1).astype(np.int32)
    total = blocks.sum(axis=(1, 3))
    return ((total + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def render_densities(label: str, x0_px: int, y0_px: int, width: int, height: int, mpp: float,
                     *, seed: int, region_hash: int) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin densities [height, width] of tissue class `label` over a pixel rectangle.

    Level-0 pixel (x0_px, y0_px) is the top-left; `mpp` is the level-0 resolution; the same tissue
    (same `seed`) is drawn at any resolution. `region_hash` sets the region's fibre direction and
    staining intensities.
    """
    if label not in _RENDERERS:
        raise ValueError(f"unknown tissue class {label!r}; known: {', '.join(CLASSES)}")
    orient, h_gain, e_gain = region_params(region_hash)
    canvas = _Canvas(
        x=((np.arange(width, dtype=np.float64) + x0_px + 0.5) * mpp)[None, :],
        y=((np.arange(height, dtype=np.float64) + y0_px + 0.5) * mpp)[:, None],
        mpp=float(mpp), seed=int(seed), orient=orient, h_gain=h_gain, e_gain=e_gain,
    )
    hema, eos = _RENDERERS[label](canvas)
    h_scale, e_scale = _CLASS_SCALE[label]
    return hema * (h_scale * h_gain), np.broadcast_to(eos, canvas.shape) * (e_scale * e_gain)


def render_tile(label: str, stain: Stain, *, px: int, mpp: float = 0.5, seed: int = 0,
                region_hash: int = 0, origin: tuple[int, int] = (0, 0), supersample: int = 1) -> np.ndarray:
    """One uint8 RGB tile [px, px, 3] of tissue class `label` as scanned with `stain` (exact bytes).

    `supersample` > 1 scans at mpp / supersample and area-averages down (integer arithmetic), the way
    a tiler makes a 1 um/px tile from a 0.5 um/px scan; `origin` is then in that finer grid's pixels.
    """
    if supersample > 1:
        fine = render_tile(label, stain, px=px * supersample, mpp=mpp / supersample, seed=seed,
                           region_hash=region_hash, origin=origin)
        return area_downsample(fine, supersample)
    margin = 0
    if stain.blur_um > 0:
        margin = int(np.ceil(3 * stain.blur_um / mpp))  # render a margin so the blur has real neighbours
    size = px + 2 * margin
    hema, eos = render_densities(label, origin[0] - margin, origin[1] - margin, size, size, mpp,
                                 seed=seed, region_hash=region_hash)
    rgb = stain_rgb(hema, eos, stain, seed, (origin[0] - margin, origin[1] - margin))
    if margin:
        rgb = gaussian_blur(rgb, 2 * margin + 1, stain.blur_um / mpp)[margin:-margin, margin:-margin]
    return np.ascontiguousarray(rgb)
