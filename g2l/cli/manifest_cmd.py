"""CLI commands for manifests: `g2l manifest validate | inventory | sample`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

manifest_app = typer.Typer(help="Slide manifests: validate, build an inventory, sample a training manifest.",
                           no_args_is_help=True)


@manifest_app.command("validate")
def validate_cmd(
    path: Annotated[str, typer.Argument(help="Manifest CSV/Parquet: a local path or gs:// URI.")],
    rev: Annotated[str | None, typer.Option(help="Git revision to read it at (via dvc.api).")] = None,
    repo: Annotated[str | None, typer.Option(help="Git/DVC repository holding it (with --rev).")] = None,
    check_files: Annotated[bool, typer.Option(
        "--check-files", help="Also check each uri exists and matches its checksum.")] = False,
    verify_local_checksums: Annotated[bool, typer.Option(
        "--verify-local-checksums", help="With --check-files, hash local files too (reads them).")] = False,
) -> None:
    """Report every bad row (row, column, value, fix); exit status 1 when there is any."""
    from rich.markup import escape

    from g2l.manifest import ManifestError, is_parquet, load
    from g2l.manifest import check_files as check
    from g2l.progress import console
    from g2l.storage import StorageError

    try:
        manifest = load(path, rev=rev, repo=repo)
    except ManifestError as exc:
        for err in exc.errors:
            typer.echo(str(err))
        console.print(f"[red]{exc.source}: {len(exc.errors)} problem(s)[/red]")
        raise typer.Exit(1) from None
    except (OSError, ValueError, StorageError) as exc:
        console.print(f"[red]{escape(path)}: cannot read the manifest: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    if check_files:
        try:
            errors = check(manifest.df, first_row=1 if is_parquet(path) else 2,
                           verify_local_checksums=verify_local_checksums)
        except StorageError as exc:  # no credentials, an unreachable endpoint: nothing could be checked
            console.print(f"[red]{escape(manifest.source)}: cannot check the files: {escape(str(exc))}[/red]")
            raise typer.Exit(2) from None
        for err in errors:
            typer.echo(str(err))
        if errors:
            console.print(f"[red]{manifest.source}: {len(errors)} slide(s) missing or changed[/red]")
            raise typer.Exit(1)
    typer.echo(json.dumps({"source": manifest.source, "rows": len(manifest.df),
                           "content_hash": manifest.content_hash, "rev": manifest.rev}))


@manifest_app.command("inventory")
def inventory_cmd(
    source: Annotated[str, typer.Option(help="gs://bucket/prefix or a directory holding the slides.")],
    out: Annotated[str, typer.Option(help="Inventory CSV/Parquet to write (local or gs://).")],
    metadata: Annotated[str | None, typer.Option(help="CSV keyed on slide_id (or patient_id).")] = None,
    cancer_type: Annotated[str | None, typer.Option(help="cancer_type where the metadata has none.")] = None,
) -> None:
    """List slide files with their checksums, join metadata, derive TCGA site and patient."""
    from rich.markup import escape

    from g2l.manifest import build_inventory, validate, write_table
    from g2l.progress import console
    from g2l.storage import StorageError

    try:
        inv = build_inventory(source, metadata, cancer_type=cancer_type)
    except (OSError, ValueError, StorageError) as exc:
        console.print(f"[red]inventory of {escape(source)}: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    for problem in inv.problems:
        console.print(f"[yellow]warning:[/yellow] {problem}")
    issues = validate(inv.df)
    for err in issues[:20]:
        console.print(f"[yellow]warning:[/yellow] {err}")
    if len(issues) > 20:
        console.print(f"[yellow]warning:[/yellow] ... and {len(issues) - 20} more "
                      "(run `g2l manifest validate` on the output)")
    write_table(inv.df, out)
    sites = inv.df["site"].nunique() if len(inv.df) else 0
    console.print(f"{len(inv.df)} slides from {sites} sites -> {out}")
    typer.echo(json.dumps({"out": out, "slides": len(inv.df), "sites": int(sites), "warnings": len(issues)}))


@manifest_app.command("sample")
def sample_cmd(
    inventory: Annotated[str, typer.Option(help="Inventory CSV/Parquet (local or gs://).")],
    n: Annotated[int, typer.Option(help="Number of slides to sample.")],
    out: Annotated[str, typer.Option(help="Training manifest to write (local or gs://).")],
    stratify: Annotated[str, typer.Option(help="Column whose strata keep their share, e.g. site.")] = "site",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same manifest.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of slides for validation (by patient).")] = 0.0,
    test_fraction: Annotated[float, typer.Option(help="Share of slides for test (by patient).")] = 0.0,
) -> None:
    """Sample a seeded, site-stratified training manifest; all slides of a patient stay together."""
    from rich.markup import escape

    from g2l.config import ConfigError
    from g2l.manifest import SampleConfig, content_hash, read_table, sample_manifest, validate, write_table
    from g2l.progress import console
    from g2l.storage import StorageError

    try:
        config = SampleConfig(n=n, seed=seed, stratify=stratify, val_fraction=val_fraction,
                              test_fraction=test_fraction)
        result = sample_manifest(read_table(inventory), config)
    except (ConfigError, OSError, ValueError, StorageError) as exc:  # ManifestError is a ValueError
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    for problem in result.problems:
        console.print(f"[yellow]warning:[/yellow] {problem}")
    errors = validate(result.df)
    if errors:
        for err in errors:
            typer.echo(str(err))
        console.print(f"[red]the sampled manifest has {len(errors)} problem(s) (from the inventory "
                      f"{inventory}); fix the inventory or its metadata[/red]")
        raise typer.Exit(1)
    write_table(result.df, out)
    counts = result.df["split"].value_counts().to_dict()
    console.print(f"{len(result.df)} slides ({counts}) over {len(result.quotas)} {stratify} strata -> {out}")
    typer.echo(json.dumps({"out": out, "slides": len(result.df), "splits": counts,
                           "content_hash": content_hash(result.df)}))


def register(app: typer.Typer) -> None:
    """Add `g2l manifest ...` to the main app."""
    app.add_typer(manifest_app, name="manifest")
