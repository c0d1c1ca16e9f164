"""tiffslide backend: pure Python (tifffile + imagecodecs) reader for SVS and generic tiled TIFF."""

from __future__ import annotations

import threading

import numpy as np

from g2l.slides.base import BaseReader, mean_mpp
from g2l.slides.geometry import exact_native
from g2l.slides.protocol import BackendUnavailableError


def _import_tiffslide():  # noqa: ANN202 - module object
    try:
        import tiffslide
    except ImportError as e:
        raise BackendUnavailableError(
            f"tiffslide is not installed ({e}); install it with `pip install tiffslide`"
        ) from e
    return tiffslide


class TiffSlideReader(BaseReader):
    """`SlideReader` over `tiffslide.TiffSlide`, one handle per thread (its store is not shared safely)."""

    backend = "tiffslide"

    def __init__(self, path: str, *, mpp_override: float | None = None, reason: str = "explicit: tiffslide"):
        self._tiffslide = _import_tiffslide()
        slide = self._tiffslide.TiffSlide(str(path))
        props = slide.properties
        metadata_mpp = mean_mpp(props.get("tiffslide.mpp-x"), props.get("tiffslide.mpp-y"))
        super().__init__(path, metadata_mpp=metadata_mpp, mpp_override=mpp_override, reason=reason)
        self.properties = dict(props)
        self._set_levels(slide.level_dimensions)
        # tiffslide reads level pixel int(x / its downsample), the mean of both axis ratios
        # (tiffslide 2.x/3.x TiffSlide._read_region_loc_transform and level_downsamples).
        self._native_downsamples = tuple(float(d) for d in slide.level_downsamples)
        self._local = threading.local()
        self._local.slide = slide
        self._handles = [slide]
        self._lock = threading.Lock()

    def _slide(self):  # noqa: ANN202 - tiffslide.TiffSlide
        slide = getattr(self._local, "slide", None)
        if slide is None:
            slide = self._tiffslide.TiffSlide(self.path)
            self._local.slide = slide
            with self._lock:
                self._handles.append(slide)
        return slide

    def _read_level(self, lx: int, ly: int, level: int, size: tuple[int, int]) -> np.ndarray:
        ds = self._native_downsamples[level]

        def maps_to(x: int) -> int:
            return int(x / ds)

        location = (exact_native(lx, ds, maps_to), exact_native(ly, ds, maps_to))
        img = np.asarray(self._slide().read_region(location, level, size, as_array=True))
        return np.ascontiguousarray(img[..., :3])

    def close(self) -> None:
        """Close every per-thread handle."""
        if not self._closed:
            with self._lock:
                for h in self._handles:
                    h.close()
                self._handles.clear()
        super().close()
