"""Training on tiny models: loss falls, val_cosine rises, logs and metrics, early stopping, reruns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from g2l.distill import run_distill
from tests.fixtures.distill import DistillData, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_training_loss_falls_and_val_cosine_rises(distill_data: DistillData, tmp_path: Path) -> None:
    # MSE here: with random-init tiny models the features barely vary between tiles, so the head's
    # BatchNorm running statistics (used at validation) are noisy and log-sum's val_cosine zig-zags
    # (see the test below); MSE's path is smooth enough to assert on.
    cfg = tiny_config(
        per_device_batch=8,
        global_batch=8,
        loss={"name": "mse"},
        schedule={"max_steps": 60, "warmup_steps": 5},
        validation={"every_steps": 20},
        checkpoint={"every_steps": 100},
    )
    student = run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True)
    log = _log(tmp_path)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 60
    assert _mean(losses[-10:]) < _mean(losses[:10]) - 0.1
    vals = [r for r in log if "val_cosine" in r]
    assert [r["step"] for r in vals] == [0, 20, 40, 60]
    assert vals[-1]["val_cosine"] > vals[0]["val_cosine"] + 0.3
    assert vals[-1]["val_loss"] < vals[0]["val_loss"]
    card = json.loads((Path(student) / "config.json").read_text())
    assert card["val"]["val_cosine"] == pytest.approx(vals[-1]["val_cosine"])


def test_logsum_training_loss_falls(distill_data: DistillData, tmp_path: Path) -> None:
    cfg = tiny_config(
        per_device_batch=8,
        global_batch=8,
        schedule={"max_steps": 30, "warmup_steps": 5},
        validation={"every_steps": 30},
        checkpoint={"every_steps": 100},
    )
    assert cfg.loss.name == "logsum"
    run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True)
    losses = [r["loss"] for r in _log(tmp_path) if "loss" in r]
    assert _mean(losses[-5:]) < _mean(losses[:5]) - 0.3


def test_log_lines_and_metrics(distill_data: DistillData, tmp_path: Path) -> None:
    cfg = tiny_config(schedule={"max_steps": 4}, validation={"every_steps": 2}, log_every_steps=1)
    run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True)
    log = _log(tmp_path)
    assert [r["step"] for r in log] == [0, 1, 2, 3, 4]
    for r in log[1:]:
        assert {"step", "loss", "lr", "tiles_per_s"} <= set(r) and r["tiles_per_s"] > 0
    assert all({"val_loss", "val_cosine"} <= set(r) for r in log if r["step"] in (0, 2, 4))
    assert all("val_loss" not in r for r in log if r["step"] in (1, 3))
    prom = (tmp_path / "metrics" / "distill.prom").read_text()
    for name in (
        "g2l_distill_loss",
        "g2l_distill_step_seconds",
        "g2l_distill_tiles_per_second",
        "g2l_distill_gpu_memory_bytes",
        "g2l_distill_val_cosine",
    ):
        assert name in prom
    assert re.search(r"^g2l_distill_steps_total(\{[^}]*\})? 4\.0$", prom, re.MULTILINE)


def test_early_stopping_ends_the_run(distill_data: DistillData, tmp_path: Path) -> None:
    # an improvement of 10 in validation loss never happens: patience 2 stops after two more validations
    cfg = tiny_config(
        schedule={"max_steps": 40},
        validation={"every_steps": 2},
        early_stopping={"enabled": True, "patience": 2, "min_delta": 10.0},
        export="best",
    )
    student = run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True)
    card = json.loads((Path(student) / "config.json").read_text())
    assert card["status"] == "early_stopped" and card["steps"] == 4
    assert card["exported_step"] == 0  # the best validation was the untrained student's
    # rerunning a finished run is a no-op: nothing is retrained or rewritten
    mtime = (Path(student) / "model.safetensors").stat().st_mtime_ns
    assert run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True) == student
    assert (Path(student) / "model.safetensors").stat().st_mtime_ns == mtime
