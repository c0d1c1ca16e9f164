"""`g2l rehearse`: the whole job at real model sizes on CPU, before anyone books a GPU.

Random weights of the config's real teacher and student architectures are saved as local
checkpoints in their published layouts, two slides are generated, and tile -> embed -> distill (2
processes on gloo, 2 optimiser steps) -> evaluate run as the real commands with the config's own
settings except sizes and step counts. Each stage's wall time and peak memory (its process tree's
PSS) are measured; the summary is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from g2l.config import ConfigError, load_section, load_yaml, validate_file
from g2l.rehearse.measure import StageResult, run_stage
from g2l.rehearse.setup import NPROC, derive_config, write_benchmark, write_slides

STAGES = ("tile", "embed", "distill", "evaluate")


def _checkpoint(role: str, name: str, out: Path, seed: int, env: dict[str, str]) -> tuple[Path, int, float]:
    """The role's random checkpoint, written once in a subprocess (a marker records it) and then reused.

    Returns (path, parameters, peak GB of the writing process).
    """
    from g2l.models import get_spec

    spec = get_spec(name)
    if spec is None:
        raise ConfigError(f"rehearse: {role} {name!r} is not a model of the zoo (g2l models check lists "
                          f"them); the rehearsal builds zoo architectures at full size")
    marker = out / f"{role}.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("name") == spec.name and Path(done["path"]).exists():
            return Path(done["path"]), int(done["params"]), 0.0
    cmd = [sys.executable, "-m", "g2l.rehearse.weights", spec.name, str(out / role), str(seed)]
    result = run_stage(f"{role} checkpoint", cmd, env=env, log=out / f"{role}.log")
    if result.returncode != 0:
        raise RuntimeError(f"rehearse: writing the random {role} checkpoint failed: "
                           f"{(result.stderr.strip().splitlines() or [''])[-1]} (log {out / f'{role}.log'})")
    written = json.loads(result.stdout.strip().splitlines()[-1])
    marker.write_text(json.dumps({"name": spec.name, "seed": seed, **written}))
    return Path(written["path"]), int(written["params"]), result.peak_rss_gb


def _stage_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never wait on a hub
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_rehearsal(config_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  quiet: bool = False) -> dict[str, Any]:
    """Rehearse the run `config_path` describes under `out`; returns the summary (see module docstring)."""
    from g2l.distill.config import DistillConfig
    from g2l.embed.config import EmbedConfig
    from g2l.progress import console

    def say(message: str) -> None:
        if not quiet:
            console.print(f"rehearse: {message}", highlight=False)

    config_path, root = Path(config_path), Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    validate_file(config_path)  # the real config must be valid before anything is spent
    raw = load_yaml(config_path)
    cancer = str((raw.get("run") or {}).get("cancer") or "rehearsal")
    embed = load_section(EmbedConfig, config_path, section="embed")
    distill = load_section(DistillConfig, config_path, section="distill")

    timings: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    env = _stage_env()
    say(f"writing random {embed.teacher} and {distill.student} checkpoints in their published layouts")
    t0 = time.perf_counter()
    weights = root / "weights"
    teacher_path, teacher_params, teacher_gb = _checkpoint("teacher", embed.teacher, weights, 1, env)
    student_path, student_params, student_gb = _checkpoint("student", distill.student, weights, 2, env)
    setup = {"seconds": round(time.perf_counter() - t0, 1),
             "peak_rss_gb": round(max(teacher_gb, student_gb), 2)}
    manifest = write_slides(root, cancer)
    benchmark = write_benchmark(root, config_path.parent / "benchmarks" / "synthetic.yaml")
    derived = derive_config(raw, manifest=manifest, teacher_weights=teacher_path,
                            student_weights=student_path)
    rehearsal_cfg = root / "rehearsal.yaml"
    rehearsal_cfg.write_text(yaml.safe_dump(derived, sort_keys=False))
    validate_file(rehearsal_cfg)

    art = root / "artifacts"
    py = [sys.executable, "-m", "g2l"]
    results: dict[str, StageResult] = {}
    ok = True
    cache = ""
    for stage in STAGES:
        if not ok:
            break
        if stage == "tile":
            cmd = [*py, "tile", "--manifest", str(manifest), "--out", str(art), "--config",
                   str(rehearsal_cfg), "--quiet"]
        elif stage == "embed":
            cmd = [*py, "embed", "--shards", str(art / "shards"), "--out", str(art), "--config",
                   str(rehearsal_cfg), "--quiet"]
        elif stage == "distill":
            cmd = [*py, "distill", "--config", str(rehearsal_cfg), "--shards", str(art / "shards"),
                   "--cache", cache, "--out", str(art / "run"), "--nproc", str(NPROC), "--quiet"]
        else:
            cmd = [*py, "evaluate", "--config", str(rehearsal_cfg), "--model", f"student={art / 'run'}",
                   "--benchmark", str(benchmark), "--out", str(art / "eval"), "--quiet"]
        say(f"{stage} ...")
        result = run_stage(stage, cmd, env=env, log=root / "logs" / f"{stage}.log")
        results[stage] = result
        timings[stage] = {"seconds": round(result.seconds, 1), "peak_rss_gb": round(result.peak_rss_gb, 2)}
        say(f"{stage}: exit {result.returncode}, {result.seconds:.0f} s, peak {result.peak_rss_gb:.1f} GB "
            f"(log {root / 'logs' / f'{stage}.log'})")
        ok = result.returncode == 0
        if stage == "embed" and ok:
            cache = result.stdout.strip().splitlines()[-1]
    summary: dict[str, Any] = {
        "ok": ok and len(results) == len(STAGES),
        "config": str(config_path),
        "teacher": embed.teacher,
        "teacher_params": teacher_params,
        "student": distill.student,
        "student_params": student_params,
        "stages": timings,
        "checkpoints": setup,  # writing the random checkpoints (reused by a rerun)
        "total_seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if not summary["ok"]:
        failed = next((r for r in results.values() if r.returncode != 0), None)
        if failed is not None:
            summary["failed_stage"] = failed.name
            summary["error"] = (failed.stderr.strip().splitlines() or [""])[-1][:500]
    (root / "rehearsal.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary
