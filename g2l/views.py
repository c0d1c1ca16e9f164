"""Seeded augmented views: view v of a tile is a pure function of (seed, tile key, v).

G2L feeds the *same* augmented view to teacher and student. The embedding cache and the distillation
dataset both call `make_view`, so the student sees exactly the pixels the teacher saw. Every random
number comes from a generator seeded by sha256(f"{seed}:{tile_key}:{v}"), never from global RNG state,
so the result is the same in any process, thread or DataLoader worker, in any order. Every view,
v = 0 included, is augmented (random crop, flips, jitter, blur as configured); set all probabilities
to 0 for plain random crops.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from g2l.config import require

#: Version of the view algorithm (parameter draws and how they are applied). Part of the embedding
#: cache key: bump it whenever a change alters the pixels of any view, or cached teacher targets
#: would silently pair with different student inputs. tests/test_views_pinned.py guards it.
#: 1: torchvision float colour jitter and blur (bytes differed between CPUs); 2: integer jitter and
#: blur (g2l.exact_ops), the same bytes on every CPU.
VIEW_ALGORITHM_VERSION = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class ViewSpec:
    """How the K cached views of each tile are drawn (G2L defaults)."""

    views: int = 4
    seed: int = 0
    crop_px: int = 224
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    # brightness, contrast, saturation, hue
    color_jitter: tuple[float, float, float, float] = (0.15, 0.15, 0.1, 0.05)
    color_jitter_p: float = 0.5
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_px: int = 9

    def __post_init__(self) -> None:
        require(self.views >= 1, f"views must be >= 1, got {self.views}")
        require(self.crop_px >= 1, f"crop_px must be positive, got {self.crop_px}")
        for key in ("hflip_p", "vflip_p", "color_jitter_p", "blur_p"):
            p = getattr(self, key)
            require(0.0 <= p <= 1.0, f"{key} must be a probability in [0, 1], got {p}")
        require(len(self.color_jitter) == 4 and all(j >= 0 for j in self.color_jitter),
                f"color_jitter must be 4 non-negative numbers (brightness, contrast, saturation, hue), "
                f"got {self.color_jitter}")
        require(self.color_jitter[3] <= 0.5, f"color_jitter hue must be <= 0.5, got {self.color_jitter[3]}")
        require(len(self.blur_sigma) == 2 and 0 < self.blur_sigma[0] <= self.blur_sigma[1],
                f"blur_sigma must be (min, max) with 0 < min <= max, got {self.blur_sigma}")
        require(self.blur_kernel_px >= 1 and self.blur_kernel_px % 2 == 1,
                f"blur_kernel_px must be a positive odd number, got {self.blur_kernel_px}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (part of the cache key)."""
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True)
class ViewParams:
    """The explicit random parameters of one view (drawn by `view_params`)."""

    top: int
    left: int
    hflip: bool
    vflip: bool
    jitter: tuple[float, float, float, float] | None  # brightness, contrast, saturation factors; hue shift
    blur_sigma: float | None


def view_rng(seed: int, tile_key: str, v: int) -> np.random.Generator:
    """A generator private to one view: seeded by sha256(f"{seed}:{tile_key}:{v}")."""
    digest = hashlib.sha256(f"{seed}:{tile_key}:{v}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def view_params(height: int, width: int, tile_key: str, v: int, spec: ViewSpec) -> ViewParams:
    """Draw the parameters of view `v` of a tile; always the same draws in the same order."""
    if height < spec.crop_px or width < spec.crop_px:
        raise ValueError(f"tile {tile_key}: {height}x{width} px is smaller than crop_px {spec.crop_px}")
    rng = view_rng(spec.seed, tile_key, v)
    # Draw every number unconditionally so each parameter has a fixed position in the stream.
    u = rng.random(12)
    top = min(int(u[0] * (height - spec.crop_px + 1)), height - spec.crop_px)
    left = min(int(u[1] * (width - spec.crop_px + 1)), width - spec.crop_px)
    b, c, s, h = spec.color_jitter
    jitter = (
        1.0 + b * (2 * u[5] - 1),
        1.0 + c * (2 * u[6] - 1),
        1.0 + s * (2 * u[7] - 1),
        h * (2 * u[8] - 1),
    )
    lo, hi = spec.blur_sigma
    return ViewParams(
        top=top,
        left=left,
        hflip=bool(u[2] < spec.hflip_p),
        vflip=bool(u[3] < spec.vflip_p),
        jitter=tuple(float(j) for j in jitter) if u[4] < spec.color_jitter_p else None,  # type: ignore[arg-type]
        blur_sigma=float(lo + (hi - lo) * u[10]) if u[9] < spec.blur_p else None,
    )


def apply_view(tile: np.ndarray, params: ViewParams, spec: ViewSpec) -> np.ndarray:
    """Apply explicit view parameters to a uint8 HxWx3 tile; returns uint8 crop_px x crop_px x 3.

    Crop and flips are indexing; jitter and blur are integer arithmetic (`g2l.exact_ops`), so the
    bytes are the same on every CPU (ADR 0005).
    """
    from g2l import exact_ops

    crop = tile[params.top:params.top + spec.crop_px, params.left:params.left + spec.crop_px]
    if params.hflip:
        crop = crop[:, ::-1]
    if params.vflip:
        crop = crop[::-1]
    x = np.ascontiguousarray(crop)
    if params.jitter is not None:
        brightness, contrast, saturation, hue = params.jitter
        x = exact_ops.adjust_brightness(x, brightness)
        x = exact_ops.adjust_contrast(x, contrast)
        x = exact_ops.adjust_saturation(x, saturation)
        x = exact_ops.adjust_hue(x, hue)
    if params.blur_sigma is not None:
        x = exact_ops.gaussian_blur(x, spec.blur_kernel_px, params.blur_sigma)
    return x


def make_view(tile: np.ndarray, tile_key: str, v: int, spec: ViewSpec) -> np.ndarray:
    """View `v` of `tile` (uint8 HxWx3): uint8 crop_px x crop_px x 3, a pure function of (seed, key, v)."""
    if tile.dtype != np.uint8 or tile.ndim != 3 or tile.shape[2] != 3:
        raise ValueError(f"tile {tile_key}: expected uint8 HxWx3, got {tile.dtype} {tile.shape}")
    if not 0 <= v < spec.views:
        raise ValueError(f"tile {tile_key}: view index {v} outside 0..{spec.views - 1}")
    return apply_view(tile, view_params(tile.shape[0], tile.shape[1], tile_key, v, spec), spec)


def make_views(tile: np.ndarray, tile_key: str, spec: ViewSpec) -> np.ndarray:
    """All K views of a tile stacked: uint8 [K, crop_px, crop_px, 3]."""
    return np.stack([make_view(tile, tile_key, v, spec) for v in range(spec.views)])
