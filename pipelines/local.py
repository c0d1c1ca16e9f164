"""Run the whole pipeline here under kfp.local (SubprocessRunner in this interpreter): no cluster needed."""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

from g2l import storage
from g2l.pipeline.config import pipeline_arguments
from g2l.pipeline.io import RUN_ID_ENV
from g2l.progress import console


def _absolute(value: str) -> str:
    """Local paths made absolute: the task subprocesses and the pinned URIs must not depend on a CWD."""
    if not value or storage.is_remote(value) or "\n" in value:
        return value
    return str(Path(value).resolve())


def run_local(
    config: str | Path,
    *,
    pipeline_root: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
    enable_caching: bool = False,
) -> dict[str, Any]:
    """Run g2l_pipeline with the parameters of `config`; returns a summary (run id, report, decision, ...).

    Tasks run as subprocesses of this interpreter, so g2l must be importable here (installed or on
    PYTHONPATH) and the environment (G2L_PUSHGATEWAY, MLFLOW_TRACKING_URI, ...) reaches every task.
    """
    from kfp import local

    from pipelines.g2l_pipeline import g2l_pipeline

    args = pipeline_arguments(config, **(overrides or {}))
    args["artifact_root"] = _absolute(args["artifact_root"])
    if not args.get("manifest_repo"):  # a path inside a repo stays relative to that repo
        args["manifest_uri"] = _absolute(args["manifest_uri"])
    args["benchmarks"] = ",".join(_absolute(b) for b in args["benchmarks"].split(",") if b)
    root = args["artifact_root"]
    kfp_root = (
        Path(pipeline_root)
        if pipeline_root
        else Path(root if not storage.is_remote(root) else ".") / "kfp-local"
    )
    rid = run_id or f"local-{uuid.uuid4().hex[:12]}"
    # The SubprocessRunner's tasks inherit this environment: that is how the run id reaches their metrics.
    previous = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = rid
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(kfp_root.resolve()),
        raise_on_error=True,
        enable_caching=enable_caching,
    )
    console.print(f"pipeline run {rid}: kfp.local, task outputs under {kfp_root}")
    summary: dict[str, Any] = {
        "run_id": rid,
        "cancer": args["cancer"],
        "artifact_root": root,
        "pipeline_root": str(kfp_root),
    }
    try:
        with warnings.catch_warnings():
            # Resource requests, node selectors and the image mean nothing to the SubprocessRunner.
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            g2l_pipeline(**args)
        from g2l.pipeline.steps import run_outputs_uri

        report = json.loads(storage.read_text(run_outputs_uri(root, rid)))["report"]
    except RuntimeError as exc:  # kfp.local raises when a task fails; the task's log is above
        summary.update(succeeded=False, error=str(exc))
        return summary
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous
    summary.update(succeeded=True, **run_outputs(root, report))
    return summary


def run_outputs(artifact_root: str, report_uri: str) -> dict[str, Any]:
    """What a finished run left behind: thumbnails, the report, the gate decision and the promotion."""
    eval_dir = report_uri.rsplit("/", 1)[0]
    decision = json.loads(storage.read_text(storage.join(eval_dir, "decision.json")))
    thumbnails = sorted(f.uri for f in storage.list_files(storage.join(artifact_root, "tiles"), [".png"]))
    return {
        "thumbnails": thumbnails,
        "report_json": report_uri,
        "report_html": storage.join(eval_dir, "report.html"),
        "decision": storage.join(eval_dir, "decision.json"),
        "gate_passed": bool(decision["passed"]),
        "student": eval_dir.rsplit("/", 1)[0] + "/student",
    }
