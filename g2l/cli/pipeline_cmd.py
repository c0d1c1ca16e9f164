"""CLI commands for the pipeline: `g2l pipeline compile|run|preflight|submit|schedule|plan`."""

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

# Options shared by the commands that talk to the KFP API (kfp.Client's authentication, SDK 2.17).
NamespaceOpt = Annotated[
    str,
    typer.Option("--namespace", help="Kubeflow profile namespace (multi-user); default: pipeline.namespace."),
]
TokenOpt = Annotated[
    str,
    typer.Option("--token", envvar="KFP_TOKEN", help="Bearer token for the KFP API (or $KFP_TOKEN)."),
]
IapOpt = Annotated[
    str, typer.Option("--iap-client-id", help="OAuth client id of an IAP-protected KFP endpoint (GKE + IAP).")
]
CookieOpt = Annotated[
    str,
    typer.Option(
        "--cookie", envvar="KFP_COOKIE", help="Auth proxy session cookie, NAME=VALUE (or $KFP_COOKIE)."
    ),
]
SkipOpt = Annotated[
    bool,
    typer.Option("--skip-preflight", help="Submit even if `g2l pipeline preflight` fails (not advised)."),
]
MlflowOpt = Annotated[
    str, typer.Option("--mlflow", help="MLflow URL reachable from here (a port-forward) to check it.")
]


def _auth(token: str, iap_client_id: str, cookie: str) -> object:
    from pipelines.kfp_api import Auth

    return Auth(token=token, iap_client_id=iap_client_id, cookie=cookie)


def _refused(exc: Exception) -> None:
    """Print a preflight refusal (one line per failed rule) and exit 1, without a traceback."""
    typer.echo(str(exc), err=True)
    typer.echo("fix the rules above, or pass --skip-preflight to go on anyway", err=True)
    raise typer.Exit(1)


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
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="Size timeouts and staging disk for this cancer config's plan (default: sizes that fit "
            "the shipped configs).",
        ),
    ] = None,
) -> None:
    """Compile the pipeline to YAML (same inputs, same bytes); prints the file's path."""
    from pipelines.compile import compile_pipeline

    typer.echo(str(compile_pipeline(out, image=image or None, config=str(config) if config else None)))


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


@pipeline_app.command("preflight")
def preflight_cmd(
    config: Annotated[
        Path, typer.Option("--config", exists=True, dir_okay=False, help="Cancer config (configs/brca.yaml).")
    ],
    host: Annotated[str, typer.Option("--host", help="KFP API endpoint: also check the live rules.")] = "",
    namespace: NamespaceOpt = "",
    package: Annotated[Path, typer.Option("--package", help="Compiled pipeline to check.")] = Path(
        DEFAULT_COMPILED
    ),
    mlflow: MlflowOpt = "",
    token: TokenOpt = "",
    iap_client_id: IapOpt = "",
    cookie: CookieOpt = "",
) -> None:
    """Check every rule a cluster run needs before any upload or GPU; exit 1 naming each failed rule."""
    from pipelines.preflight import preflight

    checks = preflight(
        config,
        package=package,
        host=host or None,
        namespace=namespace,
        mlflow=mlflow or None,
        auth=_auth(token, iap_client_id, cookie),  # type: ignore[arg-type]
    )
    for check in checks:
        typer.echo(check.line())
    failed = [c for c in checks if not c.ok]
    typer.echo(f"preflight: {len(checks) - len(failed)} ok, {len(failed)} failed")
    raise typer.Exit(1 if failed else 0)


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
    namespace: NamespaceOpt = "",
    token: TokenOpt = "",
    iap_client_id: IapOpt = "",
    cookie: CookieOpt = "",
    mlflow: MlflowOpt = "",
    skip_preflight: SkipOpt = False,
) -> None:
    """Preflight, upload the pipeline (or a new version of it) and start a run; last line: the run as JSON."""
    from pipelines.preflight import PreflightFailed
    from pipelines.submit import submit

    try:
        result = submit(
            config,
            host=host or None,
            experiment=experiment or None,
            package=package,
            overrides=_parse_sets(set_ or []),
            namespace=namespace,
            auth=_auth(token, iap_client_id, cookie),  # type: ignore[arg-type]
            skip_preflight=skip_preflight,
            mlflow=mlflow or None,
        )
    except PreflightFailed as exc:
        _refused(exc)
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
    namespace: NamespaceOpt = "",
    token: TokenOpt = "",
    iap_client_id: IapOpt = "",
    cookie: CookieOpt = "",
    skip_preflight: SkipOpt = False,
) -> None:
    """Preflight each cancer, then create or update one recurring run per cancer, by name; idempotent."""
    from pipelines.preflight import PreflightFailed
    from pipelines.schedules import apply_schedules

    try:
        changes = apply_schedules(
            config,
            host=host or None,
            package=package,
            dry_run=dry_run,
            namespace=namespace,
            auth=_auth(token, iap_client_id, cookie),  # type: ignore[arg-type]
            skip_preflight=skip_preflight,
        )
    except PreflightFailed as exc:
        _refused(exc)
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
        typer.echo(
            f"val cosine (held-out slides): {summary['val_cosine_before']:.3f} before, "
            f"{summary['val_cosine_after']:.3f} after distillation"
        )
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
