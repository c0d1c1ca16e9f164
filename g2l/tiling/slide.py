"""Tile one slide: stage, open, plan the level, find tissue, read/encode tiles, write its outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from g2l.config import to_dict
from g2l.tiling.config import TilingConfig
from g2l.tiling.grid import TilePlan, grid, plan_tiles
from g2l.tiling.manifest_io import SlideRow
from g2l.tiling.outputs import OutputRoot, canonical_json
from g2l.tiling.shards import DeterministicTar, HashingWriter, tile_key
from g2l.tiling.stored_tiles import StoredTiles
from g2l.tiling.thumbnail import render_thumbnail
from g2l.tiling.tissue import detect_tissue, tile_tissue_fractions

# Config keys that change no output byte: they are left out of the hash that decides whether a
# finished slide can be skipped.
RUNTIME_ONLY_KEYS = ("workers", "batch_tiles", "max_failed_fraction", "tiles_per_shard")
COORDS_SCHEMA = pa.schema(
    [("x", pa.int64()), ("y", pa.int64()), ("size0", pa.int64()), ("tissue", pa.float32())]
)


class SlideError(RuntimeError):
    """A slide cannot be tiled; the message names the slide and the fix."""


@dataclasses.dataclass(frozen=True)
class SlideOutcome:
    """What happened to one slide in this run."""

    slide_id: str
    status: str
    n_tiles: int = 0
    error: str | None = None
    skipped: bool = False
    seconds: float = 0.0
    bytes_read: int = 0


def output_config_hash(config: TilingConfig) -> str:
    """sha256 of the config keys that affect a slide's outputs."""
    data = {k: v for k, v in to_dict(config).items() if k not in RUNTIME_ONLY_KEYS}
    return hashlib.sha256(canonical_json(data)).hexdigest()


def slide_identity(row: SlideRow) -> dict[str, Any]:
    """What identifies the input slide (re-tiled when any of it changes)."""
    return {"uri": row.uri, "manifest_checksum": row.checksum, "manifest_mpp": row.mpp}


def is_done(meta: Any, row: SlideRow, config_sha256: str) -> bool:
    """A slide whose meta.json says ok for the same input and config needs no work."""
    return (
        isinstance(meta, dict)
        and meta.get("status") == "ok"
        and meta.get("config_sha256") == config_sha256
        and meta.get("source") == slide_identity(row)
    )


def stage_slide(uri: str, checksum: str | None, cache_dir: str | None) -> Path:
    """A local path of the slide: gs:// objects are downloaded and verified, local paths used in place."""
    try:
        from g2l import storage
    except ImportError:
        storage = None  # type: ignore[assignment]
    if storage is None or not hasattr(storage, "stage"):
        if uri.startswith("gs://"):
            raise SlideError(f"{uri}: reading gs:// slides needs g2l.storage (google-cloud-storage)")
        return Path(uri)
    return Path(storage.stage(uri, cache_dir=cache_dir, expected_checksum=checksum))


def open_reader(path: Path, backend: str, mpp_override: float | None) -> Any:
    """Open a slide with the g2l.slides backend registry."""
    from g2l.slides import open_slide

    return open_slide(str(path), backend=backend, mpp_override=mpp_override)


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(rgb), level=quality))


def _resize_area(rgb: np.ndarray, tile_px: int) -> np.ndarray:
    """Area-average a square RGB read down to tile_px (identity when it already is).

    OpenCV's INTER_AREA is ~5x faster than PIL's reduce/box filters and gives the same pixels for
    integer factors.
    """
    if rgb.shape[0] == tile_px and rgb.shape[1] == tile_px:
        return rgb
    from g2l.tiling.tissue import opencv

    cv2 = opencv()
    return cv2.resize(np.ascontiguousarray(rgb[..., :3]), (tile_px, tile_px), interpolation=cv2.INTER_AREA)


def tissue_image_px(
    dimensions: tuple[int, int],
    level_dimensions: Any,
    mpp: float,
    size0: int,
    config: TilingConfig,
) -> int:
    """Longest side of the image tissue is detected on.

    About `tissue_mpp` um/px, snapped to the longest side of the coarsest pyramid level that is at most
    1.5x coarser (the read is then one small level with no resampling), never under 8 px per tile edge
    (per-tile tissue fractions stay meaningful) and never over `tissue_level_px` (memory stays bounded).
    """
    longest = max(dimensions)
    wanted = longest * mpp / config.tissue_mpp
    candidates = [max(int(w), int(h)) for w, h in level_dimensions if max(int(w), int(h)) >= wanted / 1.5]
    snapped = min(candidates) if candidates else longest
    per_tile = int(np.ceil(8 * longest / size0))
    return int(min(config.tissue_level_px, longest, max(snapped, per_tile, 64)))


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


READ_PATHS = ("jpeg-copy", "jpeg-tiles", "reader")


def _tile_bytes(
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
    ds = plan.downsample
    size = plan.read_px

    def decode_encode(x: int, y: int) -> bytes:
        assert stored is not None  # noqa: S101 - only called on the jpeg-tiles path
        return _encode_jpeg(stored.read_resized(x, y, size, plan.tile_px), config.jpeg_quality)

    for part in _batches(len(xs), config.batch_tiles):
        lx = [int(round(x / ds)) for x in xs[part]]
        ly = [int(round(y / ds)) for y in ys[part]]
        if read_path == "jpeg-copy" and stored is not None:
            yield from pool.map(stored.jpeg, lx, ly)
            continue
        if read_path == "jpeg-tiles" and stored is not None:
            yield from pool.map(decode_encode, lx, ly)
            continue
        locations = [(int(x), int(y)) for x, y in zip(xs[part], ys[part], strict=True)]
        arrays = reader.read_regions(locations, plan.level, (size, size), num_workers=threads)
        futures = [
            pool.submit(lambda a: _encode_jpeg(_resize_area(a, plan.tile_px), config.jpeg_quality), arr)
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
    ds = plan.downsample
    if abs(ds - round(ds)) > 1e-9 or (plan.identity is False and plan.read_px % plan.tile_px):
        return "reader", None
    width, height = (int(v) for v in reader.level_dimensions[plan.level])
    try:
        stored = StoredTiles(path, width=width, height=height)
    except Exception:  # not a tiled JPEG TIFF level (or not a TIFF): the backend reads it
        return "reader", None
    xl = (xs / ds).round().astype(np.int64)
    yl = (ys / ds).round().astype(np.int64)
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
    if config.fast_jpeg:
        samples = [(int(xl[i]), int(yl[i]), _resize_area(np.asarray(raw[i]), plan.tile_px)) for i in picks]
        if stored.calibrate_decode(samples, plan.read_px, plan.tile_px):
            return "jpeg-tiles", stored
    stored.close()
    return "reader", None


def tile_slide(
    row: SlideRow,
    root: OutputRoot,
    config: TilingConfig,
    *,
    threads: int = 1,
    cache_dir: str | None = None,
    on_tiles: Callable[[int], None] | None = None,
) -> SlideOutcome:
    """Tile one slide into tiles/<slide_id>/ (coords, tiles.tar, thumbnail, meta last); skip if done."""
    started = time.monotonic()
    rel = f"tiles/{row.slide_id}"
    config_sha256 = output_config_hash(config)
    meta = root.read_json(f"{rel}/meta.json")
    if is_done(meta, row, config_sha256):
        return SlideOutcome(row.slide_id, "ok", n_tiles=int(meta["n_tiles"]), skipped=True)
    root.clean_stale_temps(rel)
    try:
        return _tile_slide(row, root, config, config_sha256, threads, cache_dir, on_tiles, started)
    except Exception as exc:
        error = (
            str(exc) if isinstance(exc, SlideError) else f"slide {row.slide_id}: {type(exc).__name__}: {exc}"
        )
        failed = {
            "slide_id": row.slide_id,
            "status": "failed",
            "error": error,
            "source": slide_identity(row),
            "config_sha256": config_sha256,
        }
        root.write_json(f"{rel}/meta.json", failed)
        return SlideOutcome(row.slide_id, "failed", error=error, seconds=time.monotonic() - started)


def _tile_slide(
    row: SlideRow,
    root: OutputRoot,
    config: TilingConfig,
    config_sha256: str,
    threads: int,
    cache_dir: str | None,
    on_tiles: Callable[[int], None] | None,
    started: float,
) -> SlideOutcome:
    rel = f"tiles/{row.slide_id}"
    timings: dict[str, float] = {}
    clock = time.monotonic()
    path = stage_slide(row.uri, row.checksum, cache_dir)
    bytes_read = path.stat().st_size
    timings["stage_s"] = time.monotonic() - clock
    clock = time.monotonic()
    reader = open_reader(path, config.backend, row.mpp)
    try:
        mpp = row.mpp if row.mpp is not None else getattr(reader, "mpp", None)
        if mpp is None or not mpp > 0:
            raise SlideError(
                f"slide {row.slide_id} has no mpp in its metadata; add an `mpp` value to its manifest row"
            )
        mpp_source = "manifest" if row.mpp is not None else "metadata"
        try:
            plan = plan_tiles(
                float(mpp),
                list(reader.level_downsamples),
                target_mpp=config.target_mpp,
                tile_px=config.tile_px,
                tolerance=config.mpp_tolerance,
            )
        except ValueError as exc:
            raise SlideError(f"slide {row.slide_id}: {exc}") from exc
        width0, height0 = (int(v) for v in reader.dimensions)
        timings["open_s"] = time.monotonic() - clock

        clock = time.monotonic()
        tissue_px = tissue_image_px(
            reader.dimensions, reader.level_dimensions, float(mpp), plan.size0, config
        )
        thumb = np.asarray(reader.thumbnail(tissue_px))
        thumb = np.ascontiguousarray(thumb[..., :3])
        scale_x, scale_y = width0 / thumb.shape[1], height0 / thumb.shape[0]
        tissue = detect_tissue(
            thumb,
            mpp=float(mpp) * (scale_x + scale_y) / 2,
            threshold=config.tissue_threshold,
            pen_filter=config.pen_filter,
            max_hole_mm2=config.max_hole_mm2,
            min_tissue_mm2=config.min_tissue_mm2,
        )
        xs, ys = grid(width0, height0, plan.size0)
        level_w, level_h = (int(v) for v in reader.level_dimensions[plan.level])
        inside = (np.round(xs / plan.downsample) + plan.read_px <= level_w) & (
            np.round(ys / plan.downsample) + plan.read_px <= level_h
        )
        xs, ys = xs[inside], ys[inside]
        fractions = tile_tissue_fractions(tissue.mask, xs, ys, plan.size0, scale_x, scale_y)
        keep = fractions >= config.min_tissue_fraction
        xs, ys, fractions = xs[keep], ys[keep], fractions[keep]
        n_grid = int(inside.sum())
        timings["tissue_s"] = time.monotonic() - clock

        clock = time.monotonic()
        read_path, stored = choose_read_path(reader, path, plan, xs, ys, config)
        try:
            with (
                root.writer(f"{rel}/tiles.tar") as tar_path,
                open(tar_path, "wb") as handle,
                ThreadPoolExecutor(max(1, threads)) as pool,
            ):
                hasher = HashingWriter(handle)
                tar = DeterministicTar(hasher)  # type: ignore[arg-type]
                done = 0
                for i, data in enumerate(
                    _tile_bytes(reader, plan, xs, ys, config, pool, threads, read_path, stored)
                ):
                    tar.add(f"{tile_key(row.slide_id, int(xs[i]), int(ys[i]))}.jpg", data)
                    done += 1
                    if on_tiles is not None and done % config.batch_tiles == 0:
                        on_tiles(config.batch_tiles)
                tar.close()
                if on_tiles is not None and done % config.batch_tiles:
                    on_tiles(done % config.batch_tiles)
                tiles_sha256 = hasher.sha256.hexdigest()
        finally:
            if stored is not None:
                stored.close()
        timings["tiles_s"] = time.monotonic() - clock

        clock = time.monotonic()
        table = pa.table(
            {
                "x": pa.array(xs, pa.int64()),
                "y": pa.array(ys, pa.int64()),
                "size0": pa.array(np.full(len(xs), plan.size0), pa.int64()),
                "tissue": pa.array(fractions, pa.float32()),
            },
            schema=COORDS_SCHEMA,
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        coords_bytes = buffer.getvalue()
        root.write_bytes(f"{rel}/coords.parquet", coords_bytes)
        # The tissue image serves as the QC picture unless it is much smaller than thumbnail_px.
        qc_px = min(config.thumbnail_px, max(width0, height0))
        qc = thumb if max(thumb.shape[:2]) >= 0.75 * qc_px else np.asarray(reader.thumbnail(qc_px))[..., :3]
        png = render_thumbnail(qc, tissue.mask, xs, ys, plan.size0, width0, height0, config.thumbnail_px)
        root.write_bytes(f"{rel}/thumbnail.png", png)
        timings["write_s"] = time.monotonic() - clock
        timings["total_s"] = time.monotonic() - started
        meta = {
            "slide_id": row.slide_id,
            "status": "ok",
            "source": slide_identity(row),
            "slide_checksum": row.checksum,
            "backend": getattr(reader, "backend", "unknown"),
            "backend_reason": getattr(reader, "backend_reason", ""),
            "mpp": float(mpp),
            "mpp_source": mpp_source,
            "dimensions": [width0, height0],
            "level": plan.level,
            "level_mpp": plan.level_mpp,
            "downsample": plan.downsample,
            "read_px": plan.read_px,
            "tile_px": plan.tile_px,
            "size0": plan.size0,
            "tile_mpp": plan.tile_mpp,
            "n_grid": n_grid,
            "n_tiles": int(len(xs)),
            "tissue_threshold": tissue.threshold,
            "tissue_area_fraction": float(tissue.mask.mean()),
            "pen_fraction": tissue.pen_fraction,
            "read_path": read_path,
            "jpeg_passthrough": read_path == "jpeg-copy",
            "tiles_sha256": tiles_sha256,
            "coords_sha256": hashlib.sha256(coords_bytes).hexdigest(),
            "config": to_dict(config),
            "config_sha256": config_sha256,
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
    finally:
        reader.close()
    root.write_json(f"{rel}/meta.json", meta)  # last: its presence with status ok marks the slide done
    return SlideOutcome(
        row.slide_id, "ok", n_tiles=int(len(xs)), seconds=time.monotonic() - started, bytes_read=bytes_read
    )
