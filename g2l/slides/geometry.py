"""Pyramid geometry every backend shares: a level's true downsample per axis and the level pixel a
level-0 coordinate maps to.

Backend libraries disagree on levels whose size is not level 0's divided by a power of two (most Aperio
pyramids: 46000x32914 -> 11500x8228): openslide divides by the mean of the two axis ratios and paints at
the fractional position (bilinear), cuCIM and tiffslide divide by that mean and truncate, so the same
level-0 location gave pixels up to a level pixel apart, differing far from the origin. g2l defines it once:

* the true downsample of an axis is the integer factor k when the level's size is level 0's divided by k,
  rounded down or up (how scanners and pyramid writers build levels), else the plain size ratio;
* a level-0 coordinate x maps to the level pixel nearest to x / that downsample.

Every backend reads exactly that level pixel (openslide, which can only paint at fractional positions, as
near as its own mapping allows: see `nearest_native`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def axis_downsample(full: int, level: int) -> float:
    """The true downsample of one axis: k when `level` is `full / k` rounded down or up, else the ratio."""
    if level <= 0 or full <= 0:
        raise ValueError(f"level sizes must be positive, got {full} and {level}")
    ratio = full / level
    k = round(ratio)
    if k >= 1 and level in (full // k, -(-full // k)):
        return float(k)
    return ratio


def level_axis_downsamples(
    dimensions: Sequence[int], level_dimensions: Sequence[Sequence[int]]
) -> tuple[tuple[float, float], ...]:
    """(x, y) true downsample of every level, from level 0's and each level's (width, height)."""
    w0, h0 = int(dimensions[0]), int(dimensions[1])
    return tuple((axis_downsample(w0, int(w)), axis_downsample(h0, int(h))) for w, h in level_dimensions)


def to_level(coord0: int, downsample: float) -> int:
    """The level pixel nearest to level-0 coordinate `coord0` divided by `downsample` (halves round up)."""
    return math.floor(coord0 / downsample + 0.5)


def to_level_array(coords0: np.ndarray, downsample: float) -> np.ndarray:
    """`to_level` for an array of level-0 coordinates (int64 out)."""
    return np.floor(np.asarray(coords0, np.float64) / downsample + 0.5).astype(np.int64)


def exact_native(level_px: int, native_downsample: float, maps_to: Callable[[int], int]) -> int:
    """The level-0 coordinate a library needs to read `level_px`, given its own mapping `maps_to`.

    For libraries that truncate `x / their downsample` (cuCIM in float32, tiffslide in float64): one of
    the integers around `level_px * native_downsample` maps exactly onto `level_px` when that
    downsample is at least 1.
    """
    guess = level_px * native_downsample
    for candidate in (math.ceil(guess), math.floor(guess), math.ceil(guess) + 1, math.floor(guess) - 1):
        if maps_to(candidate) == level_px:
            return candidate
    raise ValueError(
        f"no level-0 coordinate maps to level pixel {level_px} at downsample {native_downsample}"
    )


def nearest_native(level_px: int, native_downsample: float) -> int:
    """For a library that paints at `x / downsample` exactly (openslide): the x whose position is nearest.

    The rest, at most half a level-0 pixel divided by the downsample (1/8 of a level pixel at 4x), is
    painted by openslide with bilinear interpolation; it is zero whenever `level_px * downsample` is an
    integer (every power-of-two pyramid).
    """
    return math.floor(level_px * native_downsample + 0.5)


def bilinear_offset(level_px: int, native_downsample: float) -> tuple[int, float]:
    """(x, a): the first level-0 x at or after `level_px`, and a = its fraction / the fraction step.

    openslide paints x / ds = level_px + f with f in [0, 1/ds); x + 1 paints f + 1/ds. For a read that
    is linear in f (bilinear), the value at f = 0 is q(x) * (1 + a) - q(x + 1) * a with a = f * ds.
    a is 0 when x / ds is exactly `level_px` (computed as openslide computes it, in double).
    """
    x = math.ceil(level_px * native_downsample)
    fraction = x / native_downsample - level_px
    if fraction < 0:  # the product rounded below the exact value
        x += 1
        fraction = x / native_downsample - level_px
    a = fraction * native_downsample
    return x, (0.0 if a < 1e-6 else a)
