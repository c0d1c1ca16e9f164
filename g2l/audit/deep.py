"""Checks against the registry itself: the weights it serves, and `--deep` re-evaluation of the version."""

from __future__ import annotations

import importlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from g2l.audit.report import Check, compare, skip
from g2l.registry import blobs, lineage


def registry_copy_check(client: Any, run_id: str, recorded: str | None) -> Check:
    """The weights the registry serves (the run's artifact) still hash to the recorded value."""

    def compute() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, f"student/{lineage.WEIGHTS_FILE}", tmp)
            return blobs.sha256_uri(path)

    return compare("registered weights", f"runs:/{run_id}/student/{lineage.WEIGHTS_FILE}", recorded, compute)


def deep_checks(
    tags: Mapping[str, str], lin: Mapping[str, str], tolerance: float, client: Any, run_id: str
) -> list[Check]:
    """Re-run the recorded evaluation of the candidate and compare each metric within `tolerance`.

    The report logged with the version gives the evaluation config, the benchmark files and the
    teacher's spec; the candidate is the student at its lineage path (its weights are checked above).
    """
    try:
        evaluate_mod = importlib.import_module("g2l.evaluate")
        run_evaluate = evaluate_mod.run_evaluate
    except (ImportError, AttributeError):
        return [
            skip("deep evaluation", "deep audit unavailable: g2l.evaluate.run_evaluate is not installed")
        ]
    from g2l.registry.promote import recorded_benchmarks

    candidate = tags.get("g2l.candidate", "student")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            old = json.loads(Path(client.download_artifacts(run_id, "report.json", tmp)).read_text())
            cfg_cls = getattr(evaluate_mod, "EvaluateConfig", None)
            cfg: Any = old.get("config") or {}
            if cfg_cls is not None:
                from g2l.config import from_dict

                cfg = from_dict(cfg_cls, cfg, where="report.json:config")
            files = [str(b.get("file") or "") for b in (old.get("benchmarks") or {}).values()]
            if not files or not all(files):
                raise ValueError("report.json does not record its benchmark files")
            models = {candidate: lin["student_uri"]}
            teacher = old.get("teacher")
            if teacher and (old.get("models") or {}).get(teacher, {}).get("spec"):
                models[teacher] = old["models"][teacher]["spec"]  # CKA-to-teacher metrics need it
            new = run_evaluate(cfg, models, files, str(Path(tmp) / "eval"), quiet=True)
        except Exception as exc:  # a deep audit that cannot run is a failed line, with the reason
            return [
                Check(
                    check="deep evaluation",
                    item=candidate,
                    expected="re-run",
                    found=f"error: {exc}",
                    ok=False,
                )
            ]
    out = []
    for bench, meta in sorted((old.get("benchmarks") or {}).items()):
        now = ((new.get("benchmarks") or {}).get(bench) or {}).get("sha256")
        out.append(
            Check(
                check="benchmark data",
                item=bench,
                expected=str(meta.get("sha256")),
                found=str(now),
                ok=now == meta.get("sha256"),
            )
        )
    benches = ((new.get("models") or {}).get(candidate) or {}).get("benchmarks") or {}
    for bench, metrics in sorted(recorded_benchmarks(tags).items()):
        for metric, recorded in sorted(metrics.items()):
            value = (benches.get(bench) or {}).get(metric)
            ok = isinstance(value, int | float) and abs(float(value) - recorded) <= tolerance
            out.append(
                Check(
                    check="metric",
                    item=f"{bench}.{metric}",
                    expected=f"{recorded:.6g}",
                    found="missing" if value is None else f"{float(value):.6g}",
                    ok=ok,
                    detail=f"tolerance ±{tolerance:g}",
                )
            )
    return out


