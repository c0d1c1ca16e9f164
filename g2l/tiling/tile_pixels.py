"""Where a slide's tile pixels come from (the backend's reads, or the stored-JPEG shortcuts of ADR 0002)
and how they become JPEG bytes.

`choose_read_path` picks one per slide; `TileMaker` then makes tile i's JPEG bytes. Stored paths make each
tile in one call that runs with the GIL released almost throughout (pread, libjpeg-turbo, OpenCV), so a
thread pool keeps every core busy; the reader path streams the backend's batched reads and only resamples
and encodes them on the pool (or, on a GPU, has the backend resample before the copy to the host).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from g2l.slides.geometry import level_axis_downsamples, to_level_array
from g2l.tiling.config import TilingConfig
from g2l.tiling.grid import TilePlan
from g2l.tiling.stored_tiles import StoredTiles

READ_PATHS = ("jpeg-copy", "jpeg-tiles", "reader")


def encode_jpeg(rgb: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
    """JPEG bytes of an RGB tile at `quality` with chroma `subsampling` ("4:2:0", "4:2:2" or "4:4:4")."""
    import imagecodecs

    # imagecodecs takes "420"; its default (None) is libjpeg's 4:2:0, byte for byte.
    mode = subsampling.replace(":", "")
    return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(rgb), level=quality, subsampling=mode))


def resize_area(rgb: np.ndarray, tile_px: int) -> np.ndarray:
    """Area-average a square RGB read down to tile_px (identity when it already is).

    OpenCV's INTER_AREA is ~5x faster than PIL's reduce/box filters and gives the same pixels for
    integer factors.
    """
    if rgb.shape[0] == tile_px and rgb.shape[1] == tile_px:
        return rgb
    from g2l.tiling.tissue import opencv

    cv2 = opencv()
    return cv2.resize(np.ascontiguousarray(rgb[..., :3]), (tile_px, tile_px), interpolation=cv2.INTER_AREA)


def level_coords(reader: Any, level: int, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level pixels of level-0 tile corners, by the one definition every backend reads with.

    (g2l.slides.geometry: nearest pixel at the axis's true downsample.)
    """
    dx, dy = level_axis_downsamples(reader.dimensions, reader.level_dimensions)[level]
    return to_level_array(xs, dx), to_level_array(ys, dy)


def choose_read_path(
    reader: Any, path: Path, plan: TilePlan, xs: np.ndarray, ys: np.ndarray, config: TilingConfig
) -> tuple[str, StoredTiles | None]:
    """Copy or decode the stored JPEG tiles directly when the grids line up and the pixels check out.

    Returns ("jpeg-copy" | "jpeg-tiles" | "reader", the stored tiles or None). The slide's first and last
    tiles are read through the backend too and must match, else the backend reads everything.
    """
    if len(xs) == 0 or not (config.jpeg_passthrough or config.fast_jpeg):
        return "reader", None
    axis_ds = level_axis_downsamples(reader.dimensions, reader.level_dimensions)[plan.level]
    if any(ds != int(ds) for ds in axis_ds) or (plan.identity is False and plan.read_px % plan.tile_px):
        return "reader", None
    width, height = (int(v) for v in reader.level_dimensions[plan.level])
    try:
        stored = StoredTiles(path, width=width, height=height)
    except Exception:  # not a tiled JPEG TIFF level (or not a TIFF): the backend reads it
        return "reader", None
    xl, yl = level_coords(reader, plan.level, xs, ys)
    if not all(stored.aligned(int(x), int(y), plan.read_px) for x, y in zip(xl, yl, strict=True)):
        stored.close()
        return "reader", None
    picks = sorted({0, len(xs) - 1})
    try:
        raw = {
            i: reader.read_region((int(xs[i]), int(ys[i])), plan.level, (plan.read_px, plan.read_px))
            for i in picks
        }
    except BaseException:
        stored.close()
        raise
    if config.jpeg_passthrough and plan.identity and stored.tile == plan.tile_px:
        if stored.calibrate_copy([(int(xl[i]), int(yl[i]), np.asarray(raw[i])) for i in picks]):
            return "jpeg-copy", stored
    # A reader decoding on the GPU (cuCIM device="cuda", nvJPEG) beats decoding the tiles on the CPU here.
    on_gpu = str(getattr(reader, "device", "cpu")).startswith("cuda")
    if config.fast_jpeg and not on_gpu:
        samples = [(int(xl[i]), int(yl[i]), resize_area(np.asarray(raw[i]), plan.tile_px)) for i in picks]
        if stored.calibrate_decode(samples, plan.read_px, plan.tile_px, scaled=config.jpeg_scaled_decode):
            return "jpeg-tiles", stored
    stored.close()
    return "reader", None


class TileMaker:
    """Makes the JPEG bytes of one slide's kept tiles by the chosen read path."""

    def __init__(
        self,
        reader: Any,
        plan: TilePlan,
        xs: np.ndarray,
        ys: np.ndarray,
        config: TilingConfig,
        read_path: str,
        stored: StoredTiles | None,
    ) -> None:
        if read_path not in READ_PATHS or (read_path != "reader" and stored is None):
            raise ValueError(f"read path {read_path!r} needs stored tiles")
        self.reader, self.plan, self.config = reader, plan, config
        self.read_path, self.stored = read_path, stored
        self.xs, self.ys = xs, ys
        level_xs, level_ys = level_coords(reader, plan.level, xs, ys)
        self._xl, self._yl = level_xs.tolist(), level_ys.tolist()

    @property
    def method(self) -> str:
        """How pixels are made, for meta.json: copy, scaled-decode, decode+area or the backend's reads."""
        if self.read_path == "jpeg-copy":
            return "stored-copy"
        if self.read_path == "jpeg-tiles":
            scaled = self.stored is not None and self.stored.scaled
            return "stored-dct-scaled" if scaled else "stored-decode-area"
        return "backend-read-gpu-area" if self.resampled_on_device else "backend-read-area"

    @property
    def decoder(self) -> str | None:
        """The library that decodes the stored tiles (meta.json `tile_decoder`); None when none is decoded."""
        if self.read_path != "jpeg-tiles" or self.stored is None:
            return None
        if self.stored.scaled:
            return self.stored.decoder.describe()
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__}"

    def __len__(self) -> int:
        return len(self._xl)

    @property
    def stored_path(self) -> bool:
        """True when every tile is made by one self-contained call (`tile`), no reader involved."""
        return self.read_path != "reader"

    def tile(self, i: int) -> bytes:
        """JPEG bytes of tile i from the stored tiles (copy, or decode + resample + encode)."""
        if self.stored is None:
            raise RuntimeError("the reader path makes tiles with regions() and encode_region()")
        if self.read_path == "jpeg-copy":
            return self.stored.jpeg(self._xl[i], self._yl[i])
        rgb = self.stored.read_resized(self._xl[i], self._yl[i], self.plan.read_px, self.plan.tile_px)
        return encode_jpeg(rgb, self.config.jpeg_quality, self.config.jpeg_subsampling)

    @property
    def resampled_on_device(self) -> bool:
        """Whether the backend area-averages on the GPU before the pixels reach the host (cuCIM cuda)."""
        from g2l.slides.base import AREA_EXACT_FACTORS

        on_gpu = str(getattr(self.reader, "device", "cpu")).startswith("cuda")
        factor, rest = divmod(self.plan.read_px, self.plan.tile_px)
        return (
            on_gpu
            and hasattr(self.reader, "read_regions_resized")
            and rest == 0
            and factor in AREA_EXACT_FACTORS
        )

    def regions(self, threads: int) -> Iterator[np.ndarray]:
        """The backend's reads of every tile's region, in order (its own batching and threads).

        On a GPU reader the regions arrive already area-averaged to the tile size.
        """
        size = self.plan.read_px
        locations = [(int(x), int(y)) for x, y in zip(self.xs.tolist(), self.ys.tolist(), strict=True)]
        if self.resampled_on_device:
            return iter(
                self.reader.read_regions_resized(
                    locations, self.plan.level, (size, size), self.plan.tile_px, num_workers=threads
                )
            )
        return iter(self.reader.read_regions(locations, self.plan.level, (size, size), num_workers=threads))

    def encode_region(self, rgb: np.ndarray) -> bytes:
        """JPEG bytes of one backend read, area-averaged to the tile size."""
        rgb = resize_area(rgb, self.plan.tile_px)
        return encode_jpeg(rgb, self.config.jpeg_quality, self.config.jpeg_subsampling)

    def close(self) -> None:
        """Release the stored tiles' file descriptor."""
        if self.stored is not None:
            self.stored.close()
