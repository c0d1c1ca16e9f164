"""CLI commands for the distill stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command(name="distill")
    def distill(
        config: Annotated[
            Path, typer.Option("--config", help="YAML config with distill: (and run:) sections")
        ],
        shards: str = typer.Option(..., "--shards", help="ROOT/shards written by `g2l tile`"),
        out: str = typer.Option(..., "--out", help="RUN_DIR: checkpoints/, student/, train_log.jsonl"),
        cache: str | None = typer.Option(
            None, "--cache", help="ROOT/embeddings/<key> written by `g2l embed`"
        ),
        nproc: int = typer.Option(
            1, "--nproc", help="processes (devices) on this machine; > 1 uses torchrun"
        ),
        max_steps: int | None = typer.Option(None, "--max-steps", help="override distill.schedule.max_steps"),
        resume: str = typer.Option("auto", "--resume", help="auto: newest complete checkpoint | never"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
        emit: str | None = typer.Option(
            None, "--emit", help="print a trainjob | pytorchjob manifest instead of training"
        ),
        nodes: int = typer.Option(1, "--nodes", help="--emit: number of nodes"),
        gpus_per_node: int = typer.Option(1, "--gpus-per-node", help="--emit: GPUs (processes) per node"),
        image: str | None = typer.Option(None, "--image", help="--emit: container image with g2l installed"),
        name: str = typer.Option("g2l-distill", "--name", help="--emit: job name"),
        namespace: str = typer.Option("kubeflow", "--namespace", help="--emit: namespace"),
        service_account: str = typer.Option("g2l", "--service-account", help="--emit: pods' service account"),
        toleration: Annotated[
            list[str] | None,
            typer.Option("--toleration", help="--emit: extra toleration key[=value]:Effect (repeatable)"),
        ] = None,
        trainer_api: str = typer.Option(
            "v2.2",
            "--trainer-api",
            help="--emit trainjob: v2.2 (runtimePatches) | v2.0 (podTemplateOverrides)",
        ),
        emit_file: Annotated[
            Path | None, typer.Option("--emit-file", help="--emit: write here instead of stdout")
        ] = None,
        gcs_bucket: str | None = typer.Option(
            None, "--gcs-bucket", help="--emit: mount this bucket (GCS FUSE CSI) at --gcs-mount-path"
        ),
        gcs_mount_path: str = typer.Option("/gcs", "--gcs-mount-path", help="--emit: where the bucket is"),
    ) -> None:
        """Distil the student from the teacher embedding cache (or emit a multi-node job that does)."""
        from g2l.config import ConfigError, RunConfig, load_section, load_yaml
        from g2l.distill.config import DistillConfig
        from g2l.progress import console

        try:
            cfg = load_section(DistillConfig, config, section="distill")
            run = (
                load_section(RunConfig, config, section="run") if "run" in load_yaml(config) else RunConfig()
            )
            if emit is not None:
                text = _emit(
                    emit,
                    config,
                    shards,
                    cache,
                    out,
                    max_steps,
                    nodes,
                    gpus_per_node,
                    image,
                    name,
                    namespace,
                    service_account,
                    tuple(toleration or ()),
                    trainer_api,
                    run,
                    gcs_bucket,
                    gcs_mount_path,
                )
                if emit_file is not None:
                    emit_file.write_text(text)
                    typer.echo(str(emit_file))
                else:
                    typer.echo(text, nl=False)
                return
            from g2l.distill import run_distill
            from g2l.distill.runtime import Preempted

            student = run_distill(
                cfg,
                shards,
                cache,
                out,
                nproc=nproc,
                max_steps=max_steps,
                resume=resume,
                quiet=quiet,
                run_id=run.run_id,
                cancer=run.cancer,
            )
        except Preempted as stop:  # SIGTERM: checkpoint written; a retryable exit status so the job restarts
            from g2l.distill.runtime import PREEMPTED_EXIT_CODE

            console.print(f"[yellow]{stop}[/yellow]")
            raise typer.Exit(PREEMPTED_EXIT_CODE) from None
        except ConfigError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        typer.echo(student)


def _emit(
    kind: str,
    config: Path,
    shards: str,
    cache: str | None,
    out: str,
    max_steps: int | None,
    nodes: int,
    gpus_per_node: int,
    image: str | None,
    name: str,
    namespace: str,
    service_account: str,
    tolerations: tuple[str, ...],
    trainer_api: str,
    run: object,
    gcs_bucket: str | None,
    gcs_mount_path: str,
) -> str:
    from g2l.config import require
    from g2l.distill import emit as emitter
    from g2l.distill.launch import distill_args

    require(kind in ("trainjob", "pytorchjob"), f"--emit must be trainjob or pytorchjob, got {kind!r}")
    require(image is not None, "--emit needs --image (the container image that has g2l installed)")
    job = emitter.JobSpec(
        name=name,
        image=str(image),
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        namespace=namespace,
        service_account=service_account,
        trainer_api=trainer_api,
        gcs_bucket=gcs_bucket,
        gcs_mount_path=gcs_mount_path,
        tolerations=(emitter.GPU_TOLERATION, *(emitter.parse_toleration(t) for t in tolerations)),
    )
    args = distill_args(
        str(config),
        shards,
        cache,
        out,
        max_steps=max_steps,
        resume="auto",
        quiet=True,
        run_id=getattr(run, "run_id", None),
        cancer=getattr(run, "cancer", None),
    )
    obj = emitter.render_trainjob(job, args) if kind == "trainjob" else emitter.render_pytorchjob(job, args)
    return emitter.to_yaml(obj)
