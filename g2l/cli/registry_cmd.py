"""CLI commands for the registry stage: `g2l promote`, `g2l audit`, `g2l models list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

_REGISTRY_HELP = (
    "MLflow tracking/registry URI (default: registry.tracking_uri, $MLFLOW_TRACKING_URI, embedded)"
)

Cancer = Annotated[str | None, typer.Option(help="Cancer type (default: run.cancer of --config)")]
Registry = Annotated[str | None, typer.Option("--registry", help=_REGISTRY_HELP)]
ConfigPath = Annotated[Path | None, typer.Option("--config", help="YAML config; run: and registry: are read")]
ArtifactRoot = Annotated[
    str | None, typer.Option(help="Artifact root (the embedded registry lives under it)")
]


def _configs(config: Path | None, artifact_root: str | None) -> tuple[Any, Any]:
    from g2l.config import RunConfig, load_section
    from g2l.registry import RegistryConfig

    run = load_section(RunConfig, config, section="run", artifact_root=artifact_root)
    reg = load_section(RegistryConfig, config, section="registry")
    return run, reg


def _fail(exc: BaseException, code: int = 2) -> typer.Exit:
    from g2l.progress import console

    console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command(name="promote")(promote_cmd)
    app.command(name="audit")(audit_cmd)
    models = typer.Typer(help="Registered students per cancer type.", no_args_is_help=True)
    models.command(name="list")(models_list_cmd)
    app.add_typer(models, name="models")


def promote_cmd(
    student: Annotated[str, typer.Option(help="RUN_DIR/student with model.safetensors + config.json")],
    report: Annotated[str, typer.Option(help="EVAL_DIR/report.json from `g2l evaluate`")],
    decision: Annotated[str, typer.Option(help="decision.json from the gate")],
    cancer: Cancer = None,
    policy: Annotated[str | None, typer.Option(help="Gate policy YAML (default: registry.policy)")] = None,
    registry: Registry = None,
    config: ConfigPath = None,
    artifact_root: ArtifactRoot = None,
    run_id: Annotated[str | None, typer.Option(help="Pipeline run id recorded in the lineage")] = None,
    candidate: Annotated[str | None, typer.Option(help="The candidate's model name in report.json")] = None,
    manifest_uri: Annotated[
        str | None, typer.Option(help="Training manifest (overrides the lineage)")
    ] = None,
    manifest_rev: Annotated[str | None, typer.Option(help="DVC/git revision of the manifest")] = None,
    manifest_repo: Annotated[str | None, typer.Option(help="Git repo holding the manifest")] = None,
    shards_index: Annotated[
        str | None, typer.Option(help="ROOT/shards/index.json of the training tiles")
    ] = None,
    cache_dir: Annotated[
        str | None, typer.Option(help="ROOT/embeddings/<key>/ teacher embedding cache")
    ] = None,
    quiet: Annotated[
        bool, typer.Option(help="No console messages (the result line is still printed)")
    ] = False,
) -> None:
    """Register a student with its lineage; move `champion` only if it passed the gate and beats the champion.

    Exit status: 0 champion, 4 registered but not promoted (challenger or rejected), 2 error.
    """
    from g2l.config import ConfigError
    from g2l.registry import EXIT_ERROR, LineageOverrides, RegistryError, promote

    try:
        run, reg = _configs(config, artifact_root)
        overrides = LineageOverrides(
            manifest_uri=manifest_uri,
            manifest_rev=manifest_rev,
            manifest_repo=manifest_repo,
            shards_index=shards_index,
            cache_dir=cache_dir,
            pipeline_run_id=run_id or (run.run_id if run.run_id != "local" else None),
        )
        from g2l.metrics import StageMetrics

        stage_metrics = StageMetrics(
            "promote",
            run_id=run.run_id if run_id is None else run_id,
            cancer=cancer or run.cancer,
            root=run.artifact_root,
        )
        with stage_metrics:
            result = promote(
                student=student,
                report=report,
                decision=decision,
                cancer=cancer or run.cancer,
                policy=policy,
                registry_uri=registry,
                config=reg,
                artifact_root=run.artifact_root,
                candidate=candidate,
                overrides=overrides,
                quiet=quiet,
                metrics=stage_metrics,
            )
    except (RegistryError, ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        raise _fail(exc, EXIT_ERROR) from exc
    except Exception as exc:  # MlflowException and friends: still exit 2 with the message, per the contract
        if type(exc).__module__.startswith(("mlflow", "sqlalchemy", "requests")):
            raise _fail(RuntimeError(f"registry operation failed: {exc}"), EXIT_ERROR) from exc
        raise
    typer.echo(result.summary_line())
    raise typer.Exit(result.exit_code)


def audit_cmd(
    cancer: Cancer = None,
    version: Annotated[int | None, typer.Option(help="Version number to audit")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to audit (default: champion)")] = None,
    deep: Annotated[
        bool, typer.Option(help="Also re-run the recorded evaluation and compare metrics")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the audit as JSON here")] = None,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="Pass even when checks were skipped (lineage not recorded, teacher weights not reachable)",
        ),
    ] = False,
    teacher_weights: Annotated[
        str | None,
        typer.Option(help="The teacher's weights (file or dir), when the cache's recorded ones are not here"),
    ] = None,
    registry: Registry = None,
    config: ConfigPath = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Re-derive every hash of a version's lineage: check, expected, found, ok.

    Exit status: 0 when every check ran and matched, 1 on any mismatch or skipped check (incomplete
    lineage; --allow-incomplete accepts skips), 2 on errors. The last stdout line is JSON.
    """
    from g2l.audit import audit, print_report
    from g2l.config import ConfigError
    from g2l.registry import RegistryError
    from g2l.storage import StorageError

    if version is not None and alias is not None:
        raise _fail(ValueError("give --version or --alias, not both"))
    try:
        run, reg = _configs(config, artifact_root)
        result = audit(
            cancer=cancer or run.cancer,
            version=version,
            alias=alias,
            deep=deep,
            registry_uri=registry,
            config=reg,
            artifact_root=run.artifact_root,
            allow_incomplete=allow_incomplete,
            teacher_weights=teacher_weights,
        )
    # StorageError: an unreachable bucket or rejected credentials (exit 2 with the fix, no traceback).
    except (RegistryError, ConfigError, FileNotFoundError, ValueError, StorageError) as exc:
        raise _fail(exc) from exc
    print_report(result)
    if json_out is not None:
        result.write_json(json_out)
    typer.echo(result.summary_line())
    raise typer.Exit(0 if result.ok else 1)


def models_list_cmd(
    cancer: Cancer = None,
    registry: Registry = None,
    config: ConfigPath = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Versions of g2l-student-<cancer>: aliases, key metrics, gate result and date."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from g2l.config import ConfigError
    from g2l.registry import RegistryError, list_versions, model_name

    try:
        run, reg = _configs(config, artifact_root)
        name = model_name(cancer or run.cancer)
        rows = list_versions(
            cancer or run.cancer, registry_uri=registry, config=reg, artifact_root=run.artifact_root
        )
    except (RegistryError, ConfigError) as exc:
        raise _fail(exc) from exc
    table = Table(title=f"{name}: {len(rows)} version(s)")
    for col in (
        "version",
        "aliases",
        "primary metric",
        "other metrics",
        "gate",
        "decision",
        "created (UTC)",
        "student sha256",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        primary = f"{r.primary_metric}={r.primary_value:.4f}" if r.primary_value is not None else "-"
        others = ", ".join(f"{k}={v:.4f}" for k, v in sorted(r.metrics.items()) if k != r.primary_metric)
        gate = {"passed": "[green]passed[/green]", "failed": "[red]failed[/red]"}.get(r.gate, r.gate)
        table.add_row(
            str(r.version),
            ",".join(r.aliases) or "-",
            primary,
            others or "-",
            gate,
            r.decision,
            r.created.strftime("%Y-%m-%d %H:%M:%S"),
            r.student_sha256[:12],
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)
