"""Student distillation: G2L losses, torchrun DDP/FSDP training, checkpoints and resume, export."""

from __future__ import annotations

from typing import Any

from g2l.distill.config import DistillConfig


def run_distill(
    config: DistillConfig,
    shards: str,
    cache: str | None,
    out: str,
    nproc: int = 1,
    max_steps: int | None = None,
    resume: str = "auto",
    quiet: bool = False,
    **kwargs: Any,
) -> str:
    """Distil a student from the cache (or an online teacher) into OUT; returns OUT/student."""
    from g2l.distill.launch import run_distill as _run  # lazy: keeps `import g2l.distill` free of torch

    return _run(
        config, shards, cache, out, nproc=nproc, max_steps=max_steps, resume=resume, quiet=quiet, **kwargs
    )


__all__ = ["DistillConfig", "run_distill"]
