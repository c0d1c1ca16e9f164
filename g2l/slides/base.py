"""Shared behaviour of slide backends: mpp resolution, white fill outside the slide, batching, thumbnails."""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np

from g2l.slides.geometry import level_axis_downsamples, to_level
from g2l.slides.protocol import SlideReadError


def resolve_mpp(metadata_mpp: float | None, mpp_override: float | None) -> tuple[float | None, str | None]:
    """Manifest override wins over slide metadata; returns (mpp, source) with source None when unknown."""
    if mpp_override is not None and not (isinstance(mpp_override, float) and math.isnan(mpp_override)):
        value = float(mpp_override)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(
                f"mpp override must be a positive number of microns per pixel, got {mpp_override!r}"
            )
        return value, "manifest"
    if metadata_mpp is not None and math.isfinite(metadata_mpp) and metadata_mpp > 0:
        return float(metadata_mpp), "metadata"
    return None, None


def mean_mpp(x: float | str | None, y: float | str | None) -> float | None:
    """One mpp from separate x/y values (either may be missing or unparsable)."""
    vals = []
    for v in (x, y):
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f > 0:
            vals.append(f)
    return sum(vals) / len(vals) if vals else None


def as_wh(d: Sequence[Any]) -> tuple[int, int]:
    """A (width, height) pair of ints from whatever sequence a library returns."""
    return (int(d[0]), int(d[1]))


def default_workers(num_workers: int) -> int:
    """`num_workers <= 0` means every core this process may use."""
    if num_workers and num_workers > 0:
        return num_workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


#: Integer factors for which `area_downsample` gives OpenCV INTER_AREA's pixels exactly.
AREA_EXACT_FACTORS = (2, 4, 8)


def area_downsample(xp: Any, batch: Any, factor: int) -> Any:
    """Area-average a uint8 batch [n, h, w, c] by an integer factor with array module `xp` (numpy, cupy).

    Rounds as OpenCV's INTER_AREA does for these factors (tests compare them): half up for 2 (its
    fixed-point 2x2 path), half to even for 4 and 8 (float average, then rint). h and w must divide.
    """
    n, h, w, c = batch.shape
    if h % factor or w % factor:
        raise ValueError(f"{h}x{w} does not divide by {factor}")
    blocks = batch.reshape(n, h // factor, factor, w // factor, factor, c).astype(xp.uint32)
    sums = blocks.sum(axis=(2, 4))
    area = factor * factor
    if factor == 2:
        return ((sums + area // 2) // area).astype(xp.uint8)
    return xp.rint(sums.astype(xp.float32) * xp.float32(1.0 / area)).astype(xp.uint8)


def area_resize(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Resize RGB uint8 with area averaging (PIL's BOX filter), the right filter for downsampling."""
    from PIL import Image

    if img.shape[1] == out_w and img.shape[0] == out_h:
        return img
    return np.asarray(Image.fromarray(img).resize((out_w, out_h), Image.Resampling.BOX))


def thumbnail_plan(
    dimensions: tuple[int, int], level_dimensions: Sequence[tuple[int, int]], max_px: int
) -> tuple[int, int, int]:
    """(level, width, height) of `BaseReader.thumbnail(max_px)`: the smallest level at least that size."""
    if max_px < 1:
        raise ValueError(f"max_px must be positive, got {max_px}")
    w0, h0 = dimensions
    scale = max_px / max(w0, h0)
    out_w, out_h = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    level = 0
    for i, (lw, lh) in enumerate(level_dimensions):
        if lw >= out_w and lh >= out_h:
            level = i
    return level, out_w, out_h


class BaseReader:
    """Common code for backends; subclasses call `_set_levels` and implement `_read_level`."""

    backend: str = "base"

    def __init__(self, path: str, *, metadata_mpp: float | None, mpp_override: float | None, reason: str):
        self.path = str(path)
        self.backend_reason = reason
        self.metadata_mpp = resolve_mpp(metadata_mpp, None)[0]  # what the file says, whatever wins
        self.mpp, self.mpp_source = resolve_mpp(metadata_mpp, mpp_override)
        self._closed = False

    # Geometry is filled in by subclasses through `_set_levels`.
    _dimensions: tuple[int, int]
    _level_dimensions: tuple[tuple[int, int], ...]
    _level_downsamples: tuple[float, ...]
    _axis_downsamples: tuple[tuple[float, float], ...]

    def _set_levels(self, level_dimensions: Any) -> None:
        """Level sizes from the library; the downsamples are g2l's own (g2l.slides.geometry)."""
        self._level_dimensions = tuple(as_wh(d) for d in level_dimensions)
        self._dimensions = self._level_dimensions[0]
        self._axis_downsamples = level_axis_downsamples(self._dimensions, self._level_dimensions)
        self._level_downsamples = tuple((dx + dy) / 2 for dx, dy in self._axis_downsamples)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height)."""
        return self._dimensions

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self._level_dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each level."""
        return self._level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0 (mean of the axes' true downsamples)."""
        return self._level_downsamples

    def level_origin(self, location: tuple[int, int], level: int) -> tuple[int, int]:
        """The level pixel a level-0 location maps to (nearest to location / the axis's true downsample)."""
        dx, dy = self._axis_downsamples[level]
        return to_level(int(location[0]), dx), to_level(int(location[1]), dy)

    def _read_level(self, lx: int, ly: int, level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB [h, w, 3] whose top-left is pixel (lx, ly) of `level` (the backend's own read)."""
        raise NotImplementedError

    def _check(self, level: int, size: tuple[int, int]) -> None:
        if self._closed:
            raise SlideReadError(self.path, [(self.backend, "reader is closed")])
        if not 0 <= level < self.level_count:
            raise ValueError(f"level {level} out of range for {self.path} (it has {self.level_count} levels)")
        if size[0] < 1 or size[1] < 1:
            raise ValueError(f"region size must be positive, got {size}")

    def _whiten_outside(self, img: np.ndarray, lx: int, ly: int, level: int) -> np.ndarray:
        """Paint pixels beyond the level's bounds white (glass), whatever the backend returned there."""
        lw, lh = self._level_dimensions[level]
        h, w = img.shape[:2]
        if lx >= 0 and ly >= 0 and lx + w <= lw and ly + h <= lh:
            return img
        img = np.array(img, copy=True)
        img[:, : max(0, min(w, -lx))] = 255
        img[:, max(0, lw - lx) :] = 255
        img[: max(0, min(h, -ly))] = 255
        img[max(0, lh - ly) :] = 255
        return img

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 [h, w, 3] at `level`, top-left at level-0 `location`; outside the slide is white."""
        location = (int(location[0]), int(location[1]))
        size = (int(size[0]), int(size[1]))
        self._check(level, size)
        lw, lh = self._level_dimensions[level]
        lx, ly = self.level_origin(location, level)
        if lx >= lw or ly >= lh or lx + size[0] <= 0 or ly + size[1] <= 0:
            return np.full((size[1], size[0], 3), 255, np.uint8)  # wholly off the slide: glass, no read
        try:
            img = self._read_level(lx, ly, level, size)
        except Exception as e:  # noqa: BLE001 - a decode failure inside the file names the slide and place
            raise self._read_error(f"read_region({location}, level={level}, size={size})", e) from e
        return self._whiten_outside(img, lx, ly, level)

    def _read_error(self, what: str, err: BaseException) -> SlideReadError:
        """A `SlideReadError` for a failed read, naming the slide, the backend and the request."""
        if isinstance(err, SlideReadError):
            return err
        return SlideReadError(self.path, [(self.backend, f"{what}: {type(err).__name__}: {err}")])

    def probe(self) -> None:
        """Read as tiling will: a batched read of two regions at every level, then level 0's last pixel.

        A backend can open a file and still fail on its first real read (cuCIM opens a striped TIFF but
        its batched reader fails with "Invalid dimension name: N"; it lacks some codecs), so `auto`
        chooses on reads, not on opening. Slides are written front to back, so a truncated copy loses
        level 0's last tile first.
        """
        w0, h0 = self.dimensions
        for level, (lw, lh) in enumerate(self.level_dimensions):
            side = max(1, min(32, lw // 2, lh // 2))
            # One worker and two regions: the batch path with more than one region per batch.
            list(self.read_regions([(0, 0), (w0 // 2, h0 // 2)], level, (side, side), num_workers=1))
        self.read_region((w0 - 1, h0 - 1), 0, (1, 1))

    def read_regions(
        self,
        locations: Iterable[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        num_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """Read many same-size regions with a thread pool, yielded in input order, memory bounded."""
        size = (int(size[0]), int(size[1]))
        self._check(level, size)
        workers = default_workers(num_workers)
        if workers == 1:
            for loc in locations:
                yield self.read_region(loc, level, size)
            return
        window = 4 * workers  # bounded read-ahead: memory stays O(workers), not O(locations)
        with ThreadPoolExecutor(workers, thread_name_prefix=f"g2l-{self.backend}") as pool:
            pending: deque[Future[np.ndarray]] = deque()
            for loc in locations:
                pending.append(pool.submit(self.read_region, loc, level, size))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def thumbnail(self, max_px: int) -> np.ndarray:
        """Whole slide, longer side at most `max_px`, read from the smallest level that is large enough."""
        level, out_w, out_h = thumbnail_plan(self.dimensions, self.level_dimensions, max_px)
        lw, lh = self.level_dimensions[level]
        img = self.read_region((0, 0), level, (lw, lh))
        return area_resize(img, out_w, out_h)

    def close(self) -> None:
        """Release the file handle; further reads fail."""
        self._closed = True

    def __enter__(self) -> BaseReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {self.dimensions} mpp={self.mpp} ({self.mpp_source})>"
