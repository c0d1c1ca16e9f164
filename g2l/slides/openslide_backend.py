"""OpenSlide backend: the reference reader for Aperio, Hamamatsu, MIRAX, generic tiled TIFF and more."""

from __future__ import annotations

import numpy as np

from g2l.slides.base import BaseReader, as_wh, mean_mpp
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
        self._dimensions = as_wh(self._slide.dimensions)
        self._level_dimensions = tuple(as_wh(d) for d in self._slide.level_dimensions)
        self._level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)

    def _read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
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
