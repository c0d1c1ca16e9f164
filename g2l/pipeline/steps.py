"""One function per pipeline step: load the stage's config from the pinned file, call the stage, report.

Each kfp component calls exactly one of these. They hold the little that is pipeline-specific (which
config section, which run id and cancer the metrics carry, where outputs go under the artifact root,
mirroring a gs:// root to local disk for the stages that work on local directories) so that the
components stay argument plumbing and this logic is tested without Kubeflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from g2l.pipeline.io import distill_dir, load_stage_config, parse_list, run_id, stage_file

WORK_DIR_ENV = "G2L_WORK_DIR"


# --- artifact roots on GCS: the embed/distill/evaluate stages read and write local directories ----


def _download(uri: str, dest: Path) -> None:
    """Copy one object, or every object under a prefix, to `dest` (skipping files already there)."""
    from g2l import storage

    base = uri.rstrip("/")
    try:  # one object
        files = [(base, dest, storage.stat(base, checksum=False).size)]
    except FileNotFoundError:  # a directory: every object under it (none when it does not exist yet)
        found = storage.list_files(base, checksum=False) if storage.exists(base) else []
        files = [(f.uri, dest / f.uri[len(base) + 1 :], f.size) for f in found]
    for src, target, size in files:
        if target.exists() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(storage.stage(src), target)


@contextlib.contextmanager
def local_root(artifact_root: str, pull: list[str], push: list[str]) -> Iterator[str]:
    """A local directory standing for the artifact root: the root itself when local; for gs:// a work
    directory with the `pull` sub-paths (files or directories) downloaded, whose `push` sub-paths are
    uploaded afterwards, also after a failure, so that checkpoints and finished parts survive a
    preempted pod."""
    from g2l import storage

    if not storage.is_remote(artifact_root):
        yield artifact_root
        return
    work = Path(os.environ.get(WORK_DIR_ENV) or tempfile.mkdtemp(prefix="g2l-work-"))
    for sub in pull:
        _download(storage.join(artifact_root, sub), work / sub)
    try:
        yield str(work)
    finally:
        for sub in push:
            if (work / sub).is_dir():
                storage.sync_dir(work / sub, storage.join(artifact_root, sub))


# --- tiling ---------------------------------------------------------------------------------------


def tile_group(*, manifest: str, slide_ids: str, config_uri: str, artifact_root: str, cancer: str) -> str:
    """Tile one group of slides (comma-joined ids) under ROOT/tiles/; returns the ids that finished ok."""
    from g2l import tiling
    from g2l.metrics import StageMetrics

    config = load_stage_config(tiling.TilingConfig, config_uri, "tiling")
    ids = parse_list(slide_ids)
    with StageMetrics("tiling", run_id=run_id(), cancer=cancer, root=artifact_root) as metrics:
        outcomes = tiling.tile_slides(manifest, artifact_root, config, ids, quiet=True, metrics=metrics)
    return ",".join(o.slide_id for o in outcomes if o.status == "ok")


def pack_shards(*, manifest: str, config_uri: str, artifact_root: str) -> tuple[str, str]:
    """Write ROOT/shards/ from every tiled slide; returns (shard directory, shard index sha256)."""
    from g2l import storage, tiling

    config = load_stage_config(tiling.TilingConfig, config_uri, "tiling")
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

    return load_stage_config(embed.EmbedConfig, config_uri, "embed", teacher=teacher or None)


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
    gs:// root only this rank's shards and this cache's finished parts are downloaded.
    """
    from g2l import embed, storage
    from g2l.models import build_model

    config = _embed_config(config_uri, teacher)
    if gpus == 0:
        config = dataclasses.replace(config, device="cpu")
    pull, push, model = ["shards"], ["embeddings"], None
    if storage.is_remote(artifact_root):
        index = json.loads(storage.read_text(storage.join(artifact_root, "shards", "index.json")))
        embedding = None if config.embedding == "auto" else config.embedding
        model = build_model(config.teacher, config.weights, device="cpu", embedding=embedding)
        key, _ = embed.compute_key(index, config, model)
        cache_uri = storage.join(artifact_root, "embeddings", key)
        done = (
            {f.uri.rsplit("/", 1)[-1] for f in storage.list_files(cache_uri, checksum=False)}
            if storage.exists(cache_uri)
            else set()
        )
        # Only the shards of this rank's parts that are not in the cache yet travel to the pod.
        todo = [
            f"shards/{e['name']}"
            for i, e in enumerate(index["shards"])
            if i % world_size == rank and f"part-{i:06d}.npy" not in done
        ]
        # Of the cache, its metadata and this rank's parts (a rank never reads the others' parts).
        part = re.compile(r"part-(\d+)\.")
        cached = [
            f"embeddings/{key}/{name}"
            for name in sorted(done)
            if not (m := part.match(name)) or int(m[1]) % world_size == rank
        ]
        pull = ["shards/index.json", *todo, *cached]
        push = [f"embeddings/{key}"]
    with local_root(artifact_root, pull=pull, push=push) as root:
        cache = embed.run_embed(
            str(Path(root) / "shards"),
            root,
            config,
            rank=rank,
            world_size=world_size,
            quiet=True,
            model=model,
            run_id=run_id(),
            cancer=cancer,
        )
        return storage.join(artifact_root, relative_to_root(cache, root))


def seal_cache(*, config_uri: str, artifact_root: str, teacher: str, cancer: str) -> str:
    """Once every rank is done, a single-worker pass finds every part present and writes index + _COMPLETE."""
    return embed_rank(
        config_uri=config_uri,
        artifact_root=artifact_root,
        teacher=teacher,
        rank=0,
        world_size=1,
        cancer=cancer,
    )


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
            [str(stage_file(b)) for b in bench_list],
            out,
            quiet=True,
            registry_resolver=resolver,
            run_id=run_id(),
            cancer=cancer,
            store=storage.join(artifact_root, "eval-store"),  # embeddings shared across runs
        )
        if html_out:
            shutil.copyfile(Path(out) / "report.html", html_out)
    return EvaluateResult(
        report_uri=storage.join(run_dir, "eval", "report.json"), metrics=flatten_report(report)
    )


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
        console.print(f"gate: {'pass' if rule.passed else 'FAIL'} {rule.rule}: {rule.reason}")
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
