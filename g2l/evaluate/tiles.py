"""Benchmark pixels: read an image or a slide region, bring it to the evaluation's mpp, crop it.

Models are trained on 224 px tiles at 0.5 um/px; a benchmark image at another resolution is resampled
to that mpp keeping its aspect ratio (never squashed), then cut to `tile_px`: the centre square
(`crop`), or up to `max_crops` central squares whose embeddings are averaged (`grid`, for images much
larger than a tile, e.g. BACH's 2048 x 1536 photos), or, like eva's ResizeAndCrop, the shorter side
scaled to `tile_px` and the centre cropped (`whole`, for tiny low-magnification patches where matching
the mpp would throw most of the patch away). An image smaller than `tile_px` at the input mpp is
enlarged to `tile_px` (finer than the input mpp; the definition documents it).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How benchmark pixels become model inputs (recorded in the report and in the embedding key)."""

    native_mpp: float | None
    input_mpp: float
    tile_px: int
    fit: str = "crop"
    max_crops: int = 16

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the report and the embedding store key."""
        return dataclasses.asdict(self)


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file; an unreadable file is an error naming it and the fix."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read benchmark tile {path}: {exc}; fix or remove its row") from exc


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    # Lanczos (antialiased) when shrinking, bicubic when enlarging; PIL's integer code paths give the
    # same bytes on every CPU.
    method = Image.Resampling.LANCZOS if width < w else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((width, height), method))


def _grid_offsets(size: int, tile: int, count: int) -> list[int]:
    """`count` non-overlapping offsets of `tile` px centred in `size` px."""
    start = (size - count * tile) // 2
    return [start + i * tile for i in range(count)]


def prepare(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Model-input crops [n, tile_px, tile_px, 3] of one image (n = 1 except for `grid`)."""
    h, w = image.shape[:2]
    px = spec.tile_px
    if spec.fit == "whole" or spec.native_mpp is None:
        scale = px / min(h, w)
    else:
        scale = spec.native_mpp / spec.input_mpp
        if min(h, w) * scale < px:
            scale = px / min(h, w)  # too small at the input mpp: enlarge to one tile
    new_w, new_h = max(px, round(w * scale)), max(px, round(h * scale))
    img = _resize(np.ascontiguousarray(image), new_w, new_h)
    if spec.fit == "grid":
        nx, ny = max(1, new_w // px), max(1, new_h // px)
        while nx * ny > spec.max_crops:  # keep the central block: drop from the longer side
            if nx >= ny:
                nx -= 1
            else:
                ny -= 1
        return np.stack(
            [
                img[y : y + px, x : x + px]
                for y in _grid_offsets(new_h, px, ny)
                for x in _grid_offsets(new_w, px, nx)
            ]
        )
    y0, x0 = (new_h - px) // 2, (new_w - px) // 2
    return img[y0 : y0 + px, x0 : x0 + px][None]


class SlideTileReader:
    """Reads `tile_px` squares at the benchmark's mpp from slides (one open reader per slide)."""

    def __init__(
        self,
        resolve: Callable[[str], Path],
        tile_px: int,
        mpp: float,
        name: str,
        open_slide: Callable[[str], Any] | None = None,
    ) -> None:
        self.resolve = resolve
        self.tile_px = tile_px
        self.mpp = mpp
        self.name = name
        self.open_slide = open_slide
        self.readers: dict[str, Any] = {}
        self.lock = threading.Lock()

    def _reader(self, slide: str) -> Any:
        with self.lock:
            if slide not in self.readers:
                opener: Any = self.open_slide
                if opener is None:
                    import g2l.slides  # cuCIM / openslide / tiffslide, in the slides helper's auto order

                    opener = g2l.slides.open_slide  # type: ignore[attr-defined]
                self.readers[slide] = opener(str(self.resolve(slide)))
            return self.readers[slide]

    def close(self) -> None:
        """Close every slide opened so far."""
        for reader in self.readers.values():
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        self.readers.clear()

    def read(self, slide: str, x: int, y: int) -> np.ndarray:
        """The `tile_px` square whose level-0 top-left is (x, y), at the benchmark's mpp."""
        from PIL import Image

        reader = self._reader(slide)
        if reader.mpp is None:
            raise ValueError(
                f"slide {slide} has no mpp metadata; benchmark {self.name} needs it to read tiles at "
                f"{self.mpp} um/px"
            )
        size0 = self.tile_px * float(self.mpp) / float(reader.mpp)
        downs = list(reader.level_downsamples)
        level = max((lv for lv, ds in enumerate(downs) if ds <= size0 / self.tile_px + 1e-6), default=0)
        read_px = int(round(size0 / downs[level]))
        with self.lock:  # slide readers are not all thread-safe
            region = reader.read_region((int(x), int(y)), level, (read_px, read_px))
        if read_px != self.tile_px:
            region = np.asarray(
                Image.fromarray(region).resize((self.tile_px, self.tile_px), Image.Resampling.BILINEAR)
            )
        return region
