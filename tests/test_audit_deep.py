"""`g2l audit --deep` re-runs the recorded evaluation: metrics that reproduce pass within the tolerance,
one that was doctored in the report is named. Needs g2l.evaluate (skipped on a branch without it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from g2l.audit import audit
from g2l.registry import promote
from tests.fixtures.lineage import Candidate, World

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "configs" / "benchmarks" / "synthetic.yaml"


@pytest.mark.slow
def test_deep_audit_reruns_the_evaluation_and_names_a_metric_that_does_not_reproduce(
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    tmp_path: Path,
) -> None:
    evaluate = pytest.importorskip("g2l.evaluate")
    if not SYNTHETIC.exists():
        pytest.skip("configs/benchmarks/synthetic.yaml (evaluate stage) is not on this branch")
    spec = yaml.safe_load(SYNTHETIC.read_text())
    spec["root"] = str(tmp_path / "bench-data")
    spec["generate"].update({"tile_px": 32, "tiles_per_group_class": 3})
    bench = tmp_path / "synthetic.yaml"
    bench.write_text(yaml.safe_dump(spec))
    cand = make_candidate(value=0.8)
    config = evaluate.EvaluateConfig(probe_c_grid=(0.1, 1.0), probe_max_iter=300, num_workers=0)
    report = evaluate.run_evaluate(
        config,
        {"student": str(cand.student), "teacher": "tiny-vit-teacher"},
        [str(bench)],
        str(tmp_path / "eval"),
        quiet=True,
    )
    report["models"]["student"]["benchmarks"]["synthetic"]["lp_auc"] += (
        0.05  # a claim that will not reproduce
    )
    (tmp_path / "eval" / "report.json").write_text(json.dumps(report))
    (tmp_path / "decision.json").write_text(json.dumps({"passed": True, "candidate": "student", "rules": []}))
    policy = tmp_path / "gate.yaml"
    policy.write_text("primary_metric: lp_balanced_accuracy\n")
    promote(
        student=str(cand.student),
        report=str(tmp_path / "eval" / "report.json"),
        decision=str(tmp_path / "decision.json"),
        cancer=cancer,
        policy=str(policy),
        registry_uri=registry_uri,
        quiet=True,
    )

    result = audit(cancer=cancer, registry_uri=registry_uri, deep=True)
    metric_lines = [c for c in result.checks if c.check == "metric"]
    assert len(metric_lines) >= 5 and all("tolerance" in c.detail for c in metric_lines)
    assert [c.name for c in result.failures] == ["metric synthetic.lp_auc"]
    assert any(c.check == "benchmark data" and c.ok for c in result.checks)
