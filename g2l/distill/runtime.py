"""Distributed runtime: this process's place in the torchrun job, collectives, SIGTERM handling."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

#: Exit status after a SIGTERM checkpoint: 128 + SIGTERM, the code Kubernetes reports for a terminated
#: container. Non-zero on purpose: with exit 0 a PyTorchJob (restartPolicy ExitCode/OnFailure) or a
#: TrainJob would count the preempted run as finished, with no student; 143 is retryable, so it restarts.
PREEMPTED_EXIT_CODE = 143


class Preempted(Exception):
    """SIGTERM arrived: a checkpoint was written at the step boundary; rerunning resumes from it."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by SIGTERM after step {step}; checkpoint {checkpoint}; rerun to resume")
        self.step = step
        self.checkpoint = checkpoint


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: rank, world size, device, collective backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    def barrier(self) -> None:
        """Wait for every rank (no-op alone)."""
        if self.world_size > 1:
            dist.barrier()


def init_distributed() -> DistEnv:
    """Join the torchrun job described by the environment: NCCL on CUDA, gloo on CPU; alone otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend = None
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=device, backend=backend)


class StopFlag:
    """Set by SIGTERM; read at step boundaries."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, frame: Any) -> None:
        """The signal handler: only sets the flag (the loop checkpoints at the next step boundary)."""
        self.set = True


def all_reduce(values: list[float], env: DistEnv, op: Any = None) -> list[float]:
    """Sum (or `op`) a few floats over every rank; the values themselves when alone."""
    if env.world_size <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=env.device if env.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.tolist()


def on_main_thread() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()
