"""OpenSlide backend: the reference reader for Aperio, Hamamatsu, MIRAX, generic tiled TIFF and more."""

from __future__ import annotations

import numpy as np

from g2l.slides.base import BaseReader, mean_mpp
from g2l.slides.geometry import bilinear_offset, nearest_native
from g2l.slides.protocol import BackendUnavailableError


def _import_openslide():  # noqa: ANN202 - module object
    try:
        import openslide
    except ImportError as e:  # also raised when the shared library itself is missing
        raise BackendUnavailableError(
            f"openslide is not available ({e}); install it with `pip install openslide-python openslide-bin`"
        ) from e
    return openslide


class OpenSlideReader(BaseReader):
    """`SlideReader` over `openslide.OpenSlide` (thread-safe handle; ctypes calls release the GIL)."""

    backend = "openslide"

    def __init__(self, path: str, *, mpp_override: float | None = None, reason: str = "explicit: openslide"):
        openslide = _import_openslide()
        self._slide = openslide.OpenSlide(str(path))
        props = self._slide.properties
        metadata_mpp = mean_mpp(
            props.get(openslide.PROPERTY_NAME_MPP_X), props.get(openslide.PROPERTY_NAME_MPP_Y)
        )
        super().__init__(path, metadata_mpp=metadata_mpp, mpp_override=mpp_override, reason=reason)
        self.properties = dict(props)
        self._set_levels(self._slide.level_dimensions)
        # openslide maps level-0 x to x / its downsample (the mean of both axis ratios) and paints that
        # fractional position (openslide v4.0.0 src/openslide.c:254, src/openslide-vendor-aperio.c:235).
        self._native_downsamples = tuple(float(d) for d in self._slide.level_downsamples)

    def _read_level(self, lx: int, ly: int, level: int, size: tuple[int, int]) -> np.ndarray:
        ds = self._native_downsamples[level]
        x1, ax = bilinear_offset(lx, ds)
        y1, ay = bilinear_offset(ly, ds)
        if (ax == 0 and ay == 0) or ds < 2 or lx < 0 or ly < 0:
            return self._read_at((nearest_native(lx, ds), nearest_native(ly, ds)), level, size)
        # openslide paints position x / ds bilinearly, linear in the fraction between two level pixels.
        # Reads one level-0 pixel further on each fractional axis give the slope; extrapolating back to
        # fraction 0 recovers the level's own pixels (within about a grey level; pixman's weights are
        # quantised), so openslide agrees with the backends that read integer level pixels.
        q11 = self._read_at((x1, y1), level, size).astype(np.float32)
        out = q11 * (1 + ax) * (1 + ay)
        if ax:
            out -= self._read_at((x1 + 1, y1), level, size) * np.float32(ax * (1 + ay))
        if ay:
            out -= self._read_at((x1, y1 + 1), level, size) * np.float32((1 + ax) * ay)
        if ax and ay:
            out += self._read_at((x1 + 1, y1 + 1), level, size) * np.float32(ax * ay)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def _read_at(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """openslide's own read at a level-0 location, composited onto white."""
        rgba = np.asarray(self._slide.read_region(location, level, size))
        # OpenSlide returns premultiplied RGBA, transparent outside the image: composite onto white.
        rgb = rgba[..., :3]
        alpha = rgba[..., 3]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgb)
        return (
            (rgb.astype(np.uint16) + (255 - alpha[..., None].astype(np.uint16))).clip(0, 255).astype(np.uint8)
        )

    def close(self) -> None:
        """Release the OpenSlide handle."""
        if not self._closed:
            self._slide.close()
        super().close()
