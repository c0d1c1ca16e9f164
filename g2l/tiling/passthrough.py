"""Copy stored JPEG tiles straight out of a tiled TIFF level when they already are the wanted tiles.

When the chosen level is read at `tile_px` without resampling and its stored JPEG tiles are exactly
`tile_px` square and aligned with our grid, decoding and re-encoding a tile would only add a second
JPEG generation. Instead the stored bytes (plus the level's shared JPEG tables) form a standalone JPEG.
Each slide's first and last tiles are checked against the reader's decoded pixels before any bytes are
trusted, so a colour-space surprise falls back to the decode path instead of writing wrong tiles.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

JPEG_COMPRESSION = 7
PHOTOMETRIC_RGB = 2
# APP14 "Adobe" segment with transform 0: tells decoders the components are RGB, not YCbCr.
ADOBE_RGB_APP14 = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
# Mean absolute difference (0..255) under which two decodes of the same JPEG count as equal.
MATCH_TOLERANCE = 1.5


class JpegTileSource:
    """Raw JPEG tiles of one tiled-TIFF level, as standalone JPEG files, readable from many threads."""

    def __init__(self, path: str | Path, *, width: int, height: int, tile_px: int) -> None:
        import tifffile

        self.path = str(path)
        self.tile_px = tile_px
        self._fd = -1
        with tifffile.TiffFile(self.path) as tif:
            page = _find_level_page(tif, width, height)
            if page is None:
                raise LookupError(f"no TIFF page of {width}x{height}")
            if not page.is_tiled or page.tilewidth != tile_px or page.tilelength != tile_px:
                raise LookupError("stored tiles are not tile_px square")
            if (
                int(page.compression) != JPEG_COMPRESSION
                or page.samplesperpixel != 3
                or page.bitspersample != 8
            ):
                raise LookupError("stored tiles are not 8-bit RGB JPEG")
            if int(getattr(page, "planarconfig", 1)) != 1:
                raise LookupError("stored tiles are planar")
            self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            self.counts = np.asarray(page.databytecounts, dtype=np.int64)
            self.tables = bytes(page.jpegtables) if page.jpegtables else b""
            self.rgb_photometric = int(page.photometric) == PHOTOMETRIC_RGB
            self.tiles_across = -(-page.imagewidth // page.tilewidth)
        self.adobe = False
        self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        """Release the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def raw(self, x_level: int, y_level: int) -> bytes:
        """The stored bytes of the tile whose top-left corner is (x_level, y_level) at this level."""
        if x_level % self.tile_px or y_level % self.tile_px:
            raise ValueError("tile is not aligned with the stored tile grid")
        index = (y_level // self.tile_px) * self.tiles_across + x_level // self.tile_px
        return os.pread(self._fd, int(self.counts[index]), int(self.offsets[index]))

    def jpeg(self, x_level: int, y_level: int) -> bytes:
        """A standalone JPEG file of that tile (tables merged in, colour space made explicit)."""
        return assemble_jpeg(self.raw(x_level, y_level), self.tables, adobe_rgb=self.adobe)

    def calibrate(self, samples: list[tuple[int, int, np.ndarray]]) -> bool:
        """Pick the colour-space framing whose decode matches the reader's pixels on every sample."""
        import imagecodecs

        for adobe in (True, False) if self.rgb_photometric else (False, True):
            ok = True
            for x_level, y_level, expected in samples:
                data = assemble_jpeg(self.raw(x_level, y_level), self.tables, adobe_rgb=adobe)
                try:
                    decoded = imagecodecs.jpeg8_decode(data)
                except Exception:
                    ok = False
                    break
                if decoded.shape != expected.shape or _mad(decoded, expected) > MATCH_TOLERANCE:
                    ok = False
                    break
            if ok:
                self.adobe = adobe
                return True
        return False


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assemble_jpeg(tile: bytes, tables: bytes, *, adobe_rgb: bool) -> bytes:
    """SOI + (Adobe RGB marker) + shared tables + the tile's own segments after its SOI."""
    if tile[:2] != b"\xff\xd8":
        raise ValueError("stored tile is not a JPEG stream")
    parts = [b"\xff\xd8"]
    if adobe_rgb:
        parts.append(ADOBE_RGB_APP14)
    if tables:
        parts.append(tables[2:-2] if tables[-2:] == b"\xff\xd9" else tables[2:])
    parts.append(tile[2:])
    return b"".join(parts)


def _find_level_page(tif: object, width: int, height: int) -> object | None:
    """The TIFF page holding a pyramid level of the given size (main IFDs or SubIFDs)."""
    candidates = []
    for series in getattr(tif, "series", []):
        for level in getattr(series, "levels", [series]):
            candidates.extend(level.pages[:1])
    candidates.extend(getattr(tif, "pages", []))
    for page in candidates:
        if page is None or not hasattr(page, "imagewidth"):
            continue
        if page.imagewidth == width and page.imagelength == height:
            return page
    return None
