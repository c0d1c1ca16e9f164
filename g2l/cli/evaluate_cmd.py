"""CLI commands for the evaluate stage: `g2l evaluate` and `g2l gate`."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

EXIT_PASS = 0
EXIT_USAGE = 2
EXIT_FAIL = 3


def _registry_resolver() -> Any:
    """The registry's `resolve_spec(spec) -> str | None` once g2l.registry provides it, else None."""
    try:
        registry = importlib.import_module("g2l.registry")
    except ImportError:
        return None
    return getattr(registry, "resolve_spec", None)


def evaluate(
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="NAME=SPEC: zoo/timm name, student dir, or registry:<cancer>@champion (repeatable)",
        ),
    ],
    benchmark: Annotated[list[Path], typer.Option("--benchmark", help="benchmark YAML (repeatable)")],
    out: Annotated[Path, typer.Option("--out", help="EVAL_DIR for report.json, report.html, embeddings/")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="run config YAML: its `evaluate:` section; without --model teacher=..., the teacher is "
            "built as its `embed:` section says (embed:CONFIG)",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="embedding store shared across runs (local or gs://); default "
            "<run.artifact_root>/eval-store with --config, else OUT/embeddings",
        ),
    ] = None,
    teacher_cache: Annotated[
        str | None,
        typer.Option(
            "--teacher-cache", help="embedding cache dir: check the teacher's weight digest against it"
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bars")] = False,
) -> None:
    """Embed benchmarks with each model (stored), compute probe/kNN/robustness/CKA, write a report."""
    from g2l.config import ConfigError, RunConfig, load_section
    from g2l.evaluate.config import EvaluateConfig
    from g2l.evaluate.models import ModelSpecError, parse_model_args
    from g2l.evaluate.runner import run_evaluate
    from g2l.progress import console
    from g2l.storage import StorageError

    try:
        cfg = load_section(EvaluateConfig, config, section="evaluate")
        run = load_section(RunConfig, config, section="run")
        models = parse_model_args(model)
        if config is not None and cfg.teacher_model not in models:
            models[cfg.teacher_model] = f"embed:{config}"  # the distillation teacher, weights and pooling
        if store is None and config is not None:
            from g2l import storage

            store = storage.join(run.artifact_root, "eval-store")
        report = run_evaluate(
            cfg,
            models,
            [str(b) for b in benchmark],
            str(out),
            quiet=quiet,
            registry_resolver=_registry_resolver(),
            run_id=run.run_id,
            cancer=run.cancer,
            store=store,
            teacher_cache=teacher_cache,
        )
    # StorageError: an unreachable bucket or rejected credentials (exit 2 with the fix, no traceback).
    except (ConfigError, ModelSpecError, FileNotFoundError, ValueError, StorageError) as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from exc
    html_path = out / "report.html"
    console.print(f"report: {html_path}")
    typer.echo(
        json.dumps(
            {
                "report": str(out / "report.json"),
                "html": str(html_path),
                "models": list(report["models"]),
                "benchmarks": list(report["benchmarks"]),
            }
        )
    )


def gate(
    report: Annotated[Path, typer.Option("--report", help="EVAL_DIR/report.json from g2l evaluate")],
    policy: Annotated[Path, typer.Option("--policy", help="gate policy YAML, e.g. configs/gate.yaml")],
    candidate: Annotated[str, typer.Option("--candidate", help="model name in the report to judge")],
    out: Annotated[Path | None, typer.Option("--out", help="where to write decision.json")] = None,
) -> None:
    """Judge a candidate against a policy: exit 0 pass, 3 fail, 2 usage or data error."""
    from g2l.config import ConfigError
    from g2l.gate import GateDataError, decide, load_policy, load_report, write_decision
    from g2l.progress import console

    try:
        pol = load_policy(policy)
        rep = load_report(report)
        decision = decide(rep, pol, candidate)
    except (ConfigError, GateDataError, FileNotFoundError) as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from exc
    if out is not None:
        write_decision(out, decision)
    marks = {
        "pass": "[green]PASS[/green]",
        "fail": "[red]FAIL[/red]",
        "inconclusive": "[yellow]INCONCLUSIVE[/yellow]",
        "not_applicable": "[dim]N/A[/dim]",
    }
    for r in decision.rules:
        console.print(f"{marks[r.verdict]} {r.rule}: {r.reason}")
    for w in decision.warnings:
        console.print(f"[yellow]warning: {w}[/yellow]")
    console.print(f"promotion ({decision.promotion.verdict}): {decision.promotion.reason}")
    verdict = "passed" if decision.passed else "failed"
    console.print(f"gate {verdict} for {candidate}" + (f"; decision: {out}" if out else ""))
    typer.echo(json.dumps(decision.to_dict()))
    raise typer.Exit(EXIT_PASS if decision.passed else EXIT_FAIL)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command(name="evaluate")(evaluate)
    app.command(name="gate")(gate)
