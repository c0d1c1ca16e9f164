"""Direct access to the stored JPEG tiles of a tiled-TIFF level: copy them, or decode them without a reader.

Two shortcuts for the common case where our tile grid lines up with the stored tile grid:
* copy: when a level is read at `tile_px` without resampling and its stored tiles are exactly `tile_px`
  square, a stored tile (plus the level's shared JPEG tables) *is* the output tile. Decoding and
  re-encoding it would only add a second JPEG generation and cost a decode and an encode.
* decode: when a read spans k x k whole stored tiles (e.g. 512 px at level 0 of a 40x slide over 256 px
  tiles), each stored tile is decoded straight into its part of the output tile. No region is assembled
  and no stored tile is shared with a neighbouring output tile, so one task per output tile does all of its
  work with the GIL released (pread, libjpeg-turbo, OpenCV). Each part is either decoded at full size and
  area-averaged (`scaled=False`), or decoded at the part's size by libjpeg's DCT scaling (1/2, 1/4, 1/8;
  "shrink on load", as libvips does; `g2l.tiling.jpeg_decoders`), which skips most of the inverse DCT,
  the colour conversion of the pixels it would throw away and the area average: ~30% less CPU per 40x
  tile, pixels within MATCH_TOLERANCE of the area average (checked per slide, below).
Each slide's first and last tiles are compared with the slide reader's own pixels before either shortcut
is trusted, so a colour-space surprise falls back to the reader instead of writing wrong tiles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from g2l.tiling.jpeg_decoders import TileDecoder, tile_decoder

JPEG_COMPRESSION = 7
# APP14 "Adobe" segment with transform 0: tells decoders the components are RGB, not YCbCr.
ADOBE_RGB_APP14 = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
# Mean absolute difference (0..255) under which two decodes of the same pixels count as equal.
MATCH_TOLERANCE = 1.5
# DCT scales (full size / decoded size) libjpeg decodes at directly (`g2l.tiling.jpeg_decoders`).
SCALED_DECODES = (2, 4, 8)


class StoredTiles:
    """The stored JPEG tiles of one tiled-TIFF level, readable from many threads (os.pread)."""

    def __init__(self, path: str | Path, *, width: int, height: int) -> None:
        import tifffile

        self.path = str(path)
        self._fd = -1
        with tifffile.TiffFile(self.path) as tif:
            page = find_level_page(tif, width, height)
            if page is None:
                raise LookupError(f"no TIFF page of {width}x{height}")
            if not page.is_tiled or page.tilewidth != page.tilelength:
                raise LookupError("the level is not stored in square tiles")
            if int(page.compression) != JPEG_COMPRESSION or page.samplesperpixel != 3:
                raise LookupError("stored tiles are not 3-sample JPEG")
            if page.bitspersample != 8 or int(getattr(page, "planarconfig", 1)) != 1:
                raise LookupError("stored tiles are not 8-bit interleaved")
            self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            self.counts = np.asarray(page.databytecounts, dtype=np.int64)
            self.tables = bytes(page.jpegtables) if page.jpegtables else b""
            self.tile = int(page.tilewidth)
            self.width, self.height = int(page.imagewidth), int(page.imagelength)
            self.tiles_across = -(-self.width // self.tile)
        self.adobe = False  # copy framing chosen by calibrate_copy
        self.colorspace: str | None = None  # full-size decode colour space chosen by calibrate_decode
        self.scaled = False  # DCT-scaled decode chosen by calibrate_decode
        self.scaled_adobe = False  # its framing (Adobe RGB marker or not)
        self.decoder: TileDecoder = tile_decoder()  # for decode_at_scale; meta.json names it
        self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        """Release the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def aligned(self, x_level: int, y_level: int, read_px: int) -> bool:
        """Whether a read of `read_px` at (x_level, y_level) covers whole stored tiles inside the level."""
        return (
            read_px % self.tile == 0
            and x_level % self.tile == 0
            and y_level % self.tile == 0
            and x_level + read_px <= self.width
            and y_level + read_px <= self.height
        )

    def raw(self, x_level: int, y_level: int) -> bytes:
        """The stored bytes of the tile whose top-left corner is (x_level, y_level) at this level."""
        index = (y_level // self.tile) * self.tiles_across + x_level // self.tile
        count = int(self.counts[index])
        if count == 0:
            raise LookupError("sparse TIFF: tile was never written")
        return os.pread(self._fd, count, int(self.offsets[index]))

    def jpeg(self, x_level: int, y_level: int) -> bytes:
        """A standalone JPEG file of that stored tile (tables merged in, colour space made explicit)."""
        return assemble_jpeg(self.raw(x_level, y_level), self.tables, adobe_rgb=self.adobe)

    def _decode(self, x_level: int, y_level: int, colorspace: str | None) -> np.ndarray:
        import imagecodecs

        kwargs: dict[str, Any] = {"tables": self.tables or None}
        if colorspace is not None:
            kwargs.update(colorspace=colorspace, outcolorspace="RGB")
        return imagecodecs.jpeg8_decode(self.raw(x_level, y_level), **kwargs)

    def decode_at_scale(self, x_level: int, y_level: int, scale: int) -> np.ndarray:
        """The stored tile decoded to RGB at 1/scale (1, 2, 4, 8) of its size by libjpeg (`self.decoder`).

        The framing (`scaled_adobe`) decides whether libjpeg is told the components are RGB.
        """
        data = assemble_jpeg(self.raw(x_level, y_level), self.tables, adobe_rgb=self.scaled_adobe)
        try:
            return self.decoder.decode(data, scale, self.tile)
        except ValueError as exc:
            where = f"stored tile at level px ({x_level}, {y_level})"
            raise ValueError(f"{where} could not be decoded: {exc}") from exc

    def scaled_decode_possible(self, read_px: int, tile_px: int) -> bool:
        """Whether each stored tile of such a read maps onto its output part by a DCT scale (2, 4 or 8)."""
        k = read_px // self.tile
        if k < 1 or read_px % self.tile or tile_px % k:
            return False
        sub = tile_px // k
        return self.tile % sub == 0 and self.tile // sub in SCALED_DECODES

    def read_resized(self, x_level: int, y_level: int, read_px: int, tile_px: int) -> np.ndarray:
        """The `read_px` square at (x_level, y_level), brought to `tile_px`, from its stored tiles."""
        k = read_px // self.tile
        sub = tile_px // k
        out = np.empty((tile_px, tile_px, 3), np.uint8)
        if self.scaled:
            scale = self.tile // sub
            for j in range(k):
                for i in range(k):
                    part = self.decode_at_scale(x_level + i * self.tile, y_level + j * self.tile, scale)
                    out[j * sub : (j + 1) * sub, i * sub : (i + 1) * sub] = part
            return out
        from g2l.tiling.tissue import opencv

        cv2 = opencv()
        for j in range(k):
            for i in range(k):
                part = self._decode(x_level + i * self.tile, y_level + j * self.tile, self.colorspace)[
                    ..., :3
                ]
                if sub != self.tile:
                    part = cv2.resize(part, (sub, sub), interpolation=cv2.INTER_AREA)
                out[j * sub : (j + 1) * sub, i * sub : (i + 1) * sub] = part
        return out

    def calibrate_copy(self, samples: list[tuple[int, int, np.ndarray]]) -> bool:
        """Pick the JPEG framing whose decode matches the reader's pixels (x_level, y_level, rgb) exactly."""
        import imagecodecs

        for adobe in (False, True):
            try:
                ok = all(
                    _mad(
                        imagecodecs.jpeg8_decode(assemble_jpeg(self.raw(x, y), self.tables, adobe_rgb=adobe)),
                        expected,
                    )
                    <= MATCH_TOLERANCE
                    for x, y, expected in samples
                )
            except Exception:
                ok = False
            if ok:
                self.adobe = adobe
                return True
        return False

    def calibrate_decode(
        self, samples: list[tuple[int, int, np.ndarray]], read_px: int, tile_px: int, *, scaled: bool = False
    ) -> bool:
        """Pick the decode whose pixels match the reader's resampled ones (x_level, y_level, rgb).

        With `scaled`, DCT-scaled decoding is tried first (without, then with, the Adobe RGB marker); then
        full-size decoding with imagecodecs' default colour space, then with `colorspace="RGB"`.
        """
        candidates: list[tuple[bool, bool, str | None]] = []
        if scaled and self.scaled_decode_possible(read_px, tile_px):
            candidates += [(True, False, None), (True, True, None)]
        candidates += [(False, False, None), (False, False, "RGB")]
        for use_scaled, adobe, colorspace in candidates:
            self.scaled, self.scaled_adobe, self.colorspace = use_scaled, adobe, colorspace
            try:
                ok = all(
                    _mad(self.read_resized(x, y, read_px, tile_px), expected) <= MATCH_TOLERANCE
                    for x, y, expected in samples
                )
            except Exception:
                ok = False
            if ok:
                return True
        self.scaled, self.scaled_adobe, self.colorspace = False, False, None
        return False


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape[:2] != b.shape[:2]:
        return float("inf")
    return float(np.abs(a[..., :3].astype(np.int16) - b[..., :3].astype(np.int16)).mean())


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


def find_level_page(tif: Any, width: int, height: int) -> Any | None:
    """The TIFF page holding a pyramid level of the given size (series levels first, then all pages)."""
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
