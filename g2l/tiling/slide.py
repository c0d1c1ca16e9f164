"""One slide's set-up and outputs: stage, open, plan, find tissue, choose the read path; coords, QC, meta.

The tiles themselves are made and written by `g2l.tiling.pipeline`, which overlaps neighbouring slides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from g2l.config import to_dict
from g2l.storage.base import StorageAccessError, StorageUnreachableError
from g2l.tiling.config import TilingConfig
from g2l.tiling.grid import TilePlan, grid, plan_tiles
from g2l.tiling.manifest_io import SlideRow
from g2l.tiling.mpp import resolve_slide_mpp
from g2l.tiling.outputs import OutputRoot
from g2l.tiling.reader import SlideError, open_reader, stage_slide
from g2l.tiling.settings import check_slide_settings, output_config_hash
from g2l.tiling.thumbnail import qc_image, render_thumbnail, tissue_and_qc_images
from g2l.tiling.tile_pixels import TileMaker, choose_read_path, level_coords
from g2l.tiling.tissue import detect_tissue, tile_tissue_fractions

# Errors of the storage endpoint or credentials, not of one slide: they stop the run instead of failing
# every remaining slide one by one (and are not recorded in any slide's meta.json).
RUN_LEVEL_ERRORS: tuple[type[BaseException], ...] = (StorageUnreachableError, StorageAccessError)
#: coords.parquet's columns (docs/contracts.md). pyarrow is imported where the file is written, on a side
#: thread once the first slide is tiling, not while `g2l tile` starts (~30 ms of a call's critical path).
COORDS_COLUMNS = (("x", np.int64), ("y", np.int64), ("size0", np.int64), ("tissue", np.float32))


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


def slide_identity(row: SlideRow) -> dict[str, Any]:
    """What identifies the input slide (re-tiled when any of it changes)."""
    identity: dict[str, Any] = {"uri": row.uri, "manifest_checksum": row.checksum, "manifest_mpp": row.mpp}
    if row.mpp_source is not None:  # only when set, so slides finished before the column existed stay done
        identity["manifest_mpp_source"] = row.mpp_source
    return identity


def is_done(meta: Any, row: SlideRow, config_sha256: str) -> bool:
    """A slide whose meta.json says ok for the same input and config needs no work."""
    return (
        isinstance(meta, dict)
        and meta.get("status") == "ok"
        and meta.get("config_sha256") == config_sha256
        and meta.get("source") == slide_identity(row)
    )


def tissue_image_px(
    dimensions: tuple[int, int],
    level_dimensions: Any,
    mpp: float,
    size0: int,
    config: TilingConfig,
) -> int:
    """Longest side of the image tissue is detected on.

    About `tissue_mpp` um/px, snapped to the longest side of a pyramid level within 1.5x of it (the read
    is then one small level with no resampling), never under 8 px per tile edge
    (per-tile tissue fractions stay meaningful) and never over `tissue_level_px` (memory stays bounded).
    """
    longest = max(dimensions)
    wanted = longest * mpp / config.tissue_mpp
    candidates = [max(int(w), int(h)) for w, h in level_dimensions if max(int(w), int(h)) >= wanted / 1.5]
    snapped = min(candidates) if candidates else longest
    # A level much finer than wanted is read and shrunk (detection cost grows with pixels).
    target = snapped if snapped <= 1.5 * wanted else int(np.ceil(wanted))
    per_tile = int(np.ceil(8 * longest / size0))
    return int(min(config.tissue_level_px, longest, max(target, per_tile, 64)))


@dataclasses.dataclass
class PreparedSlide:
    """A slide opened and planned, its tissue found, its tiles chosen and their read path; ready to tile."""

    row: SlideRow
    config_sha256: str
    reader: Any
    path: Path
    mpp: float
    mpp_source: str
    plan: TilePlan
    thumb: np.ndarray
    mask: np.ndarray
    tissue_threshold: float
    pen_fraction: float
    xs: np.ndarray
    ys: np.ndarray
    fractions: np.ndarray
    n_grid: int
    bytes_read: int
    started: float
    timings: dict[str, float]
    maker: TileMaker | None = None
    qc: np.ndarray | None = None  # the QC picture, when the tissue image's read gave it

    def close(self) -> None:
        """Release the reader and the stored tiles."""
        try:
            if self.maker is not None:
                self.maker.close()
        finally:
            self.reader.close()


@dataclasses.dataclass(frozen=True)
class Suspect:
    """A slide an earlier run was interrupted on: it is tiled with no other slide in flight, so that a
    crash while it is read counts against it alone (never against the slides prepared beside it)."""

    row: SlideRow


def record_failure(
    row: SlideRow, root: OutputRoot, config_sha256: str, exc: BaseException, started: float
) -> SlideOutcome:
    """Record a failed slide (meta.json with status failed) and return its outcome."""
    error = str(exc) if isinstance(exc, SlideError) else f"slide {row.slide_id}: {type(exc).__name__}: {exc}"
    failed = {
        "slide_id": row.slide_id,
        "status": "failed",
        "error": error,
        "source": slide_identity(row),
        "config_sha256": config_sha256,
    }
    root.write_json(f"tiles/{row.slide_id}/meta.json", failed)
    return SlideOutcome(row.slide_id, "failed", error=error, seconds=time.monotonic() - started)


def release_attempt(root: OutputRoot, slide_id: str) -> None:
    """Uncount an attempt that stopped for a reason outside the slide (Ctrl-C, an unreachable endpoint).

    `max_attempts` counts attempts that took the tiler down with them; these did not, so they must not
    bring a good slide closer to being skipped. Best effort: a root that cannot be written is left as is.
    """
    rel = f"tiles/{slide_id}/meta.json"
    with contextlib.suppress(Exception):
        meta = root.read_json(rel)
        if isinstance(meta, dict) and meta.get("status") == "running":
            attempts = int(meta.get("attempts", 1)) - 1
            status = "running" if attempts > 0 else "pending"
            root.write_json(rel, {**meta, "status": status, "attempts": attempts})


def prepare_slide(
    row: SlideRow,
    root: OutputRoot,
    config: TilingConfig,
    *,
    cache_dir: str | None = None,
    replace: bool = False,
    on_step: Callable[[str, str | None], None] | None = None,
    alone: bool = True,
) -> PreparedSlide | SlideOutcome | Suspect:
    """Stage, open, plan, find tissue, choose tiles and their read path.

    Returns an outcome instead when the slide is done already or failed, and `Suspect` (touching
    nothing) when an earlier run was interrupted on it and the caller has other slides in flight
    (`alone=False`): the caller finishes those first and calls again with `alone=True`.
    A slide finished with other settings raises `SettingsConflictError` (nothing touched) unless `replace`.
    `on_step(slide_id, step)` hears each step as it starts (staging, opening, finding tissue).
    """
    started = time.monotonic()
    rel = f"tiles/{row.slide_id}"
    config_sha256 = output_config_hash(config)
    meta = root.read_json(f"{rel}/meta.json")
    if isinstance(meta, dict) and is_done(meta, row, config_sha256):
        return SlideOutcome(row.slide_id, "ok", n_tiles=int(meta["n_tiles"]), skipped=True)
    check_slide_settings(root, meta, config, replace=replace)
    # A reader that segfaults or exhausts memory on a slide takes the process down before any error can
    # be recorded; the restarted run would hit the same slide forever. A "running" meta.json counts the
    # attempts, and after `max_attempts` interrupted ones the slide is failed and skipped like any other.
    same_input = (
        isinstance(meta, dict)
        and meta.get("config_sha256") == config_sha256
        and (meta.get("source") == slide_identity(row))
    )
    attempts = 1
    retry_of_failure = (
        False  # a slide that failed cleanly is retried, its meta.json left as is unless it changes
    )
    if same_input and isinstance(meta, dict):
        if meta.get("status") == "running":
            if not alone:
                return Suspect(row)
            attempts = int(meta.get("attempts", 0)) + 1
        elif meta.get("status") == "failed" and meta.get("crashed"):
            return SlideOutcome(row.slide_id, "failed", error=str(meta.get("error")))
        elif meta.get("status") == "failed":
            retry_of_failure = True
    record = {"slide_id": row.slide_id, "source": slide_identity(row), "config_sha256": config_sha256}
    if attempts > config.max_attempts:
        error = (
            f"slide {row.slide_id} stopped the tiler {attempts - 1} times in a row while it was being read "
            f"(a crash, an out-of-memory kill or an interruption); it is skipped: check the file, "
            f"then delete tiles/{row.slide_id}/meta.json to try it again"
        )
        failed = {**record, "status": "failed", "error": error, "crashed": True, "attempts": attempts - 1}
        root.write_json(f"{rel}/meta.json", failed)
        return SlideOutcome(row.slide_id, "failed", error=error)
    root.clean_stale_temps(rel)
    if not retry_of_failure:
        root.write_json(f"{rel}/meta.json", {**record, "status": "running", "attempts": attempts})

    def step(name: str) -> None:
        if on_step is not None:
            on_step(row.slide_id, name)

    try:
        return _prepare(row, config, config_sha256, cache_dir, started, step)
    except RUN_LEVEL_ERRORS:
        release_attempt(root, row.slide_id)  # the endpoint or credentials, not this slide: stop the run
        raise
    except Exception as exc:
        return record_failure(row, root, config_sha256, exc, started)


def _prepare(
    row: SlideRow,
    config: TilingConfig,
    config_sha256: str,
    cache_dir: str | None,
    started: float,
    step: Callable[[str], None],
) -> PreparedSlide:
    timings: dict[str, float] = {}
    clock = time.monotonic()
    step(f"staging {row.uri}" if "://" in row.uri else "checking the file")
    path = stage_slide(row.uri, row.checksum, cache_dir)
    bytes_read = path.stat().st_size
    timings["stage_s"] = time.monotonic() - clock
    clock = time.monotonic()
    step(f"opening ({config.backend})")
    reader = open_reader(path, config.backend, None)  # reader.mpp is then the slide's own metadata
    try:
        mpp, mpp_source = resolve_slide_mpp(row, getattr(reader, "mpp", None), config.mpp_tolerance)
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
        step("finding tissue")
        tissue_px = tissue_image_px(
            reader.dimensions, reader.level_dimensions, float(mpp), plan.size0, config
        )
        qc_px = min(config.thumbnail_px, max(width0, height0))  # as `_finish` makes the QC picture
        thumb, qc = tissue_and_qc_images(reader, tissue_px, qc_px)
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
        level_xs, level_ys = level_coords(reader, plan.level, xs, ys)
        inside = (level_xs + plan.read_px <= level_w) & (level_ys + plan.read_px <= level_h)
        xs, ys = xs[inside], ys[inside]
        fractions = tile_tissue_fractions(tissue.mask, xs, ys, plan.size0, scale_x, scale_y)
        keep = fractions >= config.min_tissue_fraction
        timings["tissue_s"] = time.monotonic() - clock

        clock = time.monotonic()
        step("checking the stored tiles")
        xs, ys = xs[keep], ys[keep]
        read_path, stored = choose_read_path(reader, path, plan, xs, ys, config)
        maker = TileMaker(reader, plan, xs, ys, config, read_path, stored)
        timings["read_path_s"] = time.monotonic() - clock
    except BaseException:
        reader.close()
        raise
    return PreparedSlide(
        row=row,
        config_sha256=config_sha256,
        reader=reader,
        path=path,
        mpp=float(mpp),
        mpp_source=mpp_source,
        plan=plan,
        thumb=thumb,
        mask=tissue.mask,
        tissue_threshold=tissue.threshold,
        pen_fraction=tissue.pen_fraction,
        xs=xs,
        ys=ys,
        fractions=fractions[keep],
        n_grid=int(inside.sum()),
        bytes_read=bytes_read,
        started=started,
        timings=timings,
        maker=maker,
        qc=qc,
    )


def finish_slide(
    prepared: PreparedSlide,
    root: OutputRoot,
    config: TilingConfig,
    tiles_sha256: str,
    tiles_s: float,
    *,
    on_step: Callable[[str, str | None], None] | None = None,
) -> SlideOutcome:
    """Write coords.parquet, thumbnail.png and, last, meta.json of a slide whose tiles.tar is in place."""
    p = prepared
    if on_step is not None:
        on_step(p.row.slide_id, "writing outputs")
    try:
        return _finish(p, root, config, tiles_sha256, tiles_s)
    except RUN_LEVEL_ERRORS:
        release_attempt(root, p.row.slide_id)
        raise
    except Exception as exc:
        return record_failure(p.row, root, p.config_sha256, exc, p.started)
    finally:
        p.close()


def _column(values: np.ndarray, dtype: type[np.generic]) -> Any:
    """A pyarrow column over a numpy array's buffer.

    Not `pa.array(values)`: pyarrow asks whether `values` is a pandas object, which imports pandas
    (~0.3 s of a `g2l tile` call that otherwise never needs it).
    """
    import pyarrow as pa

    data = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(pa.from_numpy_dtype(data.dtype), len(data), [None, pa.py_buffer(data)])


def _finish(
    p: PreparedSlide, root: OutputRoot, config: TilingConfig, tiles_sha256: str, tiles_s: float
) -> SlideOutcome:
    row, plan, reader, xs, ys = p.row, p.plan, p.reader, p.xs, p.ys
    rel = f"tiles/{row.slide_id}"
    timings = dict(p.timings)
    timings["tiles_s"] = tiles_s
    width0, height0 = (int(v) for v in reader.dimensions)
    clock = time.monotonic()
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = {"x": xs, "y": ys, "size0": np.full(len(xs), plan.size0), "tissue": p.fractions}
    table = pa.Table.from_arrays(
        [_column(values[name], dtype) for name, dtype in COORDS_COLUMNS],
        schema=pa.schema([(name, pa.from_numpy_dtype(np.dtype(dtype))) for name, dtype in COORDS_COLUMNS]),
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    coords_bytes = buffer.getvalue()
    root.write_bytes(f"{rel}/coords.parquet", coords_bytes)
    # The tissue image serves as the QC picture unless it is much smaller than thumbnail_px.
    qc_px = min(config.thumbnail_px, max(width0, height0))
    thumb = p.thumb
    if max(thumb.shape[:2]) >= 0.75 * qc_px:
        qc = thumb
    else:
        qc = p.qc if p.qc is not None else qc_image(reader, p.path, qc_px)
    png = render_thumbnail(qc, p.mask, xs, ys, plan.size0, width0, height0, config.thumbnail_px)
    root.write_bytes(f"{rel}/thumbnail.png", png)
    timings["write_s"] = time.monotonic() - clock
    timings["total_s"] = time.monotonic() - p.started
    maker = p.maker
    read_path = maker.read_path if maker is not None else "reader"
    meta = {
        "slide_id": row.slide_id,
        "status": "ok",
        "source": slide_identity(row),
        "slide_checksum": row.checksum,
        "backend": getattr(reader, "backend", "unknown"),
        "backend_reason": getattr(reader, "backend_reason", ""),
        "mpp": p.mpp,
        "mpp_source": p.mpp_source,
        "dimensions": [width0, height0],
        "level": plan.level,
        "level_mpp": plan.level_mpp,
        "downsample": plan.downsample,
        "read_px": plan.read_px,
        "tile_px": plan.tile_px,
        "size0": plan.size0,
        "tile_mpp": plan.tile_mpp,
        "n_grid": p.n_grid,
        "n_tiles": int(len(xs)),
        "tissue_threshold": p.tissue_threshold,
        "tissue_area_fraction": float(p.mask.mean()),
        "pen_fraction": p.pen_fraction,
        "read_path": read_path,
        "tile_pixels": maker.method if maker is not None else "none",
        "tile_decoder": maker.decoder if maker is not None else None,
        "jpeg_passthrough": read_path == "jpeg-copy",
        "tiles_sha256": tiles_sha256,
        "coords_sha256": hashlib.sha256(coords_bytes).hexdigest(),
        "config": to_dict(config),
        "config_sha256": p.config_sha256,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    root.write_json(f"{rel}/meta.json", meta)  # last: its presence with status ok marks the slide done
    return SlideOutcome(
        row.slide_id,
        "ok",
        n_tiles=int(len(xs)),
        seconds=time.monotonic() - p.started,
        bytes_read=p.bytes_read,
    )
