"""CLI: `g2l models check NAME [--weights PATH] [--json]` (the zoo, on the meta device) and `g2l rehearse`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _models_group(app: typer.Typer) -> typer.Typer:
    """The `models` group (registry_cmd registers `models list` first); created here when absent."""
    for group in app.registered_groups:
        if group.name == "models" and group.typer_instance is not None:
            return group.typer_instance
    models = typer.Typer(help="The model zoo and registered students.", no_args_is_help=True)
    app.add_typer(models, name="models")
    return models


def register(app: typer.Typer) -> None:
    """Add `models check` to the models group and `rehearse` to the main app."""
    _models_group(app).command(name="check")(check_cmd)
    app.command(name="rehearse")(rehearse_cmd)


def check_cmd(
    name: Annotated[str, typer.Argument(help="Model: zoo name (hibou-L), timm name or directory")],
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Checkpoint to check against it (only its header is read)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line (params, shapes, misfits)")] = False,
) -> None:
    """Describe a model without building it (meta device); with --weights, name every tensor that misfits.

    Exit 0 when the checkpoint fits (or none was given), 1 when tensors are missing, unexpected or
    mis-shaped, 2 when the model or file cannot be read.
    """
    from g2l.models.check import check_model
    from g2l.models.errors import ModelError
    from g2l.progress import console

    try:
        report = check_model(name, weights)
    except ModelError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True, markup=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report.as_dict(), sort_keys=True) if as_json else report.format())
    raise typer.Exit(0 if report.ok else 1)


def rehearse_cmd(
    config: Annotated[
        Path, typer.Option("--config", exists=True, dir_okay=False, help="Run config (configs/brca.yaml)")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for checkpoints, slides and stage outputs")],
    quiet: Annotated[bool, typer.Option("--quiet", help="Only the final JSON line")] = False,
) -> None:
    """Run tile -> embed -> distill -> evaluate on CPU at the config's real model sizes, random weights.

    The teacher and student are the config's architectures with random weights saved as local
    checkpoints in their published layouts; two generated slides; the config's settings except sizes
    and step counts. The last line is one JSON object: ok, teacher_params, student_params, stages.
    """
    from g2l.config import ConfigError
    from g2l.models.errors import ModelError
    from g2l.progress import console
    from g2l.rehearse import run_rehearsal

    try:
        summary = run_rehearsal(config, out, quiet=quiet)
    except (ConfigError, ModelError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True, markup=True)
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        console.print(f"[red]rehearse failed:[/red] {exc}", highlight=False, soft_wrap=True, markup=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary, sort_keys=True))
    raise typer.Exit(0 if summary["ok"] else 1)
