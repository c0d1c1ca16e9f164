"""The tiling stage: tile many slides (resumable, fan-out friendly), pack shards, write the run summary."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from g2l.progress import console, progress
from g2l.storage.base import StorageAccessError, StorageUnreachableError
from g2l.tiling.config import TilingConfig
from g2l.tiling.errors import TilingInputError, TilingInterrupted
from g2l.tiling.manifest_io import LoadedManifest, SlideRow, manifest_origin, resolve_manifest, slide_rows
from g2l.tiling.outputs import OutputRoot
from g2l.tiling.pipeline import Observer, SlidePipeline
from g2l.tiling.settings import (
    check_shard_settings,
    check_tile_settings,
    output_config_hash,
    record_tile_settings,
)
from g2l.tiling.shards import build_shards
from g2l.tiling.slide import SlideOutcome, release_attempt
from g2l.tiling.steps import StepTracker, StepWatcher
from g2l.tiling.summary import describe


@dataclasses.dataclass(frozen=True)
class TilingResult:
    """Outcome of a tiling run: which slides are ok or failed, the tile count and the shard index."""

    out_root: str
    slides_ok: list[str]
    slides_failed: list[dict[str, str]]
    n_tiles: int
    index: dict[str, Any]

    @property
    def failed_fraction(self) -> float:
        """Failed slides over all slides of the manifest (0 for an empty manifest)."""
        total = len(self.slides_ok) + len(self.slides_failed)
        return len(self.slides_failed) / total if total else 0.0

    def acceptable(self, max_failed_fraction: float) -> bool:
        """True unless more slides failed than the allowed fraction."""
        return self.failed_fraction <= max_failed_fraction


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _select(rows: list[SlideRow], slide_ids: list[str] | None) -> list[SlideRow]:
    if slide_ids is None:
        return rows
    known = {r.slide_id for r in rows}
    unknown = [s for s in slide_ids if s not in known]
    if unknown:
        sample = ", ".join(r.slide_id for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise TilingInputError(
            f"slide id(s) not in the manifest: {', '.join(unknown)}; the manifest's ids are "
            f"{sample or 'none'} (check the spelling, or tile without --slide-id)"
        )
    wanted = set(slide_ids)
    return [r for r in rows if r.slide_id in wanted]


def check_inputs(manifest: Any, out_root: str | Path, slide_ids: list[str] | None = None) -> list[SlideRow]:
    """The rows to tile, after checking the slide ids and that the output root can be written.

    Raises `TilingInputError` naming the bad input and the fix before anything is written.
    """
    table, _ = resolve_manifest(manifest)
    rows = _select(slide_rows(table), slide_ids)
    OutputRoot(out_root).check_writable()
    return rows


def check_settings(out_root: str | Path, config: TilingConfig, *, replace: bool, shards: bool = True) -> None:
    """Refuse (`SettingsConflictError`) a run whose settings differ from the finished outputs in `out_root`.

    Tiles made with other output settings, and (with `shards`) shards packed with another tiles_per_shard.
    """
    root = OutputRoot(out_root)
    check_tile_settings(root, config, replace=replace)
    if shards:
        check_shard_settings(root, config, replace=replace)


def tile_slides(
    manifest: Any,
    out_root: str | Path,
    config: TilingConfig,
    slide_ids: list[str] | None = None,
    *,
    workers: int | None = None,
    quiet: bool = False,
    metrics: Any = None,
    cache_dir: str | None = None,
    replace: bool = False,
    observer: Observer | None = None,
) -> list[SlideOutcome]:
    """Tile the manifest's slides (or `slide_ids` of them) into ROOT/tiles/<slide_id>/; finished ones skip.

    One pod of a fan-out calls this with its slide group; `write_shards` joins the groups afterwards.
    A root whose finished tiles were made with other settings is refused (`SettingsConflictError`, nothing
    written) unless `replace`. Ctrl-C raises `TilingInterrupted` (what finished, where it stopped) at once.
    Slides go through `SlidePipeline` (set-up, tiles and outputs of neighbouring slides overlap);
    `observer(step, slide_id)` hears its steps (prepare, prepared, deferred, tiles, finish, done).
    """
    rows = check_inputs(manifest, out_root, slide_ids)
    root = OutputRoot(out_root)
    check_tile_settings(root, config, replace=replace)
    threads = workers or config.workers or default_workers()
    outcomes: list[SlideOutcome] = []
    started = time.monotonic()
    tiles_done = 0
    tracker = StepTracker()
    recorded = False
    with progress(quiet) as bar:
        slides_task = bar.add_task("slides", total=len(rows))
        tiles_task = bar.add_task("tiles", total=None)

        def on_tiles(n: int) -> None:
            nonlocal tiles_done
            tiles_done += n
            rate = tiles_done / max(time.monotonic() - started, 1e-6)
            bar.advance(tiles_task, n, rate=f"{rate:,.0f} tiles/s")

        def show(text: str) -> None:
            bar.update(slides_task, description=text)

        # Where no live bar is drawn (a pod's log, a pipe), a slow step is named in a line of its own.
        log = None if quiet or console.is_terminal else lambda line: console.print(line, highlight=False)
        pipeline = SlidePipeline(
            root,
            config,
            threads=threads,
            cache_dir=cache_dir,
            replace=replace,
            on_tiles=on_tiles,
            on_step=tracker.on_step,
            observer=observer,
        )
        try:
            with StepWatcher(tracker, show, log):
                for outcome in pipeline.run(rows):
                    outcomes.append(outcome)
                    if outcome.status == "ok" and not recorded:
                        record_tile_settings(root, config)  # the root now holds tiles of these settings
                        recorded = True
                    if outcome.status == "failed":
                        error = escape(str(outcome.error))
                        console.print(f"[red]slide {outcome.slide_id} failed:[/red] {error}")
                    bar.advance(slides_task)
        except (KeyboardInterrupt, StorageUnreachableError, StorageAccessError) as exc:
            # Ctrl-C, or slide.RUN_LEVEL_ERRORS: neither is the fault of the slides in flight.
            in_flight = pipeline.in_flight()
            current = in_flight[0] if in_flight else None
            step = tracker.step_of(current) if current is not None else None
            if not root.remote:  # a remote root may be the very thing that hangs; local writes are instant
                for slide_id in in_flight:
                    release_attempt(root, slide_id)
            if isinstance(exc, KeyboardInterrupt):
                raise TilingInterrupted(outcomes, len(rows), current, step) from None
            raise
    elapsed = time.monotonic() - started
    if metrics is not None:
        written = sum(o.n_tiles for o in outcomes if not o.skipped and o.status == "ok")
        metrics.counter("slides_done_total", "Slides tiled (or found already tiled)").inc(
            sum(o.status == "ok" for o in outcomes)
        )
        metrics.counter("slides_skipped_total", "Slides skipped because their outputs were complete").inc(
            sum(o.skipped for o in outcomes)
        )
        metrics.counter("slides_failed_total", "Slides that could not be tiled").inc(
            sum(o.status == "failed" for o in outcomes)
        )
        metrics.failures.inc(sum(o.status == "failed" for o in outcomes))
        metrics.counter("tiles_written_total", "Tiles written in this run").inc(written)
        metrics.counter("bytes_read_total", "Bytes of slide files opened in this run").inc(
            sum(o.bytes_read for o in outcomes)
        )
        metrics.gauge("tiles_per_second", "Tiles written per second of tiling").set(
            written / max(elapsed, 1e-6)
        )
    return outcomes


def write_shards(
    out_root: str | Path, manifest: Any, config: TilingConfig, *, replace: bool = False
) -> dict[str, Any]:
    """Pack every tiled slide of the manifest into ROOT/shards/ and write ROOT/tiles/summary.json.

    Idempotent: the same tiled slides give byte-identical shards, and a rerun rewrites nothing. Shards
    packed with another `tiles_per_shard`, or tiles of other settings, are refused unless `replace`; a
    slide tiled with other settings is never packed (it is listed as failed, with the fix).
    Returns the run summary (with the shard index under `index`).
    """
    table, manifest_sha256 = resolve_manifest(manifest)
    rows = slide_rows(table)
    root = OutputRoot(out_root)
    check_tile_settings(root, config, replace=replace)
    check_shard_settings(root, config, replace=replace)
    config_sha256 = output_config_hash(config)
    ok: list[tuple[str, str, dict[str, Any]]] = []
    failed: list[dict[str, str]] = []
    for row in rows:
        meta = root.read_json(f"tiles/{row.slide_id}/meta.json")
        ok_meta = meta if isinstance(meta, dict) and meta.get("status") == "ok" else None
        if ok_meta is not None and ok_meta.get("config_sha256") != config_sha256:
            failed.append(
                {
                    "slide_id": row.slide_id,
                    "error": f"slide {row.slide_id} was tiled with other settings; run `g2l tile` for it "
                    "with these settings (and --replace)",
                }
            )
        elif ok_meta is not None:
            ok.append((row.slide_id, row.site, ok_meta))
        elif isinstance(meta, dict) and meta.get("status") == "failed":
            failed.append({"slide_id": row.slide_id, "error": str(meta.get("error"))})
        elif isinstance(meta, dict) and meta.get("status") == "running":
            failed.append(
                {
                    "slide_id": row.slide_id,
                    "error": f"slide {row.slide_id} was interrupted while being tiled; run `g2l tile` again",
                }
            )
        else:
            failed.append(
                {
                    "slide_id": row.slide_id,
                    "error": f"slide {row.slide_id} was not tiled (no tiles/{row.slide_id}/meta.json); "
                    "run `g2l tile` for it",
                }
            )
    index = build_shards(
        root,
        ok,
        config,
        manifest_sha256,
        manifest_origin(manifest),
        workers=config.workers or default_workers(),
    )
    summary = {
        "slides_ok": [sid for sid, _, _ in ok],
        "slides_failed": failed,
        "n_tiles": index["n_tiles"],
        "n_shards": len(index["shards"]),
        "shards_sha256": index["sha256"],
        "manifest_sha256": manifest_sha256,
    }
    root.write_json("tiles/summary.json", summary)
    return {**summary, "index": index}


def run_tiling(
    manifest: Any,
    out_root: str | Path,
    config: TilingConfig,
    *,
    slide_ids: list[str] | None = None,
    workers: int | None = None,
    quiet: bool = False,
    metrics: Any = None,
    cache_dir: str | None = None,
    replace: bool = False,
) -> TilingResult:
    """Tile every slide, then pack shards and write summary.json (a rerun of a finished run is a no-op).

    Outputs made with other settings are refused before any work unless `replace` (see `tile_slides`).
    """
    loaded = LoadedManifest(*resolve_manifest(manifest), origin=manifest_origin(manifest))
    check_settings(out_root, config, replace=replace)  # before hours of tiling, not after
    tile_slides(
        loaded,
        out_root,
        config,
        slide_ids,
        workers=workers,
        quiet=quiet,
        metrics=metrics,
        cache_dir=cache_dir,
        replace=replace,
    )
    summary = write_shards(out_root, loaded, config, replace=replace)
    if not quiet:
        console.print(
            f"tiling: {len(summary['slides_ok'])} slide(s) ok, {len(summary['slides_failed'])} failed, "
            f"{summary['n_tiles']} tiles in {summary['n_shards']} shard(s) under {out_root}",
            highlight=False,
        )
        console.print(
            describe(str(out_root), summary["slides_ok"], summary["slides_failed"]),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    return TilingResult(
        out_root=str(out_root),
        slides_ok=summary["slides_ok"],
        slides_failed=summary["slides_failed"],
        n_tiles=summary["n_tiles"],
        index=summary["index"],
    )
