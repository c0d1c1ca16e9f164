"""Optimiser schedules: lr (linear warmup, cosine decay) and AdamW weight decay (constant or cosine)."""

from __future__ import annotations

import math

import torch

from g2l.distill.config import ScheduleConfig


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def lr_factor(step: int, config: ScheduleConfig) -> float:
    """Multiplier of the peak lr for optimiser step `step` (0-based)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    cosine = _cosine((step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def weight_decay_factor(step: int, config: ScheduleConfig) -> float:
    """Multiplier of optim.weight_decay for step `step`: 1, or a cosine from 1 to min_weight_decay_ratio.

    The cosine spans all max_steps (no warmup: decoupled weight decay is harmless on step 0).
    """
    if config.weight_decay_schedule == "constant":
        return 1.0
    ratio = config.min_weight_decay_ratio
    return ratio + (1.0 - ratio) * _cosine(step / max(1, config.max_steps))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following `lr_factor`; its state (the step count) goes into checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))


def set_weight_decay(
    optimizer: torch.optim.Optimizer, step: int, config: ScheduleConfig, base: float
) -> float:
    """Set the decayed group's weight decay for step `step` (call before optimizer.step()); returns it.

    Groups created with weight_decay 0 (biases, norms, tokens) stay at 0. A pure function of the step,
    so a resumed run needs no extra state.
    """
    value = base * weight_decay_factor(step, config)
    for group in optimizer.param_groups:
        if group.get("decays", group["weight_decay"] > 0):
            group["weight_decay"] = value
    return value
