"""Evaluation: benchmarks, linear probe, kNN, robustness index, CKA, reports (`run_evaluate`)."""

from __future__ import annotations

from typing import Any

__all__ = ["EvaluateConfig", "run_evaluate"]


def __getattr__(name: str) -> Any:
    # Lazy: `g2l gate` and the metric modules should not pay for importing the whole runner (torch, sklearn).
    if name == "EvaluateConfig":
        from g2l.evaluate.config import EvaluateConfig

        return EvaluateConfig
    if name == "run_evaluate":
        from g2l.evaluate.runner import run_evaluate

        return run_evaluate
    raise AttributeError(f"module 'g2l.evaluate' has no attribute {name!r}")
