"""The `g2l` command line: one sub-command per stage, each defined in its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="g2l",
    help="Distil a giga-scale pathology foundation model into a cancer-specific student.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def _root() -> None:
    """g2l: distil a giga-scale pathology foundation model into a cancer-specific student."""


# Each module exposes `register(app)`; heavy imports (torch, kfp, mlflow) stay inside the commands
# so that `g2l manifest validate` starts in well under a second.
_COMMAND_MODULES = (
    "g2l.cli.manifest_cmd",
    "g2l.cli.tile_cmd",
    "g2l.cli.embed_cmd",
    "g2l.cli.distill_cmd",
    "g2l.cli.evaluate_cmd",
    "g2l.cli.registry_cmd",
    "g2l.cli.pipeline_cmd",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


@app.command()
def version() -> None:
    """Print the g2l version."""
    from g2l import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
