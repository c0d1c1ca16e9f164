"""Tissue detection on a low-resolution RGB image: Otsu on HSV saturation, pen marks excluded, cleaned up."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

# Background glass has saturation well under this (0..255 scale); it keeps Otsu from splitting pure
# background noise into "tissue" on an empty slide.
MIN_OTSU_THRESHOLD = 12.0
# Pen ink: saturated blue (~200-235 deg) and green hues are absent from H&E: eosin is pink-red and dense
# haematoxylin, even on bluish scans, stays at ~240 deg or above (purple).
PEN_HUE_DEG = (60.0, 235.0)
PEN_MIN_SATURATION = 80.0
# Black ink (and dust) is far darker than any stained tissue at thumbnail scale.
PEN_MAX_VALUE = 50.0


@dataclasses.dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask over a low-resolution image, with what produced it."""

    mask: np.ndarray
    threshold: float
    pen_fraction: float


@functools.cache
def opencv() -> Any:
    """The cv2 module (OpenCV), with an install hint when it is missing.

    OpenCV's own thread pool is switched off: tiling already runs one tile per core, and OpenCV's
    workers spin while they wait, which on a busy machine costs ~10% of the CPU spent per tile.
    """
    try:
        import cv2
    except ImportError as exc:  # declared in pyproject; the hint is for hand-made environments
        raise ImportError("tissue detection needs OpenCV: pip install opencv-python-headless") from exc
    cv2.setNumThreads(1)
    return cv2


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees (0..360), saturation and value on a 0..255 scale, for a uint8 HxWx3 image."""
    cv2 = opencv()
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8), cv2.COLOR_RGB2HSV_FULL)
    hue = hsv[..., 0].astype(np.float32) * (360.0 / 256.0)
    return hue, hsv[..., 1].astype(np.float32), hsv[..., 2].astype(np.float32)


def _disk(radius: int) -> np.ndarray:
    return opencv().getStructuringElement(opencv().MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def binary_morph(mask: np.ndarray, op: str, radius: int) -> np.ndarray:
    """Binary dilate/erode/close/open with a disk; pixels outside the image count as background."""
    cv2 = opencv()
    ops = {
        "dilate": cv2.MORPH_DILATE,
        "erode": cv2.MORPH_ERODE,
        "close": cv2.MORPH_CLOSE,
        "open": cv2.MORPH_OPEN,
    }
    pad = 2 * radius + 1
    padded = np.pad(mask.astype(np.uint8), pad)
    out = cv2.morphologyEx(padded, ops[op], _disk(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out[pad:-pad, pad:-pad].astype(bool)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values on a 0..255 scale (256 bins)."""
    # 256 unit-wide bins from 0: a value's bin is its floor, so counting floors is np.histogram's
    # result exactly, ~5x faster (values outside [0, 256) are not counted, as np.histogram's range does).
    flat = np.asarray(values, dtype=np.float64).ravel()
    flat = flat[(flat >= 0.0) & (flat < 256.0)]
    hist = np.bincount(flat.astype(np.intp), minlength=256).astype(np.float64)
    edges = np.arange(257, dtype=np.float64)
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


def pen_mask(rgb: np.ndarray, hsv: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Pixels of blue, green or black pen ink (dilated a little to take the stroke edges too)."""
    hue, sat, val = hsv if hsv is not None else rgb_to_hsv(rgb)
    coloured = (sat >= PEN_MIN_SATURATION) & (hue >= PEN_HUE_DEG[0]) & (hue < PEN_HUE_DEG[1])
    black = val < PEN_MAX_VALUE
    pen = coloured | black
    if pen.any():
        pen = binary_morph(pen, "dilate", 2)
    return pen


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of a boolean mask: (labels, pixel count per label; label 0 is the rest).

    OpenCV's labelling with connectivity 4 gives the components of scipy.ndimage.label's default
    structure (tests/test_tissue_detection.py compares them) without importing scipy, whose ndimage
    costs ~0.4 s of every `g2l tile` call's start-up.
    """
    cv2 = opencv()
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    return labels, stats[:, cv2.CC_STAT_AREA]


def _remove_small(mask: np.ndarray, max_px: float) -> np.ndarray:
    """Drop 4-connected components of at most `max_px` pixels."""
    if max_px <= 0 or not mask.any():
        return mask
    labels, sizes = _components(mask)
    keep = sizes > max_px
    keep[0] = False
    return keep[labels]


def _small_holes(mask: np.ndarray, max_px: float) -> np.ndarray:
    """Background components of at most `max_px` pixels that do not touch the image border.

    The same pixels as `~mask & binary_fill_holes(mask)` (holes: background not 4-connected to the
    border) minus the holes `_remove_small` would keep; one labelling serves both.
    """
    labels, sizes = _components(~mask)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small = sizes <= max_px
    small[0] = False  # label 0 is the tissue itself
    small[border] = False
    return small[labels]


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
    hsv = rgb_to_hsv(rgb)
    pen = pen_mask(rgb, hsv) if pen_filter else np.zeros(hsv[1].shape, dtype=bool)
    sat = opencv().GaussianBlur(hsv[1], (0, 0), 1.0)
    if threshold is None:
        candidates = sat[~pen]
        threshold = max(otsu_threshold(candidates), MIN_OTSU_THRESHOLD) if candidates.size else 255.0
    mask = (sat > threshold) & ~pen
    mask = binary_morph(mask, "close", 2)
    mask = binary_morph(mask, "open", 1)
    px_per_mm2 = 1e6 / (mpp * mpp)
    mask = _remove_small(mask, min_tissue_mm2 * px_per_mm2)
    if max_hole_mm2 > 0:
        mask = mask | _small_holes(mask, max_hole_mm2 * px_per_mm2)
    return TissueMask(mask=mask, threshold=float(threshold), pen_fraction=float(pen.mean()))


def tile_tissue_fractions(
    mask: np.ndarray, xs: np.ndarray, ys: np.ndarray, size0: int, scale_x: float, scale_y: float
) -> np.ndarray:
    """Fraction of tissue pixels under each tile (x, y, size0 in level-0 px; mask px = level-0 px / scale)."""
    h, w = mask.shape
    # Summed-area table (row 0 and column 0 zero): OpenCV's integral is exact in int32 up to 2^31 mask
    # pixels and ~5x faster than two numpy cumsums; larger masks keep numpy's int64.
    if h * w < 2**31:
        integral = opencv().integral(np.ascontiguousarray(mask, dtype=np.uint8), sdepth=opencv().CV_32S)
    else:
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
