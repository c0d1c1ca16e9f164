"""The `SlideReader` protocol every slide backend satisfies, and the errors slide reading raises."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np


class SlideReadError(RuntimeError):
    """A slide could not be opened or read; the message names the file and every backend tried."""

    def __init__(self, path: str, attempts: Iterable[tuple[str, str]], hint: str = "") -> None:
        self.path = str(path)
        self.attempts = list(attempts)
        tried = "; ".join(f"{name}: {err}" for name, err in self.attempts) or "no backend tried"
        msg = f"cannot read slide {self.path} (tried {tried})"
        super().__init__(f"{msg}. {hint}" if hint else msg)


class BackendUnavailableError(ImportError):
    """A slide backend's library is not installed; the message says how to install it."""


@runtime_checkable
class SlideReader(Protocol):
    """An open whole-slide image: pyramid geometry, mpp and RGB pixel reads (level-0 coordinates)."""

    backend: str  # registry name of the implementation ("cucim", "openslide", ...)
    backend_reason: str  # why this backend was chosen (auto order, or explicit)
    mpp: float | None  # level-0 microns per pixel; None when neither metadata nor manifest gives one
    mpp_source: str | None  # "manifest" | "metadata" | None

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height)."""
        ...

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        ...

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each level."""
        ...

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0."""
        ...

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 [h, w, 3] at `level`, top-left at level-0 `location`; outside the slide is white.

        The top-left is the level pixel nearest to `location` / the level's true downsample on each axis
        (`g2l.slides.geometry`), the same pixel in every backend, on any pyramid.
        """
        ...

    def read_regions(
        self,
        locations: Iterable[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        num_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """Like `read_region` for many locations (one size, one level), yielded in input order."""
        ...

    def thumbnail(self, max_px: int) -> np.ndarray:
        """RGB uint8 image of the whole slide whose longer side is at most `max_px`."""
        ...

    def close(self) -> None:
        """Release the file handle; further reads fail."""
        ...

    def __enter__(self) -> SlideReader: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
