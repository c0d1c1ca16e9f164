"""Multi-process training: 2 gloo processes (torchrun, via the CLI) give 1 process's weights, DDP and FSDP."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from g2l.distill import run_distill
from g2l.distill.checkpoint import latest_checkpoint, load_checkpoint
from tests.fixtures.distill import DistillData, distill_cli, tiny_config

REPO = Path(__file__).resolve().parents[1]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    path = latest_checkpoint(run_dir)
    assert path is not None
    state = load_checkpoint(path)["state"]
    assert state["step"] == 3
    # BatchNorm running statistics are buffers, not weights: DDP broadcasts rank 0's, one process
    # accumulates over both micro-batches; they play no part in training steps.
    return {k: v for k, v in state["model"].items() if not k.endswith(BUFFERS)}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gloo_processes_equal_one(distill_data: DistillData, tmp_path: Path, strategy: str) -> None:
    cfg = tiny_config(
        strategy=strategy,
        per_device_batch=4,
        global_batch=8,
        schedule={"max_steps": 3},
        validation={"every_steps": 3},
        checkpoint={"every_steps": 3},
    )
    assert cfg.grad_accum_steps(1) == 2 and cfg.grad_accum_steps(2) == 1
    one, two = tmp_path / "one", tmp_path / "two"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_distill(cfg, distill_data.shards, distill_data.cache, str(one), quiet=True)
    finally:
        torch.set_num_threads(threads)

    cmd = distill_cli(cfg, distill_data, two, tmp_path / "distill.yaml")
    done = subprocess.run(cmd, cwd=REPO, env=os.environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(two / "student")

    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys() and any(k.startswith("head.") for k in a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    moved = max((a[k] - load_init(k)).abs().max().item() for k in a if k.startswith("student.blocks.0"))
    assert moved > 1e-4  # the weights did train, so equality is not trivial
    card = json.loads((two / "student" / "config.json").read_text())
    assert card["world_size"] == 2 and card["distill_config"]["strategy"] == strategy


def load_init(key: str) -> torch.Tensor:
    from g2l.models import build_model

    state = build_model("tiny-vit-student").model.state_dict()
    return state[key[len("student.") :]]
