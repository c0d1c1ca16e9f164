"""CLI commands for the embed stage: `g2l embed` fills the teacher embedding cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command(name="embed")
    def embed_cmd(
        shards: Annotated[str, typer.Option("--shards", help="Tile shards directory (ROOT/shards).")],
        out: Annotated[str, typer.Option("--out", help="Artifact root (cache: OUT/embeddings/<key>/).")],
        config: Annotated[Path | None, typer.Option("--config", help="YAML config (`embed:`).")] = None,
        teacher: Annotated[str | None, typer.Option("--teacher", help="Model name or dir.")] = None,
        weights: Annotated[str | None, typer.Option("--weights", help="Teacher weights file or dir.")] = None,
        views: Annotated[int | None, typer.Option("--views", help="Augmented views per tile (K).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="View seed.")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per forward.")] = None,
        num_workers: Annotated[int | None, typer.Option("--num-workers", help="Decode workers.")] = None,
        device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = None,
        rank: Annotated[int, typer.Option("--rank", help="This worker computes parts rank, rank+W, ...")] = 0,
        world_size: Annotated[int, typer.Option("--world-size", help="Workers filling the cache (W).")] = 1,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
        repair: Annotated[bool, typer.Option(
            "--repair", help="Recompute the damaged parts of a sealed cache and seal it again.")] = False,
    ) -> None:
        """Embed every tile's K seeded views with the teacher; prints the cache directory last."""
        from g2l.config import ConfigError, RunConfig, load_section
        from g2l.embed import EmbedConfig, run_embed
        from g2l.progress import console

        try:
            cfg = load_section(EmbedConfig, config, section="embed", teacher=teacher, weights=weights,
                               views=views, seed=seed, batch_size=batch_size, num_workers=num_workers,
                               device=device)
            run = load_section(RunConfig, config, section="run") if config else RunConfig()
            cache_dir = run_embed(shards, out, cfg, rank=rank, world_size=world_size, quiet=quiet,
                                  run_id=run.run_id, cancer=run.cancer, repair=repair)
        except (ConfigError, ValueError, RuntimeError, OSError) as exc:
            console.print(f"[red]embed failed: {exc}[/red]")
            raise typer.Exit(1) from exc
        typer.echo(cache_dir)
