"""Decoders of stored JPEG tiles at 1/1, 1/2, 1/4 or 1/8 scale: simplejpeg first, OpenCV as the fallback.

Both are libjpeg-turbo underneath with the same DCT scaling, upsampling and colour conversion, so they give
the same pixels (`tests/test_tile_decoders.py` checks it on stored tiles at every scale and framing); they
differ in cost. simplejpeg goes through TurboJPEG's API with less per-call work than OpenCV's `imdecode`
(codec lookup, a header pass, a `Mat`): ~12 % less CPU per 1/2-scale 256 px tile on the benchmark's slides,
where decoding is ~80 % of a 40x tile's cost (benchmarks/RESULTS.md). Both release the GIL while decoding.

`tile_decoder()` takes the first of `DECODER_ORDER` that imports; its `describe()` goes into each slide's
meta.json (`tile_decoder`), so an artifact says which library made its pixels.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import numpy as np

#: Tried in this order; the first that imports is used.
DECODER_ORDER = ("simplejpeg", "opencv")
SCALES = (1, 2, 4, 8)


class TileDecoder(Protocol):
    """Decodes one standalone JPEG stream to RGB at 1/scale of its size."""

    name: str

    def describe(self) -> str:
        """Library and version, for meta.json."""
        ...

    def decode(self, data: bytes, scale: int, size: int) -> np.ndarray:
        """RGB uint8 of the `size` x `size` JPEG `data` at (size/scale)^2; ValueError when undecodable."""
        ...


def _checked(pixels: Any, scale: int, size: int) -> np.ndarray:
    side = size // scale
    if pixels is None or getattr(pixels, "shape", None) != (side, side, 3):
        got = getattr(pixels, "shape", None)
        raise ValueError(f"stored JPEG tile decoded to {got}, expected {(side, side, 3)} at 1/{scale}")
    return pixels


class SimpleJpegDecoder:
    """simplejpeg (TurboJPEG API): `min_factor` with a minimum size selects exactly the 1/scale factor."""

    name = "simplejpeg"

    def __init__(self) -> None:
        import simplejpeg

        self._decode = simplejpeg.decode_jpeg
        self._version = simplejpeg.__version__

    def describe(self) -> str:
        """Library and version, for meta.json."""
        return f"simplejpeg {self._version}"

    def decode(self, data: bytes, scale: int, size: int) -> np.ndarray:
        """RGB at 1/scale: the smallest TurboJPEG factor >= scale that keeps size/scale pixels, i.e. 1/scale.

        `strict=False`: recoverable libjpeg warnings (extraneous bytes before a marker, as some scanners
        write) decode as OpenCV decodes them, instead of failing the slide.
        """
        side = size // scale
        pixels = self._decode(
            data, colorspace="RGB", min_height=side, min_width=side, min_factor=scale, strict=False
        )
        return _checked(pixels, scale, size)


# OpenCV's reduced-size decode flags (libjpeg scale_denom): opencv/opencv imgcodecs.hpp ImreadModes.
_REDUCED = {1: 1, 2: 17, 4: 33, 8: 65}  # IMREAD_COLOR, IMREAD_REDUCED_COLOR_2, _4, _8
_IGNORE_ORIENTATION = 128  # IMREAD_IGNORE_ORIENTATION: stored tiles carry no EXIF, never rotate
# IMREAD_COLOR_RGB (OpenCV >= 4.11): libjpeg-turbo writes RGB itself. It replaces the IMREAD_COLOR bit (1):
# modules/imgcodecs/src/loadsave.cpp (calcType refuses IMREAD_COLOR_BGR | IMREAD_COLOR_RGB together).
_COLOR_RGB = 256


class OpenCVDecoder:
    """OpenCV's `imdecode` with its reduced-size flags; RGB straight from libjpeg-turbo where it can."""

    name = "opencv"

    def __init__(self) -> None:
        from g2l.tiling.tissue import opencv

        self._cv2 = opencv()
        self._rgb = hasattr(self._cv2, "IMREAD_COLOR_RGB")

    def describe(self) -> str:
        """Library and version, for meta.json."""
        return f"opencv {self._cv2.__version__}"

    def decode(self, data: bytes, scale: int, size: int) -> np.ndarray:
        """RGB at 1/scale (BGR swapped where OpenCV predates IMREAD_COLOR_RGB)."""
        flags = _REDUCED[scale] | _IGNORE_ORIENTATION
        if self._rgb:
            flags = (flags & ~1) | _COLOR_RGB
        pixels = self._cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        pixels = _checked(pixels, scale, size)
        return pixels if self._rgb else np.ascontiguousarray(pixels[..., ::-1])


_DECODERS: dict[str, type[SimpleJpegDecoder] | type[OpenCVDecoder]] = {
    "simplejpeg": SimpleJpegDecoder,
    "opencv": OpenCVDecoder,
}


def make_decoder(name: str) -> TileDecoder:
    """The decoder called `name` (ImportError when its library is missing)."""
    if name not in _DECODERS:
        raise ValueError(f"unknown tile decoder {name!r}; choose one of {list(DECODER_ORDER)}")
    return _DECODERS[name]()


@functools.cache
def tile_decoder() -> TileDecoder:
    """The first decoder of `DECODER_ORDER` whose library imports (OpenCV is always installed)."""
    for name in DECODER_ORDER[:-1]:
        try:
            return make_decoder(name)
        except ImportError:
            continue
    return make_decoder(DECODER_ORDER[-1])
