"""The tiling stage: tile many slides (resumable, fan-out friendly), pack shards, write the run summary."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from g2l.progress import console, progress
from g2l.tiling.config import TilingConfig
from g2l.tiling.manifest_io import LoadedManifest, SlideRow, resolve_manifest, slide_rows
from g2l.tiling.outputs import OutputRoot
from g2l.tiling.pipeline import Observer, SlidePipeline
from g2l.tiling.shards import build_shards
from g2l.tiling.slide import SlideOutcome
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
        raise ValueError(f"slide id(s) not in the manifest: {', '.join(unknown)}")
    wanted = set(slide_ids)
    return [r for r in rows if r.slide_id in wanted]


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
    observer: Observer | None = None,
) -> list[SlideOutcome]:
    """Tile the manifest's slides (or `slide_ids` of them) into ROOT/tiles/<slide_id>/; finished ones skip.

    One pod of a fan-out calls this with its slide group; `write_shards` joins the groups afterwards.
    `observer(step, slide_id)` hears each slide's steps (prepare, prepared, tiles, finish, done).
    """
    df, _ = resolve_manifest(manifest)
    rows = _select(slide_rows(df), slide_ids)
    root = OutputRoot(out_root)
    threads = workers or config.workers or default_workers()
    outcomes: list[SlideOutcome] = []
    started = time.monotonic()
    tiles_done = 0
    with progress(quiet) as bar:
        slides_task = bar.add_task("slides", total=len(rows))
        tiles_task = bar.add_task("tiles", total=None)

        def on_tiles(n: int) -> None:
            nonlocal tiles_done
            tiles_done += n
            rate = tiles_done / max(time.monotonic() - started, 1e-6)
            bar.advance(tiles_task, n, rate=f"{rate:,.0f} tiles/s")

        pipeline = SlidePipeline(
            root, config, threads=threads, cache_dir=cache_dir, on_tiles=on_tiles, observer=observer
        )
        for outcome in pipeline.run(rows):
            outcomes.append(outcome)
            if outcome.status == "failed":
                console.print(f"[red]slide {outcome.slide_id} failed:[/red] {outcome.error}")
            bar.advance(slides_task)
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


def write_shards(out_root: str | Path, manifest: Any, config: TilingConfig) -> dict[str, Any]:
    """Pack every tiled slide of the manifest into ROOT/shards/ and write ROOT/tiles/summary.json.

    Idempotent: the same tiled slides give byte-identical shards, and a rerun rewrites nothing.
    Returns the run summary (with the shard index under `index`).
    """
    df, manifest_sha256 = resolve_manifest(manifest)
    rows = slide_rows(df)
    root = OutputRoot(out_root)
    ok: list[tuple[str, str, dict[str, Any]]] = []
    failed: list[dict[str, str]] = []
    for row in rows:
        meta = root.read_json(f"tiles/{row.slide_id}/meta.json")
        if isinstance(meta, dict) and meta.get("status") == "ok":
            ok.append((row.slide_id, row.site, meta))
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
    index = build_shards(root, ok, config, manifest_sha256)
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
) -> TilingResult:
    """Tile every slide, then pack shards and write summary.json (a rerun of a finished run is a no-op)."""
    loaded = LoadedManifest(*resolve_manifest(manifest))
    tile_slides(
        loaded,
        out_root,
        config,
        slide_ids,
        workers=workers,
        quiet=quiet,
        metrics=metrics,
        cache_dir=cache_dir,
    )
    summary = write_shards(out_root, loaded, config)
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
