"""CLI commands for the embed stage: `g2l embed` fills the teacher embedding cache."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command(name="embed")
    def embed_cmd(
        shards: str = typer.Option(..., "--shards", help="Tile shards directory (ROOT/shards) with index.json."),
        out: str = typer.Option(..., "--out", help="Artifact root; the cache goes to OUT/embeddings/<key>/."),
        config: Path | None = typer.Option(None, "--config", help="YAML config; its `embed:` section is read."),
        teacher: str | None = typer.Option(None, "--teacher", help="Model name (see g2l.models) or directory."),
        weights: str | None = typer.Option(None, "--weights", help="Teacher weights file or directory."),
        views: int | None = typer.Option(None, "--views", help="Augmented views per tile (K)."),
        seed: int | None = typer.Option(None, "--seed", help="View seed."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Images per forward."),
        num_workers: int | None = typer.Option(None, "--num-workers", help="DataLoader decode/augment workers."),
        device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
        rank: int = typer.Option(0, "--rank", help="This worker's rank: it computes parts rank, rank+W, ..."),
        world_size: int = typer.Option(1, "--world-size", help="Number of workers filling the cache (W)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
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
                                  run_id=run.run_id, cancer=run.cancer)
        except (ConfigError, ValueError, RuntimeError, OSError) as exc:
            console.print(f"[red]embed failed: {exc}[/red]")
            raise typer.Exit(1) from exc
        typer.echo(cache_dir)
