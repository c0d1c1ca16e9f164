"""Checkpoint files: atomic step directories, keep-last pruning, newest complete wins, RNG round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from g2l.distill.checkpoint import (
    CheckpointWriter,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    set_rng_state,
)


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "step": step}


def test_keeps_last_n_and_resumes_from_newest_complete(tmp_path: Path) -> None:
    writer = CheckpointWriter(tmp_path, keep_last=2)
    for step in (5, 10, 15):
        writer.save(step, _state(step), {"config_hash": "h"})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 15]
    # a directory left half-written by a killed run (temp name, or missing state) is never picked
    (tmp_path / "checkpoints" / ".step-00000020.tmp").mkdir()
    (tmp_path / "checkpoints" / "step-00000025").mkdir()
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-00000015"
    ckpt = load_checkpoint(latest)
    assert ckpt["state"]["step"] == 15 and ckpt["meta"]["config_hash"] == "h" and ckpt["rng_exact"]


def test_rng_states_round_trip(tmp_path: Path) -> None:
    CheckpointWriter(tmp_path, keep_last=1).save(1, _state(1), {})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    for _ in range(3):  # move every generator on
        random.random(), np.random.rand(), torch.rand(1)
    set_rng_state(load_checkpoint(latest_checkpoint(tmp_path))["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_rewriting_a_step_replaces_it(tmp_path: Path) -> None:
    writer = CheckpointWriter(tmp_path, keep_last=3)
    writer.save(7, _state(7), {})
    writer.save(7, {"model": {"w": torch.zeros(2)}, "step": 7}, {})
    assert load_checkpoint(latest_checkpoint(tmp_path))["state"]["model"]["w"].sum() == 0
    assert not any(p.name.startswith(".") for p in (tmp_path / "checkpoints").iterdir())
