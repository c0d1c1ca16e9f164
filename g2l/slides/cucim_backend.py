"""cuCIM backend: batched, multi-threaded region reads (GPU decode with device="cuda" where present)."""

from __future__ import annotations

import functools
import glob
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np

from g2l.slides.base import AREA_EXACT_FACTORS, BaseReader, area_downsample, default_workers
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


def nvidia_device_visible() -> bool:
    """Whether an NVIDIA GPU could be used, judged without importing CUDA libraries.

    The driver exposes /dev/nvidia<N> (also inside GPU containers) and /proc/driver/nvidia/gpus;
    G2L_SLIDES_DEVICE=cpu says no whatever the machine has.
    """
    if os.environ.get("G2L_SLIDES_DEVICE", "").lower() == "cpu":
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.isdir("/proc/driver/nvidia/gpus")


def _import_cucim():  # noqa: ANN202 - class object
    """cuCIM's CuImage; on a machine with no NVIDIA device, without the CuPy import cuCIM would do.

    `import cucim` imports CuPy when it is installed (~0.2 s of CPU, for its GPU image functions, which
    reading slides on the CPU never uses); hiding CuPy for that one import keeps it out of every
    `g2l tile` call on a CPU node. A later `import cupy` works as usual.
    """
    hide_cupy = "cupy" not in sys.modules and not nvidia_device_visible()
    if hide_cupy:
        # None in sys.modules makes `import cupy` raise ImportError.
        sys.modules["cupy"] = None  # type: ignore[assignment]
    try:
        from cucim import CuImage
    except ImportError as e:
        raise BackendUnavailableError(
            f"cuCIM is not installed ({e}); install it with `pip install cucim-cu12` (Linux, CUDA 12)"
        ) from e
    finally:
        if hide_cupy and sys.modules.get("cupy", 0) is None:
            del sys.modules["cupy"]
    return CuImage


@functools.cache
def gpu_available() -> bool:
    """True when a CUDA device is visible (cupy and a driver); G2L_SLIDES_DEVICE=cpu forces CPU."""
    if not nvidia_device_visible():
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

    def read_regions_resized(
        self,
        locations: Iterable[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        out_px: int,
        num_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """`read_regions` with each region area-averaged to out_px x out_px on the GPU (device="cuda").

        nvJPEG decodes, the area average runs where the pixels are, and only the small tile is copied to
        the host (a quarter of the bytes at 40x -> 20x). Regions must lie inside the level and be square
        with an integer factor that `area_downsample` reproduces exactly (2, 4, 8).
        """
        import cupy

        size = (int(size[0]), int(size[1]))
        self._check(level, size)
        factor = size[0] // out_px
        if not self.device.startswith("cuda") or size[0] != size[1] or factor * out_px != size[0]:
            raise ValueError(f"GPU resampling needs device cuda and a square region, got {size} -> {out_px}")
        if factor not in AREA_EXACT_FACTORS:
            raise ValueError(f"GPU resampling supports factors {AREA_EXACT_FACTORS}, got {factor}")
        lw, lh = self._level_dimensions[level]
        workers = default_workers(num_workers)
        it = iter(locations)
        while True:
            chunk = [(int(x), int(y)) for x, y in islice(it, 2048)]
            if not chunk:
                return
            origins = [self.level_origin(loc, level) for loc in chunk]
            for (x, y), (lx, ly) in zip(chunk, origins, strict=True):
                if lx < 0 or ly < 0 or lx + size[0] > lw or ly + size[1] > lh:
                    raise ValueError(f"region at {(x, y)} reaches outside level {level}")
            batch_size = max(1, min(32, len(chunk) // workers or 1))
            i = 0
            try:
                native = [self._native_location(lx, ly, level) for lx, ly in origins]
                batches = self._img.read_region(
                    native, size, level, num_workers=workers, batch_size=batch_size, device=self.device
                )
                for batch in batches:
                    pixels = cupy.asarray(batch).reshape(-1, size[1], size[0], batch.shape[-1])[..., :3]
                    # Reduced before the iterator advances (cuCIM reuses the batch buffer afterwards).
                    small = cupy.asnumpy(area_downsample(cupy, pixels, factor))
                    for tile in small:
                        yield tile
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
