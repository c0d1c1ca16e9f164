"""One function per pipeline step: load the stage's config from the pinned file, call the stage, report.

Each kfp component calls exactly one of these. They hold the little that is pipeline-specific (which
config section, which run id, cancer and fan-out task the metrics carry, where outputs go under the
artifact root; staging is g2l.pipeline.staging, retries g2l.pipeline.retry) so that the components stay
argument plumbing and this logic is tested without Kubeflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from g2l.pipeline.io import distill_dir, load_stage_config, parse_list, run_id, stage_file
from g2l.pipeline.staging import local_root, stage_benchmark, stage_weights

# --- tiling ---------------------------------------------------------------------------------------

#: What a pipeline user can do when the artifact root holds tiles of other settings (the CLI's --out and
#: --replace are not pipeline parameters): a new root keeps the old tiles and the lineage that names them.
PIPELINE_SETTINGS_FIX = (
    "Start the run with another artifact_root (a new prefix, e.g. .../{cancer}-tiling-v2: the old tiles and "
    "the registered students whose lineage names them stay intact), or, to replace them, delete "
    "{root}/tiles and {root}/shards first"
)


@contextlib.contextmanager
def _settings_conflict_as_pipeline_error(artifact_root: str, cancer: str) -> Iterator[None]:
    """Re-word a tiling settings conflict with the fix a pipeline run has."""
    from g2l.tiling.errors import SettingsConflictError

    try:
        yield
    except SettingsConflictError as exc:
        fix = PIPELINE_SETTINGS_FIX.format(cancer=cancer or "cancer", root=artifact_root.rstrip("/"))
        raise SettingsConflictError(exc.problem, fix) from None


def tile_group(
    *, manifest: str, slide_ids: str, config_uri: str, artifact_root: str, cancer: str, index: str = "0"
) -> str:
    """Tile one group of slides (comma-joined ids) under ROOT/tiles/; returns the ids that finished ok.

    `index` is the group's place in the fan-out: its metrics go to a Pushgateway group of their own.
    """
    from g2l import tiling
    from g2l.metrics import StageMetrics
    from g2l.pipeline.retry import no_retry_on_bad_input

    with no_retry_on_bad_input(artifact_root, f"tile-{index}"), _settings_conflict_as_pipeline_error(
        artifact_root, cancer
    ):
        config = load_stage_config(tiling.TilingConfig, config_uri, "tiling")
        ids = parse_list(slide_ids)
        with StageMetrics(
            "tiling", run_id=run_id(), cancer=cancer, root=artifact_root, task=index
        ) as metrics:
            outcomes = tiling.tile_slides(manifest, artifact_root, config, ids, quiet=True, metrics=metrics)
    return ",".join(o.slide_id for o in outcomes if o.status == "ok")


def pack_shards(*, manifest: str, config_uri: str, artifact_root: str) -> tuple[str, str]:
    """Write ROOT/shards/ from every tiled slide; returns (shard directory, shard index sha256)."""
    from g2l import storage, tiling

    config = load_stage_config(tiling.TilingConfig, config_uri, "tiling")
    with _settings_conflict_as_pipeline_error(artifact_root, ""):
        summary = tiling.write_shards(artifact_root, manifest, config)
    if summary["n_tiles"] == 0:
        raise RuntimeError(
            f"no tiles under {artifact_root}: every slide failed or had no tissue "
            f"({len(summary['slides_failed'])} failed; see tiles/summary.json)"
        )
    return storage.join(artifact_root, "shards"), summary["shards_sha256"]


# --- teacher embedding cache ----------------------------------------------------------------------


def _embed_config(config_uri: str, teacher: str) -> Any:  # noqa: D103
    from g2l import embed

    config = load_stage_config(embed.EmbedConfig, config_uri, "embed", teacher=teacher or None)
    # The cache key holds the weights' digest, not their path: staging them leaves the key unchanged.
    return dataclasses.replace(config, weights=stage_weights(config.weights))


@contextlib.contextmanager
def metrics_task(task: str) -> Iterator[None]:
    """Stage metrics inside the block are grouped under this fan-out task (see g2l.metrics.TASK_ENV)."""
    from g2l.metrics import TASK_ENV

    previous = os.environ.get(TASK_ENV)
    os.environ[TASK_ENV] = task
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TASK_ENV, None)
        else:
            os.environ[TASK_ENV] = previous


def embed_rank(
    *,
    config_uri: str,
    artifact_root: str,
    teacher: str,
    rank: int,
    world_size: int,
    cancer: str,
    gpus: int = -1,
) -> str:
    """Fill this rank's parts of the teacher embedding cache; returns the cache directory (under ROOT).

    `gpus` is the pod's GPU request: 0 pins the teacher to the CPU, -1 keeps the config's device. With a
    gs:// root the shards are read from the bucket (each of this rank's shards staged once, only when its
    part is missing) and every finished part is uploaded as it is written: nothing is downloaded twice.
    """
    from g2l import embed, storage
    from g2l.pipeline.retry import no_retry_on_bad_input

    with no_retry_on_bad_input(artifact_root, f"embed-{rank}"), metrics_task(str(rank)):
        config = _embed_config(config_uri, teacher)
        if gpus == 0:
            config = dataclasses.replace(config, device="cpu")
        return embed.run_embed(
            storage.join(artifact_root, "shards"),
            artifact_root,
            config,
            rank=rank,
            world_size=world_size,
            quiet=True,
            run_id=run_id(),
            cancer=cancer,
        )


def seal_cache(*, rank_caches: list[str]) -> str:
    """Check that every rank filled one and the same cache and that it is sealed; returns its URI.

    A metadata step: the rank that writes the last part writes index.json and _COMPLETE itself, so this
    reads the index and lists the parts (no part is downloaded, no teacher is loaded).
    """
    from g2l import storage
    from g2l.embed.cache import COMPLETE, INDEX, CacheError

    caches = sorted({c.rstrip("/") for c in rank_caches if c})
    if len(caches) != 1:
        raise CacheError(
            f"the embedding ranks wrote {len(caches)} different caches ({', '.join(caches) or 'none'}): "
            "the teacher, its weights or the embed config changed between ranks; rerun the run"
        )
    uri = caches[0]
    if not storage.exists(storage.join(uri, COMPLETE)):
        raise CacheError(f"{uri} has no {COMPLETE}: a rank's parts are missing; rerun the embedding ranks")
    index = json.loads(storage.read_text(storage.join(uri, INDEX)))
    present = {f.uri.rsplit("/", 1)[-1] for f in storage.list_files(uri, checksum=False)}
    missing = [p["file"] for p in index["parts"] if p["file"] not in present]
    if missing:
        raise CacheError(f"{uri}: index.json lists parts that are gone: {', '.join(missing[:5])}")
    return uri


# --- distillation ---------------------------------------------------------------------------------


def relative_to_root(uri: str, artifact_root: str) -> str:
    """`uri`'s path below the artifact root (local paths and gs:// URIs alike)."""
    root = artifact_root.rstrip("/")
    if uri.startswith(root + "/"):
        return uri[len(root) + 1 :]
    return os.path.relpath(uri, root)


def distill_local(
    *,
    cache: str,
    config_uri: str,
    artifact_root: str,
    student: str,
    gpus: int,
    max_steps: int,
    cancer: str,
) -> str:
    """Distil with torchrun in this pod (a process per GPU, or one on CPU); returns the student directory."""
    from g2l.pipeline.retry import no_retry_on_bad_input

    with no_retry_on_bad_input(artifact_root, "distill"):
        return _distill_local(
            cache=cache,
            config_uri=config_uri,
            artifact_root=artifact_root,
            student=student,
            gpus=gpus,
            max_steps=max_steps,
            cancer=cancer,
        )


def _distill_local(
    *, cache: str, config_uri: str, artifact_root: str, student: str, gpus: int, max_steps: int, cancer: str
) -> str:
    from g2l import distill, storage

    config = load_stage_config(distill.DistillConfig, config_uri, "distill", student=student or None)
    run_rel = relative_to_root(
        distill_dir(
            artifact_root,
            cache=cache,
            distill_config=config,
            max_steps=max_steps,
        ),
        artifact_root,
    )
    cache_rel = relative_to_root(cache, artifact_root)
    # The run directory is keyed by the config as written (gs:// weights URI); the run reads a local copy.
    config = dataclasses.replace(config, student_weights=stage_weights(config.student_weights))
    # The run directory travels both ways: its checkpoints let a preempted pod's successor resume.
    with local_root(artifact_root, pull=["shards", cache_rel, run_rel], push=[run_rel]) as root:
        student_dir = distill.run_distill(
            config,
            str(Path(root) / "shards"),
            str(Path(root) / cache_rel),
            str(Path(root) / run_rel),
            nproc=max(gpus, 1),
            max_steps=max_steps or None,
            quiet=True,
            run_id=run_id(),
            cancer=cancer,
        )
        if root != artifact_root:  # a gs:// root's local mirror: lineage names the bucket, not this pod
            from g2l.distill.export import relocate_lineage

            relocate_lineage(student_dir, root, artifact_root)
        return storage.join(artifact_root, run_rel, relative_to_root(student_dir, str(Path(root) / run_rel)))


# --- evaluation, gate, promotion ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvaluateResult:
    """Where the report went and its metrics flattened for kfp (`<model>/<benchmark>/<metric>`)."""

    report_uri: str
    metrics: dict[str, float]


def flatten_report(report: dict[str, Any]) -> dict[str, float]:
    """Every numeric metric of report.json as `<model>/<benchmark>/<metric>`: value."""
    out: dict[str, float] = {}
    for model, entry in (report.get("models") or {}).items():
        for bench, metrics in (entry.get("benchmarks") or {}).items():
            for name, value in metrics.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"{model}/{bench}/{name}"] = float(value)
    return out


def use_registry(registry_uri: str, config_uri: str, artifact_root: str) -> str:
    """Point this step's MLflow client at the run's registry: the parameter, else the config's `registry:`
    section, else $MLFLOW_TRACKING_URI, else the embedded store under the artifact root; returns the URI.

    Evaluation (resolving `registry:<cancer>@champion`) and promotion must see the same registry.
    """
    from g2l import registry

    config = load_stage_config(registry.RegistryConfig, config_uri, "registry")
    uri = registry.resolve_uri(registry_uri or None, config, artifact_root)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def evaluate_student(
    *,
    student: str,
    config_uri: str,
    teacher: str,
    benchmarks: str,
    cancer: str,
    registry_uri: str,
    artifact_root: str,
    html_out: str | None = None,
) -> EvaluateResult:
    """Evaluate student, teacher and the current champion; report.json/html in the run's eval/ directory."""
    from g2l.pipeline.retry import no_retry_on_bad_input

    with no_retry_on_bad_input(artifact_root, "evaluate"):
        return _evaluate_student(
            student=student,
            config_uri=config_uri,
            teacher=teacher,
            benchmarks=benchmarks,
            cancer=cancer,
            registry_uri=registry_uri,
            artifact_root=artifact_root,
            html_out=html_out,
        )


def _evaluate_student(
    *,
    student: str,
    config_uri: str,
    teacher: str,
    benchmarks: str,
    cancer: str,
    registry_uri: str,
    artifact_root: str,
    html_out: str | None,
) -> EvaluateResult:
    from g2l import evaluate, registry, storage

    config = load_stage_config(evaluate.EvaluateConfig, config_uri, "evaluate")
    bench_list = parse_list(benchmarks)
    if not bench_list:
        raise ValueError(
            "no benchmarks to evaluate on: set the pipeline parameter `benchmarks` "
            "(comma-separated benchmark YAML files, e.g. configs/benchmarks/synthetic.yaml)"
        )
    use_registry(registry_uri, config_uri, artifact_root)
    resolver = getattr(registry, "resolve_spec", None)
    # The teacher exactly as the embed step built it (name, weights, pooling): the one distilled from.
    teacher_spec = f"embed:{stage_file(config_uri)}" + (f"?teacher={teacher}" if teacher else "")
    models = {"student": student, config.teacher_model: teacher_spec}
    models.update(config.extra_models)
    if resolver is not None:  # the first run of a cancer has no champion: evaluate skips it then
        models[config.champion_model] = f"registry:{cancer}@champion"
    run_dir = student.rstrip("/").rsplit("/", 1)[0]
    with local_root(run_dir, pull=["student", "eval"], push=["eval"]) as root:
        local_models = {**models, "student": str(Path(root) / "student")}
        out = str(Path(root) / "eval")
        report = evaluate.run_evaluate(
            config,
            local_models,
            [str(stage_benchmark(b)) for b in bench_list],
            out,
            quiet=True,
            registry_resolver=resolver,
            run_id=run_id(),
            cancer=cancer,
            store=storage.join(artifact_root, "eval-store"),  # embeddings shared across runs
        )
        if html_out:
            shutil.copyfile(Path(out) / "report.html", html_out)
    report_uri = storage.join(run_dir, "eval", "report.json")
    record_run_outputs(artifact_root, student=student, report=report_uri)
    return EvaluateResult(report_uri=report_uri, metrics=flatten_report(report))


def run_outputs_uri(artifact_root: str, run: str) -> str:
    """Where a run's outputs are indexed: ROOT/pipeline/runs/<run id>.json."""
    from g2l import storage

    return storage.join(artifact_root, "pipeline", "runs", f"{run}.json")


def record_run_outputs(artifact_root: str, **outputs: str) -> str:
    """Add `outputs` (URIs) to this run's index (pipeline outputs cannot leave KFP's exit handler)."""
    from g2l import storage

    uri = run_outputs_uri(artifact_root, run_id())
    current = json.loads(storage.read_text(uri)) if storage.exists(uri) else {}
    storage.put_text(uri, json.dumps({**current, **outputs}, indent=2, sort_keys=True) + "\n")
    return uri


def gate_report(report: str, gate_policy: str, candidate: str, *, cancer: str = "none") -> bool:
    """Apply the policy (YAML text or URI) to report.json; writes decision.json beside it; True = passed."""
    from g2l import gate, storage
    from g2l.metrics import StageMetrics

    with StageMetrics("gate", run_id=run_id(), cancer=cancer) as metrics:
        decision = gate.decide(
            json.loads(storage.read_text(report)), gate.load_policy(stage_file(gate_policy)), candidate
        )
        metrics.gauge("gate_passed", "1 when the candidate passed every rule of the policy").set(
            int(decision.passed)
        )
        metrics.counter("gate_rules_failed_total", "Policy rules the candidate failed").inc(
            sum(not r.passed for r in decision.rules)
        )
    target = storage.join(report.rstrip("/").rsplit("/", 1)[0], "decision.json")
    storage.put_text(target, json.dumps(decision.to_dict(), indent=2) + "\n")
    from g2l.progress import console

    for rule in decision.rules:
        console.print(f"gate: {rule.line()}", highlight=False, markup=False)
    for warning in decision.warnings:
        console.print(f"gate: warning: {warning}", highlight=False, markup=False)
    return bool(decision.passed)


def promote_student(
    *,
    student: str,
    report: str,
    gate_policy: str,
    cancer: str,
    registry_uri: str,
    config_uri: str,
    artifact_root: str,
    manifest_uri: str,
    manifest_rev: str,
    manifest_repo: str,
    cache: str,
    image: str = "",
) -> str:
    """Register the student with its lineage; `champion` moves only if it still wins; returns a summary."""
    from g2l import registry

    uri = use_registry(registry_uri, config_uri, artifact_root)
    decision = report.rstrip("/").rsplit("/", 1)[0] + "/decision.json"
    # The manifest as the run named it (the audit re-reads it at its rev through DVC), the shard index
    # and the embedding cache the student was trained from, this run's id and image.
    lineage = registry.LineageOverrides(
        manifest_uri=manifest_uri or None,
        manifest_rev=manifest_rev or None,
        manifest_repo=manifest_repo or None,
        cache_dir=cache or None,
        pipeline_run_id=run_id(),
        shards_index=f"{artifact_root.rstrip('/')}/shards/index.json",
        image_digest=image or None,  # the image reference the pipeline was compiled with (pin a digest)
    )
    from g2l.metrics import StageMetrics

    with StageMetrics("promote", run_id=run_id(), cancer=cancer) as metrics:
        result = registry.promote(
            student=student,
            report=report,
            decision=decision,
            cancer=cancer,
            policy=str(stage_file(gate_policy)),
            registry_uri=uri,
            artifact_root=artifact_root,
            overrides=lineage,
            quiet=True,
            metrics=metrics,  # lock wait, version, champion: the registry's own promotion metrics
        )
        # Counted here too, so the dashboard's promotions panel can sum over runs.
        metrics.counter("promotions_total", "Students that became champion").inc(int(result.promoted))
    return result.summary_line()
