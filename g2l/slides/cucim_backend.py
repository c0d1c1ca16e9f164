"""cuCIM backend: batched, multi-threaded region reads (GPU decode with device="cuda" where present)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np

from g2l.slides.base import BaseReader, default_workers
from g2l.slides.geometry import exact_native
from g2l.slides.protocol import BackendUnavailableError

_UNIT_TO_UM = {
    "micrometer": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "micron": 1.0,
    "millimeter": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "cm": 1e4,
    "inch": 25400.0,
    "nanometer": 1e-3,
    "nm": 1e-3,
}


def _import_cucim():  # noqa: ANN202 - class object
    try:
        from cucim import CuImage
    except ImportError as e:
        raise BackendUnavailableError(
            f"cuCIM is not installed ({e}); install it with `pip install cucim-cu12` (Linux, CUDA 12)"
        ) from e
    return CuImage


@functools.cache
def gpu_available() -> bool:
    """True when a CUDA device is visible (cupy and a driver); G2L_SLIDES_DEVICE=cpu forces CPU."""
    if os.environ.get("G2L_SLIDES_DEVICE", "").lower() == "cpu":
        return False
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # noqa: BLE001 - no cupy, no driver, no device: all mean CPU
        return False


def _metadata_mpp(img) -> float | None:  # noqa: ANN001 - CuImage
    """mpp from cuCIM's spacing (resolution tags / Aperio MPP), only when its unit is a length."""
    try:
        dims = str(img.dims)
        spacing = list(img.spacing())
        units = [str(u) for u in img.spacing_units()]
    except Exception:  # noqa: BLE001
        return None
    vals = []
    for axis in ("X", "Y"):
        if axis in dims:
            i = dims.index(axis)
            factor = _UNIT_TO_UM.get(units[i].lower()) if i < len(units) else None
            if factor is not None and spacing[i] > 0:
                vals.append(float(spacing[i]) * factor)
    if vals:
        return sum(vals) / len(vals)
    aperio = (img.metadata or {}).get("aperio", {}) if isinstance(img.metadata, dict) else {}
    try:
        return float(aperio["MPP"]) if "MPP" in aperio else None
    except (TypeError, ValueError):
        return None


class CuCIMReader(BaseReader):
    """`SlideReader` over `cucim.CuImage`; `read_regions` uses cuCIM's native batch reader."""

    backend = "cucim"

    def __init__(
        self,
        path: str,
        *,
        mpp_override: float | None = None,
        reason: str = "explicit: cucim",
        device: str = "auto",
    ):
        cu_image = _import_cucim()
        self._img = cu_image(str(path))
        if not self._img.is_loaded:
            raise OSError(f"cuCIM could not load {path}")
        super().__init__(
            path, metadata_mpp=_metadata_mpp(self._img), mpp_override=mpp_override, reason=reason
        )
        res = self._img.resolutions
        self._set_levels(res["level_dimensions"])
        # cuCIM reads level pixel (int64)(x / downsample) computed in float32, its downsample being the
        # float32 mean of both axis ratios (cuCIM v26.06.00 cpp/plugins/cucim.kit.cuslide/src/cuslide/
        # tiff/tiff.cpp:762-768, cuslide.cpp:233).
        self._native_downsamples = tuple(np.float32(d) for d in res["level_downsamples"])
        self.device = ("cuda" if gpu_available() else "cpu") if device == "auto" else device
        self.metadata = self._img.metadata

    def _to_numpy(self, region) -> np.ndarray:  # noqa: ANN001 - CuImage
        if self.device.startswith("cuda"):
            import cupy

            return cupy.asnumpy(cupy.asarray(region))
        return np.asarray(region)

    def _native_location(self, lx: int, ly: int, level: int) -> tuple[int, int]:
        """The level-0 location cuCIM needs to read level pixel (lx, ly)."""
        ds = self._native_downsamples[level]

        def maps_to(x: int) -> int:
            return int(np.float32(x) / ds)

        return exact_native(lx, float(ds), maps_to), exact_native(ly, float(ds), maps_to)

    def _read_level(self, lx: int, ly: int, level: int, size: tuple[int, int]) -> np.ndarray:
        location = self._native_location(lx, ly, level)
        region = self._img.read_region(location=location, size=size, level=level, device=self.device)
        return np.ascontiguousarray(self._to_numpy(region)[..., :3])

    def read_regions(
        self,
        locations: Iterable[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        num_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """Batched reads through cuCIM's own loader (threads in C++, nvJPEG on the GPU), in input order."""
        size = (int(size[0]), int(size[1]))
        self._check(level, size)
        workers = default_workers(num_workers)
        it = iter(locations)
        while True:
            # Chunks bound memory for huge location lists; cuCIM prefetches within a chunk.
            chunk = [(int(x), int(y)) for x, y in islice(it, 2048)]
            if not chunk:
                return
            if len(chunk) == 1:
                yield self.read_region(chunk[0], level, size)
                continue
            origins = [self.level_origin(loc, level) for loc in chunk]
            batch_size = max(1, min(32, len(chunk) // workers or 1))
            i = 0
            try:
                native = [self._native_location(lx, ly, level) for lx, ly in origins]
                batches = self._img.read_region(
                    native, size, level, num_workers=workers, batch_size=batch_size, device=self.device
                )
                for batch in batches:
                    # Copy now: cuCIM reuses the batch buffer once the iterator advances (cuCIM 26.06).
                    arr = np.array(self._to_numpy(batch), copy=True).reshape(
                        -1, size[1], size[0], batch.shape[-1]
                    )
                    for tile in arr:
                        lx, ly = origins[i]
                        yield self._whiten_outside(np.ascontiguousarray(tile[..., :3]), lx, ly, level)
                        i += 1
            except (RuntimeError, ValueError, OSError) as e:
                what = f"batched read_region(level={level}, size={size}) near {chunk[min(i, len(chunk) - 1)]}"
                raise self._read_error(what, e) from e

    def close(self) -> None:
        """Release the cuCIM image."""
        if not self._closed:
            close = getattr(self._img, "close", None)
            if close is not None:
                close()
        super().close()
