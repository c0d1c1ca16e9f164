"""Where a slide's tile pixels come from (the backend's reads, or the stored-JPEG shortcuts of ADR 0002)
and how they become JPEG bytes; tiles are produced a batch at a time, in grid order."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from g2l.slides.geometry import level_axis_downsamples, to_level_array
from g2l.tiling.config import TilingConfig
from g2l.tiling.grid import TilePlan
from g2l.tiling.stored_tiles import StoredTiles


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


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def tile_bytes(
    reader: Any,
    plan: TilePlan,
    xs: np.ndarray,
    ys: np.ndarray,
    config: TilingConfig,
    pool: ThreadPoolExecutor,
    threads: int,
    read_path: str,
    stored: StoredTiles | None,
) -> Iterator[bytes]:
    """JPEG bytes of every tile, in order, a batch at a time (memory stays bounded)."""
    size = plan.read_px
    level_xs, level_ys = level_coords(reader, plan.level, xs, ys)

    def decode_encode(source: StoredTiles, x: int, y: int) -> bytes:
        tile = source.read_resized(x, y, size, plan.tile_px)
        return encode_jpeg(tile, config.jpeg_quality, config.jpeg_subsampling)

    for part in _batches(len(xs), config.batch_tiles):
        lx = [int(x) for x in level_xs[part]]
        ly = [int(y) for y in level_ys[part]]
        if read_path == "jpeg-copy" and stored is not None:
            yield from pool.map(stored.jpeg, lx, ly)
            continue
        if read_path == "jpeg-tiles" and stored is not None:
            yield from pool.map(decode_encode, [stored] * len(lx), lx, ly)
            continue
        locations = [(int(x), int(y)) for x, y in zip(xs[part], ys[part], strict=True)]
        arrays = reader.read_regions(locations, plan.level, (size, size), num_workers=threads)
        futures = [
            pool.submit(
                lambda a: encode_jpeg(
                    resize_area(a, plan.tile_px), config.jpeg_quality, config.jpeg_subsampling
                ),
                arr,
            )
            for arr in arrays
        ]
        for future in futures:
            yield future.result()


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
    raw = {
        i: reader.read_region((int(xs[i]), int(ys[i])), plan.level, (plan.read_px, plan.read_px))
        for i in picks
    }
    if config.jpeg_passthrough and plan.identity and stored.tile == plan.tile_px:
        if stored.calibrate_copy([(int(xl[i]), int(yl[i]), np.asarray(raw[i])) for i in picks]):
            return "jpeg-copy", stored
    # A reader decoding on the GPU (cuCIM device="cuda", nvJPEG) beats decoding the tiles on the CPU here.
    on_gpu = str(getattr(reader, "device", "cpu")).startswith("cuda")
    if config.fast_jpeg and not on_gpu:
        samples = [(int(xl[i]), int(yl[i]), resize_area(np.asarray(raw[i]), plan.tile_px)) for i in picks]
        if stored.calibrate_decode(samples, plan.read_px, plan.tile_px):
            return "jpeg-tiles", stored
    stored.close()
    return "reader", None


