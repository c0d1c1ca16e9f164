"""`g2l demo`: generated slides in a local bucket, a DVC-versioned manifest, the whole pipeline, an audit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from g2l.progress import console


def project_root() -> Path:
    """The checkout g2l runs from (configs/, dvc.yaml and params.yaml live there)."""
    import g2l

    return Path(g2l.__file__).resolve().parents[1]


def run_demo(out: str | Path, *, root: Path | None = None) -> dict[str, Any]:
    """Prepare the demo inputs under `out`, run the pipeline under kfp.local, audit the champion."""
    from g2l.demo import prepare_demo_inputs
    from g2l.registry import list_versions
    from pipelines.local import run_local

    root = root or project_root()
    out = Path(out).resolve()
    inputs = prepare_demo_inputs(out, root)
    console.print(
        f"demo: slides in {inputs.bucket}, manifest {inputs.manifest} at rev {inputs.manifest_rev[:12]}"
    )
    os.environ.setdefault("G2L_DATA", str(out / "data"))  # where the synthetic benchmark is generated
    artifacts = out / "artifacts"
    summary = run_local(
        root / "configs" / "demo.yaml",
        overrides={
            "artifact_root": str(artifacts),
            # The manifest by git revision of the DVC workspace, as a team's manifest repository.
            "manifest_uri": str(inputs.manifest.relative_to(inputs.workspace)),
            "manifest_rev": inputs.manifest_rev,
            "manifest_repo": str(inputs.workspace),
            "benchmarks": str(root / "configs" / "benchmarks" / "synthetic.yaml"),
        },
    )
    if not summary["succeeded"]:
        return summary
    summary.update(_training_story(Path(summary["student"]), Path(summary["decision"]),
                                   Path(summary["report_json"])))
    summary["champion"] = None
    summary["audit"] = None
    if not summary.get("gate_passed"):  # nothing was promoted, so there is no registry to look in
        return summary
    champion = [v for v in list_versions("demo", artifact_root=str(artifacts)) if "champion" in v.aliases]
    if champion:
        from g2l.audit import audit

        summary["champion"] = f"g2l-student-demo v{champion[0].version}"
        summary["audit"] = audit(cancer="demo", alias="champion", artifact_root=str(artifacts))
        summary["audit_ok"] = summary["audit"].ok
    return summary


def _training_story(student: Path, decision: Path, report: Path) -> dict[str, Any]:
    """What a person wants from the demo: cache key, val cosine, the demo row, the gate's reasons."""
    import json

    from g2l.demo_table import demo_rows, format_table

    card = json.loads((student / "config.json").read_text())
    log = [json.loads(line) for line in (student.parent / "train_log.jsonl").read_text().splitlines()]
    cosines = [row["val_cosine"] for row in log if "val_cosine" in row]
    verdict = json.loads(decision.read_text())
    evaluated = json.loads(report.read_text())
    benchmark = next(iter(evaluated["benchmarks"]))
    return {
        "cache_key": card.get("cache_key"),
        "val_cosine_before": cosines[0] if cosines else None,
        "val_cosine_after": cosines[-1] if cosines else None,
        "demo_table": format_table(demo_rows(evaluated, benchmark)),
        # one line per rule: its verdict, its name in configs/gate_demo.yaml, and why
        "gate_reasons": [f"{r['verdict']}: {str(r['rule']).split(':')[0]}: {r['reason']}"
                         for r in verdict["rules"]],
    }
