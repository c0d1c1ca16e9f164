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
    champion = [v for v in list_versions("demo", artifact_root=str(artifacts)) if "champion" in v.aliases]
    summary["champion"] = f"g2l-student-demo v{champion[0].version}" if champion else None
    if champion:
        from g2l.audit import audit, print_report

        report = audit(cancer="demo", alias="champion", artifact_root=str(artifacts))
        print_report(report)
        summary["audit_ok"] = report.ok
    return summary
