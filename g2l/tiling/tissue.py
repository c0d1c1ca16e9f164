"""Tissue detection on a low-resolution RGB image: Otsu on HSV saturation, pen marks excluded, cleaned up."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

# Background glass has saturation well under this (0..255 scale); it keeps Otsu from splitting pure
# background noise into "tissue" on an empty slide.
MIN_OTSU_THRESHOLD = 12.0
# Pen ink: blue/green hues are absent from H&E (eosin is pink-red, haematoxylin purple, hue >= ~255 deg).
PEN_HUE_DEG = (60.0, 250.0)
PEN_MIN_SATURATION = 60.0
# Black ink (and dust) is far darker than any stained tissue at thumbnail scale.
PEN_MAX_VALUE = 50.0


@dataclasses.dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask over a low-resolution image, with what produced it."""

    mask: np.ndarray
    threshold: float
    pen_fraction: float


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees (0..360), saturation and value on a 0..255 scale, for a uint8 HxWx3 image."""
    img = rgb.astype(np.float32)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    vmax = img.max(axis=-1)
    vmin = img.min(axis=-1)
    delta = vmax - vmin
    sat = np.where(vmax > 0, delta / np.maximum(vmax, 1e-6) * 255.0, 0.0)
    safe = np.maximum(delta, 1e-6)
    hue = np.where(
        vmax == r, ((g - b) / safe) % 6.0, np.where(vmax == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    hue = np.where(delta > 0, hue * 60.0, 0.0)
    return hue.astype(np.float32), sat.astype(np.float32), vmax


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values on a 0..255 scale (256 bins)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 256.0))
    hist = hist.astype(np.float64)
    total = hist.sum()
    if total == 0:
        return MIN_OTSU_THRESHOLD
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def pen_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of blue, green or black pen ink (dilated a little to take the stroke edges too)."""
    hue, sat, val = rgb_to_hsv(rgb)
    coloured = (sat >= PEN_MIN_SATURATION) & (hue >= PEN_HUE_DEG[0]) & (hue < PEN_HUE_DEG[1])
    black = val < PEN_MAX_VALUE
    pen = coloured | black
    if pen.any():
        pen = ndimage.binary_dilation(pen, structure=_disk(2))
    return pen


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy) <= radius * radius


def _remove_small(mask: np.ndarray, max_px: float) -> np.ndarray:
    """Drop connected components of at most `max_px` pixels."""
    if max_px <= 0 or not mask.any():
        return mask
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes > max_px
    keep[0] = False
    return keep[labels]


def detect_tissue(
    rgb: np.ndarray,
    *,
    mpp: float,
    threshold: float | None = None,
    pen_filter: bool = True,
    max_hole_mm2: float = 0.05,
    min_tissue_mm2: float = 0.005,
) -> TissueMask:
    """Tissue mask of a low-resolution slide image whose pixels are `mpp` um wide.

    Saturation separates stained tissue from glass; Otsu picks the level unless `threshold` is given.
    Pen ink is masked out before the threshold is chosen (it would drag Otsu up) and removed from the
    result; closing then opening smooth the mask; holes up to `max_hole_mm2` (lumina, fat, removed
    pen strokes) are filled and specks up to `min_tissue_mm2` dropped.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"detect_tissue needs an HxWx3 RGB image, got shape {rgb.shape}")
    rgb = np.ascontiguousarray(rgb[..., :3])
    _, sat, _ = rgb_to_hsv(rgb)
    sat = ndimage.gaussian_filter(sat, sigma=1.0)
    pen = pen_mask(rgb) if pen_filter else np.zeros(sat.shape, dtype=bool)
    if threshold is None:
        candidates = sat[~pen]
        threshold = max(otsu_threshold(candidates), MIN_OTSU_THRESHOLD) if candidates.size else 255.0
    mask = (sat > threshold) & ~pen
    mask = ndimage.binary_closing(mask, structure=_disk(2), border_value=0)
    mask = ndimage.binary_opening(mask, structure=_disk(1), border_value=0)
    px_per_mm2 = 1e6 / (mpp * mpp)
    mask = _remove_small(mask, min_tissue_mm2 * px_per_mm2)
    if max_hole_mm2 > 0:
        holes = ~mask & ndimage.binary_fill_holes(mask)
        small_holes = holes & ~_remove_small(holes, max_hole_mm2 * px_per_mm2)
        mask = mask | small_holes
    return TissueMask(mask=mask, threshold=float(threshold), pen_fraction=float(pen.mean()))


def tile_tissue_fractions(
    mask: np.ndarray, xs: np.ndarray, ys: np.ndarray, size0: int, scale_x: float, scale_y: float
) -> np.ndarray:
    """Fraction of tissue pixels under each tile (x, y, size0 in level-0 px; mask px = level-0 px / scale)."""
    h, w = mask.shape
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    x0 = np.clip(np.floor(xs / scale_x + 0.5).astype(np.int64), 0, w)
    x1 = np.clip(np.floor((xs + size0) / scale_x + 0.5).astype(np.int64), 0, w)
    y0 = np.clip(np.floor(ys / scale_y + 0.5).astype(np.int64), 0, h)
    y1 = np.clip(np.floor((ys + size0) / scale_y + 0.5).astype(np.int64), 0, h)
    # A tile smaller than a mask pixel still samples the pixel it sits on.
    x1 = np.maximum(x1, np.minimum(x0 + 1, w))
    y1 = np.maximum(y1, np.minimum(y0 + 1, h))
    x0 = np.minimum(x0, x1 - 1)
    y0 = np.minimum(y0, y1 - 1)
    area = (x1 - x0) * (y1 - y0)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (inside / np.maximum(area, 1)).astype(np.float32)
