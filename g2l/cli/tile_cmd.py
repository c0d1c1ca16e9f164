"""CLI commands for the tile stage: `g2l tile --manifest M --out ROOT ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

# Exit statuses: 1 = the run failed (too many slides, storage unreachable), 2 = unusable input, 130 = Ctrl-C.
EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 130

# The help shows the defaults of g2l.tiling.TilingConfig and the names of g2l.slides.BACKENDS without
# importing them (that would cost every `g2l` command a second of start-up);
# tests/test_tiling_cli_help.py checks that they match.
_CONFIG_WINS = "; when not given, the --config file's tiling.{key}, else the default"


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
    target_mpp: Annotated[
        float | None,
        typer.Option(
            help="Tile resolution in um/px (0.5 = 20x)" + _CONFIG_WINS.format(key="target_mpp"),
            show_default="0.5",
        ),
    ] = None,
    tile_px: Annotated[
        int | None,
        typer.Option(help="Tile edge in pixels" + _CONFIG_WINS.format(key="tile_px"), show_default="256"),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Slide reader: auto, cucim, openslide, tiffslide or tifffile-jpeg. auto tries cucim, then "
            "openslide, then tiffslide, and takes the first that reads the slide"
            + _CONFIG_WINS.format(key="backend"),
            show_default="auto",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Threads for reading/encoding (0 = all cores)" + _CONFIG_WINS.format(key="workers"),
            show_default="0",
        ),
    ] = None,
    max_failed_fraction: Annotated[
        float | None,
        typer.Option(
            help="Exit non-zero when more than this fraction of slides fail"
            + _CONFIG_WINS.format(key="max_failed_fraction"),
            show_default="0.05",
        ),
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
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace tiles and shards in --out that were made with other tiling settings (without it, "
            "such a run is refused and nothing is changed)",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Tile the manifest's slides at a target mpp into ROOT/tiles/ and WebDataset shards in ROOT/shards/.

    A rerun resumes: finished slides are skipped, interrupted ones are redone. Ctrl-C stops at once with a
    summary of what is finished.
    """
    from g2l.config import ConfigError, RunConfig, load_section
    from g2l.manifest.schema import ManifestError
    from g2l.manifest.table import load_table
    from g2l.storage import StorageError
    from g2l.tiling import TilingConfig
    from g2l.tiling.errors import TilingInputError, TilingInterrupted
    from g2l.tiling.runner import check_inputs, check_settings

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
        loaded = load_table(manifest)  # no pandas for a plain CSV: a shorter start-up for every call
        # Before metrics or progress write anything:
        check_inputs(loaded, out, slide_id or None)
        check_settings(out, cfg, replace=replace, shards=shards)
        summary = _run(loaded, out, cfg, run, slide_id or None, shards=shards, replace=replace, quiet=quiet)
    except ManifestError as exc:
        raise _fail(f"manifest {exc}", EXIT_INPUT) from None
    except TilingInputError as exc:
        raise _fail(str(exc), EXIT_INPUT) from None
    except StorageError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    except OSError as exc:  # reading the manifest: a directory, a missing or unreadable file
        raise _fail(f"cannot read the manifest {manifest}: {exc}", EXIT_INPUT) from None
    except TilingInterrupted as exc:
        _exit_now(exc.summary())
    except KeyboardInterrupt:
        _exit_now(
            "interrupted before any slide was tiled (or while packing shards); finished work is kept: run "
            "the same command again to resume"
        )
    typer.echo(json.dumps(summary))
    if not summary["ok"]:
        raise typer.Exit(EXIT_FAILED)


def _exit_now(summary: str) -> NoReturn:
    """Print the Ctrl-C summary and leave at once.

    Threads still waiting on a slow download or a dead endpoint (daemons: g2l's prepare thread, the GCS
    client's bucket-metadata fetches) would otherwise hold interpreter shutdown; every output is written
    atomically, so nothing is left half-done by not waiting for them.
    """
    import os
    import sys

    from g2l.progress import console

    console.print(f"[yellow]{summary}[/yellow]", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _run(
    loaded: Any,
    out: str,
    cfg: Any,
    run: Any,
    slide_ids: list[str] | None,
    *,
    shards: bool,
    replace: bool,
    quiet: bool,
) -> dict[str, Any]:
    """Tile (and pack unless `shards` is False) under stage metrics; the JSON summary the CLI prints."""
    from g2l.metrics import StageMetrics
    from g2l.progress import console
    from g2l.tiling import run_tiling, tile_slides

    metrics = StageMetrics("tiling", run_id=run.run_id, cancer=run.cancer, root=out).__enter__()
    try:
        if shards:
            result = run_tiling(
                loaded, out, cfg, slide_ids=slide_ids, quiet=quiet, metrics=metrics, replace=replace
            )
            n_ok, failed, n_tiles = len(result.slides_ok), result.slides_failed, result.n_tiles
            extra = {"shards_sha256": result.index["sha256"]}
        else:
            outcomes = tile_slides(loaded, out, cfg, slide_ids, quiet=quiet, metrics=metrics, replace=replace)
            n_ok = sum(o.status == "ok" for o in outcomes)
            failed = [{"slide_id": o.slide_id, "error": o.error or ""} for o in outcomes if o.status != "ok"]
            n_tiles = sum(o.n_tiles for o in outcomes)
            extra = {}
    except KeyboardInterrupt:
        raise  # Ctrl-C: no publishing, which could wait on a dead Pushgateway or bucket
    except BaseException as exc:
        metrics.__exit__(type(exc), exc, exc.__traceback__)
        raise
    metrics.__exit__(None, None, None)
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
