"""Training checkpoints: RUN_DIR/checkpoints/step-XXXXXXXX/, written atomically, the last N kept.

Layout of one checkpoint: `state.pt` (student, head, optimiser, scheduler, step, data position,
early-stopping state; written by rank 0 from full state dicts), `rng-rank<r>.pt` (each rank's python,
numpy and torch RNG states) and `meta.json` (step, world size, config hash). The directory is built
under a temporary name and renamed into place, so a directory named `step-*` is always complete.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g2l.config import require

STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_FILE = "state.pt"
META_FILE = "meta.json"


def checkpoints_root(run_dir: str | os.PathLike[str]) -> Path:
    """RUN_DIR/checkpoints."""
    return Path(run_dir) / "checkpoints"


def step_dir_name(step: int) -> str:
    """`step-%08d`."""
    return f"step-{step:08d}"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = STEP_DIR.match(child.name)
        if match and (child / STATE_FILE).is_file() and (child / META_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states saved by `rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointWriter:
    """Writes checkpoints of a (possibly distributed) run; every rank calls `save` together."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        keep_last: int,
        rank: int = 0,
        world_size: int = 1,
        barrier: Any = None,
    ) -> None:
        self.root = checkpoints_root(run_dir)
        self.keep_last = keep_last
        self.rank = rank
        self.world_size = world_size
        self._barrier = barrier or (lambda: None)

    def save(self, step: int, state: dict[str, Any] | None, meta: dict[str, Any]) -> Path:
        """Write checkpoint `step`: `state` (rank 0's full state; ignored elsewhere) plus every rank's RNG."""
        final = self.root / step_dir_name(step)
        tmp = self.root / f".{final.name}.tmp"
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a run killed mid-write
            tmp.mkdir()
        self._barrier()
        torch.save(rng_state(), tmp / f"rng-rank{self.rank}.pt")
        self._barrier()
        if self.rank == 0:
            require(state is not None, "rank 0 must pass the checkpoint state")
            torch.save(state, tmp / STATE_FILE)
            payload = {"step": step, "world_size": self.world_size, **meta}
            (tmp / META_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
            if final.exists():  # the same step written again (e.g. rerun after a crash): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._prune()
        self._barrier()
        return final

    def _prune(self) -> None:
        for _, path in list_checkpoints(self.root.parent)[: -self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str | os.PathLike[str], rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Read a checkpoint's state, meta and this rank's RNG state (rank 0's if the world size changed)."""
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    rng_file = path / f"rng-rank{rank}.pt"
    exact = meta.get("world_size") == world_size and rng_file.exists()
    rng = torch.load(rng_file if exact else path / "rng-rank0.pt", map_location="cpu", weights_only=False)
    return {"state": state, "meta": meta, "rng": rng, "rng_exact": exact}


def save_atomic_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write JSON to a temp name in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def student_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The student's own full weights (head dropped) from a DDP/FSDP-wrapped Distiller, on the CPU.

    Every rank must call it (FSDP gathers shards collectively).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k[len("student."):]: v for k, v in sd.items() if k.startswith("student.")}  # type: ignore[misc]


def save_best(run_dir: str | os.PathLike[str], step: int, metrics: dict[str, float],
              weights: dict[str, torch.Tensor]) -> None:
    """Replace RUN_DIR/checkpoints/best (student.pt + meta.json) atomically (rank 0 only)."""
    best = checkpoints_root(run_dir) / "best"
    best.parent.mkdir(parents=True, exist_ok=True)
    tmp = best.with_name(".best.tmp")
    tmp.mkdir(exist_ok=True)
    torch.save(weights, tmp / "student.pt")
    save_atomic_json(tmp / "meta.json", {"step": step, **metrics})
    if best.exists():
        shutil.rmtree(best)
    os.replace(tmp, best)


def load_best(run_dir: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], int] | None:
    """The best validated student weights and their step, or None when none were saved."""
    best = checkpoints_root(run_dir) / "best"
    if not (best / "student.pt").exists():
        return None
    meta = json.loads((best / "meta.json").read_text())
    return torch.load(best / "student.pt", map_location="cpu", weights_only=True), int(meta["step"])
