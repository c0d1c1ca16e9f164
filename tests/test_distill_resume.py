"""Preemption: SIGTERM after step 10 checkpoints and exits; resuming for 10 more equals 20 straight steps."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from g2l.distill import run_distill
from g2l.distill.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from g2l.distill.runtime import Preempted
from tests.fixtures.distill import DistillData, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _final_state(run_dir: Path) -> dict:
    path = latest_checkpoint(run_dir)
    assert path is not None
    return load_checkpoint(path)["state"]


def test_sigterm_then_resume_equals_straight_run(distill_data: DistillData, tmp_path: Path) -> None:
    cfg = tiny_config(schedule={"max_steps": 20}, checkpoint={"every_steps": 4, "keep_last": 2})
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    run_distill(cfg, distill_data.shards, distill_data.cache, str(straight), quiet=True)

    def preempt_after_10(step: int) -> None:
        if step == 10:  # what the kubelet does to a pod on a preempted node
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Preempted) as stopped:
        run_distill(
            cfg,
            distill_data.shards,
            distill_data.cache,
            str(interrupted),
            quiet=True,
            step_callback=preempt_after_10,
        )
    assert stopped.value.step == 10
    assert [s for s, _ in list_checkpoints(interrupted)] == [8, 10]  # keep_last 2; SIGTERM wrote step 10
    assert json.loads((interrupted / "status.json").read_text())["status"] == "preempted"
    assert not (interrupted / "student").exists()

    run_distill(cfg, distill_data.shards, distill_data.cache, str(interrupted), quiet=True)  # resume auto

    a, b = _final_state(straight), _final_state(interrupted)
    assert a["step"] == b["step"] == 20
    assert a["data_position"] == b["data_position"]
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
    for pid, st in a["optimizer"]["state"].items():
        torch.testing.assert_close(
            b["optimizer"]["state"][pid]["exp_avg_sq"], st["exp_avg_sq"], rtol=0, atol=1e-9
        )
    logs = [
        [json.loads(x) for x in (d / "train_log.jsonl").read_text().splitlines()]
        for d in (straight, interrupted)
    ]
    drop = ("tiles_per_s", "step_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in logs[0]] == [
        {k: v for k, v in r.items() if k not in drop} for r in logs[1]
    ]


def test_resume_refuses_a_different_config(distill_data: DistillData, tmp_path: Path) -> None:
    cfg = tiny_config(schedule={"max_steps": 2})
    run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True)
    from g2l.config import ConfigError

    with pytest.raises(ConfigError, match="another distill config"):
        run_distill(
            tiny_config(schedule={"max_steps": 2}, optim={"lr": 5e-3}),
            distill_data.shards,
            distill_data.cache,
            str(tmp_path),
            quiet=True,
        )
