"""`g2l evaluate`: embed every benchmark with every model (cached), compute metrics, write the report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from g2l.config import config_hash
from g2l.evaluate import design
from g2l.evaluate.benchmark import Benchmark, load_benchmark
from g2l.evaluate.config import EvaluateConfig
from g2l.evaluate.embed import embed_benchmark
from g2l.evaluate.identity import teacher_identity
from g2l.evaluate.metrics import benchmark_metrics
from g2l.evaluate.models import EvalModel, RegistryResolver, load_model, resolve_device
from g2l.evaluate.report import clean_json, pca_2d, write_html, write_json
from g2l.evaluate.samples import benchmark_block


def _inputs_hash(report: dict[str, Any], benches: list[Benchmark]) -> str:
    """sha256 of everything that determines the report: model names + digests, benchmark hashes, config."""
    payload = {
        "models": {name: [m["digest"], m["precision"]] for name, m in report["models"].items()},
        "roles": [report["teacher"], report["champion"], sorted(report["skipped_models"])],
        "benchmarks": {b.name: b.sha256 for b in benches},
        "config_sha256": report["config_sha256"],
        "g2l_version": report["g2l_version"],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _finished_report(out_dir: Path, inputs_sha256: str) -> dict[str, Any] | None:
    """The report already in `out_dir` when it was made from the same inputs (rerun = no-op), else None."""
    path = out_dir / "report.json"
    if not (path.is_file() and (out_dir / "report.html").is_file()):
        return None
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return previous if previous.get("inputs_sha256") == inputs_sha256 else None


def _projection(features: np.ndarray, bench: Benchmark, max_points: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)  # the same tiles for every model, so the panels compare
    n = len(bench)
    sel = np.sort(rng.choice(n, size=max_points, replace=False)) if n > max_points else np.arange(n)
    return {
        "xy": pca_2d(features[sel]),
        "label": bench.column("label")[sel],
        "site": bench.column("site")[sel],
    }


def run_evaluate(
    config: EvaluateConfig,
    models: dict[str, str],
    benchmarks: list[str],
    out: str,
    quiet: bool = False,
    *,
    registry_resolver: RegistryResolver | None = None,
    run_id: str = "local",
    cancer: str = "none",
    store: str | None = None,
    teacher_cache: str | None = None,
    loader: Callable[..., EvalModel | None] = load_model,
) -> dict[str, Any]:
    """Evaluate `models` ({name: spec}) on benchmark YAMLs; write report.json + report.html under `out`.

    Embeddings come from, and go to, `store` (default `out/embeddings`; a pipeline passes
    `<artifact_root>/eval-store` so that runs share them). `teacher_cache` (an embedding cache dir)
    makes evaluation check that the teacher's weight digest is the cache's. `loader` builds a model
    from (name, spec, device=, registry_resolver=, precision=); tests pass a wrapper that counts forwards.
    """
    from g2l import __version__
    from g2l.metrics import StageMetrics
    from g2l.progress import console, progress

    if not models:
        raise ValueError("give at least one --model NAME=SPEC")
    if not benchmarks:
        raise ValueError("give at least one --benchmark FILE")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    with StageMetrics("evaluate", run_id=run_id, cancer=cancer, root=str(out_dir)) as sm:
        benches: list[Benchmark] = []
        for path in benchmarks:
            b = load_benchmark(path, input_mpp=config.input_mpp)
            if any(b.name == other.name for other in benches):
                raise ValueError(
                    f"benchmark name {b.name!r} appears twice ({path}); benchmark names must be unique"
                )
            benches.append(b)
        loaded: list[EvalModel] = []
        skipped: dict[str, str] = {}
        for name, spec in models.items():
            m = loader(
                name, spec, device=device, registry_resolver=registry_resolver, precision=config.precision
            )
            if m is None:
                skipped[name] = f"{spec}: nothing registered under this alias yet"
                console.print(f"[yellow]{name}: {skipped[name]}; evaluated without it[/yellow]")
            else:
                loaded.append(m)
        if not loaded:
            raise ValueError("none of the --model specs resolved to a model")
        teacher = config.teacher_model if any(m.name == config.teacher_model for m in loaded) else None
        if teacher is None:
            console.print(
                f"[yellow]no model named {config.teacher_model!r} (evaluate.teacher_model): "
                f"CKA to the teacher is not computed[/yellow]"
            )
        identity = teacher_identity(loaded, teacher, cache=teacher_cache)
        report: dict[str, Any] = {
            "models": {
                m.name: {
                    "digest": m.digest,
                    "spec": m.spec,
                    "resolved": m.resolved,
                    "weights_sha256": m.weights_sha256,
                    "embedding": m.embedding,
                    "precision": m.precision,
                    "embed_dim": m.embed_dim,
                    "benchmarks": {},
                    "per_seed": {},
                    "intervals": {},
                    "samples": {},
                }
                for m in loaded
            },
            "benchmarks": {},
            "seeds": list(config.seeds),
            "teacher": teacher,
            "champion": config.champion_model
            if any(m.name == config.champion_model for m in loaded)
            else None,
            "skipped_models": skipped,
            "teacher_identity": identity,
            "config": dataclasses.asdict(config),
            "config_sha256": config_hash(config),
            "g2l_version": __version__,
        }
        report["inputs_sha256"] = _inputs_hash(report, benches)
        previous = _finished_report(out_dir, report["inputs_sha256"])
        if previous is not None:
            console.print(
                f"evaluate: {out_dir / 'report.json'} already covers these models, benchmarks and "
                f"settings; nothing to do"
            )
            sm.gauge("evaluate_reused_report", "1 when a finished report for the same inputs was reused").set(
                1
            )
            return previous
        projections: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        tiles_embedded = sm.counter("evaluate_tiles_embedded_total", "Tiles embedded (per model) by evaluate")
        cache_hits = sm.counter(
            "evaluate_cache_hits_total", "Model x benchmark embeddings read from the cache"
        )
        rate = sm.gauge("evaluate_embed_tiles_per_second", "Embedding throughput of the last benchmark")
        metric_seconds = sm.gauge("evaluate_metrics_seconds", "Time spent computing metrics")
        t_metrics = 0.0
        bar: Any
        with progress(quiet) as bar:
            task = bar.add_task("metrics", total=len(loaded) * len(benches))
            for b in benches:
                feats, stats = embed_benchmark(
                    loaded,
                    b,
                    store or str(out_dir / "embeddings"),
                    batch_size=config.batch_size,
                    num_workers=config.num_workers,
                    progress=bar,
                )
                tiles_embedded.inc(stats["tiles_embedded"])
                cache_hits.inc(stats["cache_hits"])
                if stats["seconds"] > 0:
                    rate.set(stats["tiles_embedded"] / stats["seconds"])
                kind, unit_ids, _ = design.units(b)
                ref = feats[teacher] if teacher is not None else None
                any_model = feats[loaded[0].name]
                scoring = design.scoring(b, any_model)
                test_rows = scoring.test_rows()
                robustness = design.robustness_input(b, config.robustness_min_per_cell)
                report["benchmarks"][b.name] = {
                    "sha256": b.sha256,
                    "content_sha256": b.content_sha256,
                    "file": b.source_file,
                    "input": b.input.to_dict(),
                    "split_source": b.definition.split.source or b.definition.split.kind,
                    "n_tiles": len(b),
                    "classes": b.classes,
                    "sites": sorted(set(b.column("site"))),
                    "n_groups": int(len(set(b.column("group")))),
                    "split": b.definition.split.kind,
                    "n_splits": len(b.splits),
                    "score_level": b.definition.score_level,
                    "n_test_samples": int(test_rows.size),
                    "groups_shared_across_split": b.groups_shared_across_split(),
                    "robustness": design.robustness_eligibility(b, config.robustness_min_per_cell),
                    **benchmark_block(kind, unit_ids, scoring.unit[test_rows], scoring.y[test_rows]),
                }
                if report["benchmarks"][b.name]["groups_shared_across_split"]:
                    console.print(
                        f"[yellow]{b.name}: some slides/patients have tiles in both train and test; "
                        f"probe and kNN scores are optimistic (use split.kind: holdout or folds)[/yellow]"
                    )
                projections[b.name] = {}
                started = time.monotonic()
                for m in loaded:
                    result = benchmark_metrics(
                        feats[m.name],
                        design.scoring(b, feats[m.name]),
                        robustness,
                        config,
                        ref,
                        bench_name=b.name,
                        n_units=len(unit_ids),
                        device=device,
                    )
                    entry = report["models"][m.name]
                    entry["benchmarks"][b.name] = result.metrics
                    entry["per_seed"][b.name] = result.per_seed
                    entry["intervals"][b.name] = result.intervals
                    entry["samples"][b.name] = result.samples
                    projections[b.name][m.name] = _projection(feats[m.name], b, config.projection_max_points)
                    bar.advance(task, 1)
                t_metrics += time.monotonic() - started
        metric_seconds.set(t_metrics)
        sm.gauge("evaluate_models", "Models evaluated").set(len(loaded))
        sm.gauge("evaluate_benchmarks", "Benchmarks evaluated").set(len(benches))
        # HTML first: report.json is the completion marker a rerun checks.
        write_html(out_dir / "report.html", report, projections)
        write_json(out_dir / "report.json", report)
    return clean_json(report)  # the same values as report.json (undefined metrics are None)
