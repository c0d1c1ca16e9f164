"""Glue between tiling and g2l.slides: staging, opening, and whole-slide images read in bounded memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# A whole-level read above this many pixels (~200 MB of RGB) is done in horizontal bands instead.
MAX_READ_PIXELS = 64 * 2**20


class SlideError(RuntimeError):
    """A slide cannot be tiled; the message names the slide and the fix."""


def stage_slide(uri: str, checksum: str | None, cache_dir: str | None) -> Path:
    """A local path of the slide: gs:// objects are downloaded and verified, local paths used in place."""
    from g2l import storage

    return Path(storage.stage(uri, cache_dir=cache_dir, expected_checksum=checksum))


def open_reader(path: Path, backend: str, mpp_override: float | None) -> Any:
    """Open a slide with the g2l.slides backend registry."""
    from g2l.slides import open_slide

    return open_slide(str(path), backend=backend, mpp_override=mpp_override)


def bounded_thumbnail(reader: Any, max_px: int, *, max_read_pixels: int = MAX_READ_PIXELS) -> np.ndarray:
    """The whole slide with its longer side `max_px`, never holding more than `max_read_pixels` read pixels.

    Uses the reader's own thumbnail when the level it would read is small enough (every pyramidal slide);
    otherwise (a slide without a usable pyramid) reads that level in horizontal bands, area-averaging each
    band down before the next is read.
    """
    from g2l.slides.base import thumbnail_plan

    w0, h0 = (int(v) for v in reader.dimensions)
    level, out_w, out_h = thumbnail_plan((w0, h0), reader.level_dimensions, max_px)
    lw, lh = (int(v) for v in reader.level_dimensions[level])
    if lw * lh <= max_read_pixels:
        return np.ascontiguousarray(np.asarray(reader.thumbnail(max_px))[..., :3])
    from g2l.tiling.tissue import opencv

    cv2 = opencv()
    from g2l.slides.geometry import level_axis_downsamples

    ds = level_axis_downsamples(reader.dimensions, reader.level_dimensions)[level][1]  # the y axis
    band = max(1, max_read_pixels // lw)
    out = np.empty((out_h, out_w, 3), np.uint8)
    for y in range(0, lh, band):
        y1 = min(lh, y + band)
        r0, r1 = round(y * out_h / lh), round(y1 * out_h / lh)
        if r1 <= r0:
            continue
        strip = np.asarray(reader.read_region((0, int(round(y * ds))), level, (lw, y1 - y)))[..., :3]
        out[r0:r1] = cv2.resize(np.ascontiguousarray(strip), (out_w, r1 - r0), interpolation=cv2.INTER_AREA)
    return out
