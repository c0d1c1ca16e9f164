"""Run one stage as a subprocess; measure its wall time and peak memory across its whole process tree.

Memory is the sum over the stage's processes (torchrun workers, DataLoader workers) of their
proportional set size (PSS, /proc/<pid>/smaps_rollup): pages shared between forked workers count
once, which a sum of RSS would not. Sampled every 0.2 s; off Linux, the child's own peak RSS.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import threading
import time
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class StageResult:
    """How a stage ended and what it cost."""

    name: str
    returncode: int
    seconds: float
    peak_rss_gb: float
    stdout: str
    stderr: str


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # no smaps_rollup: resident set size
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def tree_memory_bytes(pid: int) -> int:
    """Current PSS of a process and all its descendants."""
    return sum(_pss_bytes(p) for p in _tree(pid))


def run_stage(name: str, cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
              log: Path | None = None, interval: float = 0.2) -> StageResult:
    """Run `cmd`, sampling its process tree's memory; stdout and stderr are kept (and written to `log`)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_memory_bytes(proc.pid))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if peak == 0:  # no /proc: the largest child's peak RSS (kilobytes on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
    return StageResult(name=name, returncode=proc.returncode, seconds=seconds, peak_rss_gb=peak / 1e9,
                       stdout=stdout, stderr=stderr)
