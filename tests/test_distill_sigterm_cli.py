"""Preemption through the real process tree: SIGTERM to `g2l distill --nproc 2` checkpoints and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from g2l.distill.checkpoint import list_checkpoints
from g2l.distill.runtime import PREEMPTED_EXIT_CODE
from tests.fixtures.distill import DistillData, distill_cli, tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sigterm_to_the_cli_checkpoints_and_exits_cleanly(distill_data: DistillData, tmp_path: Path) -> None:
    cfg = tiny_config(
        schedule={"max_steps": 1000}, checkpoint={"every_steps": 1000}, validation={"every_steps": 1000}
    )
    out = tmp_path / "run"
    cmd = distill_cli(cfg, distill_data, out, tmp_path / "distill.yaml")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and sum(1 for _ in log.open()) >= 4:  # the step-0 validation and 3 steps
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)  # what the kubelet sends a pod on a node being preempted
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-3000:]  # retryable: the job controller restarts it
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "preempted"
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps == [status["step"]] and 3 <= status["step"] < 1000
    assert not (out / "student").exists()
