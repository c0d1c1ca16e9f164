"""The whole pipeline under kfp.local on tiny data.

A passing gate promotes a champion, a failing one does not, and every stage's metrics reach a real
Pushgateway grouped by run id, stage and cancer.
"""

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from g2l.synth.slides import write_synthetic_slide

REPO = Path(__file__).resolve().parents[1]
CANCER = "demo"
pytestmark = pytest.mark.slow


def _policy(threshold: float) -> str:
    """The shipped policy's form with one rule: the student's probe accuracy >= a constant."""
    policy = yaml.safe_load((REPO / "configs" / "gate.yaml").read_text())
    policy["rules"] = [
        {
            "metric": "lp_balanced_accuracy",
            "benchmark": "all",
            "test": "threshold",
            "reference": "constant",
            "value": threshold,
        }
    ]
    return yaml.safe_dump(policy)


PASSING = _policy(0.0)  # every candidate passes
FAILING = _policy(2.0)  # no candidate can: accuracy is at most 1


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> Path:
    """Generated slides, their manifest and a demo config pointing at them (tiny models, a few steps)."""
    root = tmp_path_factory.mktemp("pipeline-run")
    rows = []
    for i in range(4):
        slide = write_synthetic_slide(root / "slides" / f"s{i}.svs", width=1024, height=768, mpp=0.5, seed=i)
        rows.append(
            {
                "slide_id": f"s{i}",
                "uri": str(slide.path),
                "cancer_type": CANCER,
                "site": f"S{i % 2}",
                "split": "train",
            }
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["run"]["artifact_root"] = str(root / "artifacts")
    cfg["manifest"] = {"path": str(root / "manifest.csv"), "rev": None, "repo": None}
    cfg["tiling"]["tiles_per_shard"] = 10
    cfg["embed"]["num_workers"] = 0  # no DataLoader worker processes: each would import torch again
    cfg["evaluate"]["num_workers"] = 0
    cfg["distill"].update(per_device_batch=4, global_batch=4)
    cfg["distill"]["schedule"].update(max_steps=4, warmup_steps=1)
    cfg["distill"]["validation"]["every_steps"] = 2
    cfg["distill"]["checkpoint"]["every_steps"] = 2
    cfg["pipeline"].update(
        tile_groups=2,
        embed_groups=2,
        embed_gpus=0,
        distill_gpus=1,
        benchmarks=[str(REPO / "configs" / "benchmarks" / "synthetic.yaml")],
    )
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def run_env(run_config, pushgateway, monkeypatch):
    """Task subprocesses inherit this environment: the Pushgateway and where benchmark data is generated."""
    monkeypatch.setenv("G2L_PUSHGATEWAY", pushgateway)
    monkeypatch.setenv("G2L_DATA", str(run_config.parent / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return pushgateway


def _artifact_root(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text())["run"]["artifact_root"])


def _versions(config: Path) -> list:
    from g2l.registry import list_versions

    return list_versions(CANCER, artifact_root=str(_artifact_root(config)))


def _groups(gateway: str) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"{gateway}/api/v1/metrics", timeout=10) as resp:
        return [g["labels"] for g in json.load(resp)["data"]]


def test_local_run_with_a_passing_gate_ends_with_a_champion_and_pushes_stage_metrics(run_config, run_env):
    from pipelines.local import run_local

    summary = run_local(run_config, overrides={"gate_policy": PASSING})
    assert summary["succeeded"], summary.get("error")
    assert summary["gate_passed"] is True
    assert len(summary["thumbnails"]) == 4 and all(Path(t).is_file() for t in summary["thumbnails"])
    assert Path(summary["report_html"]).is_file()

    champions = [v for v in _versions(run_config) if "champion" in v.aliases]
    assert len(champions) == 1
    weights = Path(summary["student"]) / "model.safetensors"
    assert champions[0].student_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()

    # Every stage pushed its metrics, grouped by this run's id, the stage and the cancer.
    mine = [g for g in _groups(run_env) if g.get("run_id") == summary["run_id"]]
    assert {g["stage"] for g in mine} >= {"tiling", "embed", "distill", "evaluate", "gate", "promote"}
    assert all(g["cancer"] == CANCER and g["job"] == "g2l" for g in mine)


def test_local_run_with_a_failing_gate_promotes_nothing(run_config, run_env):
    before = [(v.version, v.aliases) for v in _versions(run_config)]
    # Through the CLI this time: `g2l pipeline run --local` prints the run's summary as its last line.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "g2l",
            "pipeline",
            "run",
            "--local",
            "--config",
            str(run_config),
            "--set",
            f"gate_policy={FAILING}",
        ],
        env=os.environ,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # a rejection is not a failure
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["succeeded"] and summary["gate_passed"] is False
    decision = json.loads(Path(summary["decision"]).read_text())
    assert decision["passed"] is False and any(not r["passed"] for r in decision["rules"])
    assert [(v.version, v.aliases) for v in _versions(run_config)] == before  # no version, no alias moved
    stages = {g["stage"] for g in _groups(run_env) if g.get("run_id") == summary["run_id"]}
    assert "gate" in stages and "promote" not in stages  # the promote task never ran
