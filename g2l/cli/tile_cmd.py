"""CLI commands for the tile stage: `g2l tile --manifest M --out ROOT ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

# Exit statuses: 1 = the run failed (too many slides, storage unreachable), 2 = unusable input, 130 = Ctrl-C.
EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command(name="tile")(tile)


def _fail(message: str, code: int) -> typer.Exit:
    """Print `message` as an error (no traceback: these are the user's inputs) and return the exit."""
    from rich.markup import escape

    from g2l.progress import console

    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def tile(
    manifest: Annotated[str, typer.Option(help="Manifest CSV/Parquet, local or gs://")],
    out: Annotated[str, typer.Option(help="Artifact root (local directory or gs://bucket/prefix)")],
    config: Annotated[
        Path | None, typer.Option(help="YAML config; its `tiling:` and `run:` sections")
    ] = None,
    target_mpp: Annotated[float | None, typer.Option(help="Tile resolution in um/px (0.5 = 20x)")] = None,
    tile_px: Annotated[int | None, typer.Option(help="Tile edge in pixels")] = None,
    backend: Annotated[str | None, typer.Option(help="auto, cucim, openslide or tiffslide")] = None,
    workers: Annotated[int | None, typer.Option(help="Threads for reading/encoding (0 = all cores)")] = None,
    max_failed_fraction: Annotated[
        float | None, typer.Option(help="Exit non-zero when more than this fraction of slides fail")
    ] = None,
    slide_id: Annotated[list[str] | None, typer.Option(help="Tile only these slides (repeatable)")] = None,
    shards: Annotated[
        bool,
        typer.Option(
            "--shards/--no-shards",
            help="Pack shards and write summary.json after tiling; --no-shards for one group of a fan-out "
            "(a final `g2l tile` run without --slide-id then only packs)",
        ),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Tile the manifest's slides at a target mpp into ROOT/tiles/ and WebDataset shards in ROOT/shards/."""
    from g2l.config import ConfigError, RunConfig, load_section
    from g2l.manifest import ManifestError
    from g2l.manifest import load as load_manifest
    from g2l.storage import StorageError
    from g2l.tiling import TilingConfig
    from g2l.tiling.errors import TilingInputError
    from g2l.tiling.runner import check_inputs

    try:
        cfg = load_section(
            TilingConfig,
            config,
            section="tiling",
            target_mpp=target_mpp,
            tile_px=tile_px,
            backend=backend,
            workers=workers,
            max_failed_fraction=max_failed_fraction,
        )
        run = load_section(RunConfig, config, section="run")
    except (ConfigError, OSError) as exc:
        raise _fail(f"config: {exc}", EXIT_INPUT) from None
    try:
        loaded = load_manifest(manifest)
    except ManifestError as exc:
        raise _fail(f"manifest {exc}", EXIT_INPUT) from None
    except (OSError, StorageError) as exc:
        raise _fail(f"cannot read the manifest {manifest}: {exc}", EXIT_INPUT) from None
    try:
        check_inputs(loaded, out, slide_id or None)  # before metrics or progress write anything
        summary = _run(loaded, out, cfg, run, slide_id or None, shards=shards, quiet=quiet)
    except TilingInputError as exc:
        raise _fail(str(exc), EXIT_INPUT) from None
    except StorageError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    typer.echo(json.dumps(summary))
    if not summary["ok"]:
        raise typer.Exit(EXIT_FAILED)


def _run(
    loaded: Any,
    out: str,
    cfg: Any,
    run: Any,
    slide_ids: list[str] | None,
    *,
    shards: bool,
    quiet: bool,
) -> dict[str, Any]:
    """Tile (and pack unless `shards` is False) under stage metrics; the JSON summary the CLI prints."""
    from g2l.metrics import StageMetrics
    from g2l.progress import console
    from g2l.tiling import run_tiling, tile_slides

    with StageMetrics("tiling", run_id=run.run_id, cancer=run.cancer, root=out) as metrics:
        if shards:
            result = run_tiling(loaded, out, cfg, slide_ids=slide_ids, quiet=quiet, metrics=metrics)
            n_ok, failed, n_tiles = len(result.slides_ok), result.slides_failed, result.n_tiles
            extra = {"shards_sha256": result.index["sha256"]}
        else:
            outcomes = tile_slides(loaded, out, cfg, slide_ids, quiet=quiet, metrics=metrics)
            n_ok = sum(o.status == "ok" for o in outcomes)
            failed = [{"slide_id": o.slide_id, "error": o.error or ""} for o in outcomes if o.status != "ok"]
            n_tiles = sum(o.n_tiles for o in outcomes)
            extra = {}
    total = n_ok + len(failed)
    fraction = len(failed) / total if total else 0.0
    ok = fraction <= cfg.max_failed_fraction
    if not ok:
        console.print(
            f"[red]{len(failed)} of {total} slides failed ({fraction:.1%}), "
            f"more than max_failed_fraction {cfg.max_failed_fraction:.1%}"
        )
    counts = {"slides_ok": n_ok, "slides_failed": len(failed), "n_tiles": n_tiles}
    return {"out": out, **counts, **extra, "ok": ok}
