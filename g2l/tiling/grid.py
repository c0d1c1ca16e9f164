"""Tile geometry: which pyramid level to read, how many pixels, and the non-overlapping level-0 grid."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


class LevelError(ValueError):
    """No pyramid level of the slide reaches the target resolution."""


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How one slide is cut: read `read_px` square at `level`, resize to `tile_px`; tiles `size0` apart."""

    level: int
    level_mpp: float
    downsample: float
    read_px: int
    tile_px: int
    size0: int

    @property
    def identity(self) -> bool:
        """True when the read needs no resampling."""
        return self.read_px == self.tile_px

    @property
    def tile_mpp(self) -> float:
        """The resolution the tiles actually have (um/px)."""
        return self.level_mpp * self.read_px / self.tile_px


def _ceil4(value: float) -> float:
    """`value` rounded up to 4 decimals (a suggested target that rounds down would still fail)."""
    return math.ceil(value * 1e4 - 1e-9) / 1e4


def plan_tiles(
    mpp0: float,
    level_downsamples: list[float] | tuple[float, ...],
    *,
    target_mpp: float,
    tile_px: int,
    tolerance: float = 0.05,
) -> TilePlan:
    """Pick the coarsest level that still has at least the target resolution, and the read size there.

    A level within `tolerance` (relative) of the target is read at `tile_px` directly (e.g. a 40x scan at
    0.2527 um/px gives 0.5054 at level 1, read as is); otherwise `read_px = round(tile_px * target /
    level_mpp)` is read and area-averaged down to `tile_px`.
    """
    if not mpp0 > 0:
        raise LevelError(f"level-0 mpp must be positive, got {mpp0}")
    best = None
    for level, ds in enumerate(level_downsamples):
        level_mpp = mpp0 * float(ds)
        if level_mpp <= target_mpp * (1 + tolerance) and (best is None or level_mpp > best[1]):
            best = (level, level_mpp, float(ds))
    if best is None:
        # A coarser target (a larger um/px number) is reachable; a finer one would need upsampling.
        raise LevelError(
            f"the slide's finest level is {mpp0:.4g} um/px, coarser than target_mpp {target_mpp}; "
            f"raise tiling.target_mpp to at least {_ceil4(mpp0 / (1 + tolerance)):g} (fewer um/px is finer) "
            "or drop the slide from the manifest"
        )
    level, level_mpp, ds = best
    if abs(level_mpp - target_mpp) <= tolerance * target_mpp:
        read_px = tile_px
    else:
        read_px = max(tile_px, int(round(tile_px * target_mpp / level_mpp)))
    size0 = int(round(read_px * ds))
    return TilePlan(
        level=level, level_mpp=level_mpp, downsample=ds, read_px=read_px, tile_px=tile_px, size0=size0
    )


def grid(width0: int, height0: int, size0: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (x, y) of all whole tiles of edge `size0` on a grid anchored at (0, 0), row-major."""
    nx = max(0, width0 // size0)
    ny = max(0, height0 // size0)
    ys, xs = np.meshgrid(
        np.arange(ny, dtype=np.int64) * size0, np.arange(nx, dtype=np.int64) * size0, indexing="ij"
    )
    return xs.ravel(), ys.ravel()
