"""CLI commands for the pipeline: `g2l pipeline compile|run|submit|schedule|plan`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

pipeline_app = typer.Typer(
    help="Compile, run locally, submit and schedule the Kubeflow pipeline; plan its cost.",
    no_args_is_help=True,
)

DEFAULT_COMPILED = "pipelines/compiled/g2l_pipeline.yaml"


@pipeline_app.command("compile")
def compile_cmd(
    out: Annotated[Path, typer.Option("--out", help="Where to write the compiled pipeline YAML.")] = Path(
        DEFAULT_COMPILED
    ),
    image: Annotated[
        str,
        typer.Option(
            "--image",
            help="Project image for every component (default: "
            "$G2L_IMAGE or ghcr.io/g2l-project/g2l:<version>).",
        ),
    ] = "",
) -> None:
    """Compile the pipeline to YAML (same inputs, same bytes); prints the file's path."""
    from pipelines.compile import compile_pipeline

    typer.echo(str(compile_pipeline(out, image=image or None)))


@pipeline_app.command("run")
def run_cmd(
    config: Annotated[
        Path,
        typer.Option("--config", exists=True, dir_okay=False, help="g2l config (e.g. configs/demo.yaml)."),
    ],
    local: Annotated[bool, typer.Option("--local", help="Run the whole DAG here under kfp.local.")] = False,
    pipeline_root: Annotated[
        Path | None,
        typer.Option(
            "--pipeline-root", help="kfp.local's root for task outputs (default: <artifact_root>/kfp-local)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a pipeline parameter, NAME=VALUE (repeatable)."),
    ] = None,
) -> None:
    """Run the pipeline under kfp.local (SubprocessRunner, this interpreter); last line is a JSON summary."""
    from g2l.progress import console

    if not local:
        console.print(
            "[red]only --local runs are started here; use `g2l pipeline submit` for a cluster[/red]"
        )
        raise typer.Exit(2)
    from pipelines.local import run_local

    summary = run_local(config, pipeline_root=pipeline_root, overrides=_parse_sets(set_ or []))
    typer.echo(json.dumps(summary, sort_keys=True))
    raise typer.Exit(0 if summary["succeeded"] else 1)


@pipeline_app.command("submit")
def submit_cmd(
    config: Annotated[
        Path, typer.Option("--config", exists=True, dir_okay=False, help="Cancer config (configs/brca.yaml).")
    ],
    host: Annotated[str, typer.Option("--host", help="KFP API endpoint (default: pipeline.host).")] = "",
    experiment: Annotated[str, typer.Option("--experiment", help="Experiment (default: g2l-<cancer>).")] = "",
    package: Annotated[Path, typer.Option("--package", help="Compiled pipeline to upload.")] = Path(
        DEFAULT_COMPILED
    ),
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a pipeline parameter, NAME=VALUE (repeatable)."),
    ] = None,
) -> None:
    """Upload the pipeline (or a new version of it) and start a run; the last line is the run as JSON."""
    from pipelines.submit import submit

    result = submit(
        config,
        host=host or None,
        experiment=experiment or None,
        package=package,
        overrides=_parse_sets(set_ or []),
    )
    typer.echo(json.dumps(result, sort_keys=True))


@pipeline_app.command("schedule")
def schedule_cmd(
    config: Annotated[
        Path, typer.Option("--config", exists=True, dir_okay=False, help="Schedules file.")
    ] = Path("configs/schedules.yaml"),
    host: Annotated[str, typer.Option("--host", help="KFP API endpoint (default: the file's host).")] = "",
    package: Annotated[Path, typer.Option("--package", help="Compiled pipeline to schedule.")] = Path(
        DEFAULT_COMPILED
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the changes without making them.")
    ] = False,
) -> None:
    """Create or update one recurring run per cancer, by name; idempotent. Prints one line per change."""
    from pipelines.schedules import apply_schedules

    changes = apply_schedules(config, host=host or None, package=package, dry_run=dry_run)
    for change in changes:
        typer.echo(change.describe(dry_run=dry_run))
    applied = sum(c.action != "unchanged" for c in changes)
    typer.echo(json.dumps({"dry_run": dry_run, "changes": applied, "schedules": len(changes)}))


@pipeline_app.command("plan")
def plan_cmd(
    config: Annotated[
        Path, typer.Option("--config", exists=True, dir_okay=False, help="Cancer config (configs/brca.yaml).")
    ],
    slides: Annotated[
        int | None, typer.Option("--slides", help="Slide count (default: pipeline.plan.slides).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Estimate tiles, storage, teacher and student GPU-hours before spending money; prints assumptions."""
    from g2l.pipeline.plan import format_plan, plan_from_config

    plan = plan_from_config(str(config), slides=slides)
    typer.echo(json.dumps(plan.as_dict(), sort_keys=True) if as_json else format_plan(plan))


def demo_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the demo's bucket, workspace and outputs.")
    ] = Path("demo-output"),
) -> None:
    """The whole job on an embedded default: generated slides -> DVC manifest -> pipeline -> audit."""
    from pipelines.demo import run_demo

    summary = run_demo(out)
    audit_report = summary.pop("audit", None)
    summary_path = Path(out) / "summary.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, sort_keys=True, indent=2) + "\n")
    if summary["succeeded"]:
        for thumb in summary["thumbnails"]:
            typer.echo(f"thumbnail: {thumb}")
        typer.echo(f"cache key: {summary['cache_key']}")
        typer.echo(f"val cosine (held-out slides): {summary['val_cosine_before']:.3f} before, "
                   f"{summary['val_cosine_after']:.3f} after distillation")
        typer.echo(f"report:    {summary['report_html']}")
        typer.echo(f"summary:   {summary_path}")
        typer.echo("")
        typer.echo(summary["demo_table"])
        typer.echo("")
        typer.echo(f"gate:      {'passed' if summary['gate_passed'] else 'failed'} ({summary['decision']})")
        for reason in summary["gate_reasons"]:
            typer.echo(f"  {reason}")
        typer.echo(f"champion:  {summary.get('champion') or 'none (the gate kept the student out)'}")
        if audit_report is not None:
            from g2l.audit import print_report

            print_report(audit_report)
    else:
        typer.echo(f"demo failed: {summary.get('error')} (details: {summary_path})")
    ok = summary["succeeded"] and summary.get("audit_ok", False)
    raise typer.Exit(0 if ok else 1)


def _parse_sets(values: list[str]) -> dict[str, object]:
    """NAME=VALUE overrides; integers stay integers so kfp's typed parameters accept them."""
    out: dict[str, object] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--set {item!r}: expected NAME=VALUE, e.g. --set tile_groups=2")
        out[name] = int(value) if value.lstrip("-").isdigit() else value
    return out


def register(app: typer.Typer) -> None:
    """Add `g2l pipeline ...` to the main app."""
    app.add_typer(pipeline_app, name="pipeline")
    app.command(name="demo")(demo_cmd)
