"""Per-step budgets of the cluster pipeline: timeout, retries, staging disk and CPU, sized from the plan.

The compiled pipeline declares a budget for every step (a pod timeout, a retry policy, an emptyDir for
staging). Disk sizes and timeouts are compile-time literals in KFP (the v2 driver parses
`emptyDirMounts[].sizeLimit` with `MustParse`, backend/src/v2/driver/k8s.go at 2.17.0), so the
committed pipeline carries `DEFAULT_BUDGETS`; `needed_budgets` derives what one cancer's run needs from
`g2l pipeline plan`, `g2l pipeline preflight` compares the two, and `g2l pipeline compile --config` sizes
a pipeline for a config whose run is larger than the defaults.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from g2l.pipeline.plan import Plan, architecture

HOUR = 3600
# Staging assumptions the plan does not carry (printed by `preflight` when a budget is short).
SLIDE_GB = 2.5  # a 40x TCGA FFPE SVS is 1-4 GB; a tiling pod keeps its group's slides staged
MARGIN = 1.3  # disk and time headroom over the estimate
CHECKPOINT_BYTES_PER_PARAM = 16  # fp32 student + head weights, AdamW moments, bf16 copy


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepBudget:
    """What one step may use: wall time, retries, staging disk (GiB; 0 = none) and /dev/shm (GiB)."""

    timeout_s: int
    retries: int
    staging_gi: int = 0
    shm_gi: int = 0

    def covers(self, other: StepBudget) -> bool:
        """True when this budget is at least `other` in time and disk."""
        return self.timeout_s >= other.timeout_s and self.staging_gi >= other.staging_gi


# Steps that read or write bulk data stage it under /cache on an emptyDir of `staging_gi`; the steps
# that start DataLoader workers or torchrun processes get a memory-backed /dev/shm (`shm_gi`).
DEFAULT_BUDGETS: dict[str, StepBudget] = {
    "pin": StepBudget(timeout_s=1 * HOUR, retries=2),
    "split": StepBudget(timeout_s=1 * HOUR, retries=2),
    "tile": StepBudget(timeout_s=24 * HOUR, retries=3, staging_gi=300, shm_gi=8),
    "shards": StepBudget(timeout_s=12 * HOUR, retries=3, staging_gi=50),
    "ranks": StepBudget(timeout_s=1 * HOUR, retries=2),
    "embed": StepBudget(timeout_s=48 * HOUR, retries=3, staging_gi=100, shm_gi=32),
    "seal": StepBudget(timeout_s=1 * HOUR, retries=2),
    "distill": StepBudget(timeout_s=7 * 24 * HOUR, retries=3, staging_gi=800, shm_gi=64),
    "trainjob": StepBudget(timeout_s=7 * 24 * HOUR, retries=3),
    "evaluate": StepBudget(timeout_s=12 * HOUR, retries=2, staging_gi=100, shm_gi=16),
    "gate": StepBudget(timeout_s=1 * HOUR, retries=2),
    "promote": StepBudget(timeout_s=2 * HOUR, retries=2, staging_gi=20),
    "cleanup": StepBudget(timeout_s=1 * HOUR, retries=2),
}


def _params(model: str) -> float:
    arch = architecture(model) or {}  # the zoo's own meta skeleton, as the plan counts it
    return float(arch.get("params", 1.2e9))  # unknown models: assume a ViT-g-sized file


def _gi(gigabytes: float) -> int:
    """Decimal GB (the plan's unit) to whole GiB with the margin, rounded up to 10 GiB."""
    return int(math.ceil(gigabytes * 1e9 / 2**30 * MARGIN / 10.0) * 10)


def _hours(hours: float, floor_h: float) -> int:
    return int(max(floor_h, hours * MARGIN * 2) * HOUR)  # x2: an MFU below target must not time out


def needed_budgets(
    plan: Plan,
    *,
    teacher: str,
    student: str,
    tile_groups: int,
    embed_groups: int,
    embed_gpus: int,
    distill_gpus: int,
    distill_nodes: int,
    keep_checkpoints: int = 3,
) -> dict[str, StepBudget]:
    """The staging disk and time each bulk step of this run needs (the others keep their defaults)."""
    slides_per_pod = math.ceil(plan.slides / max(tile_groups, 1))
    teacher_gb = _params(teacher) * 4 / 1e9  # fp32 checkpoint in the HF cache or staged from gs://
    checkpoints_gb = _params(student) * CHECKPOINT_BYTES_PER_PARAM * keep_checkpoints / 1e9
    embed_gpus_total = max(embed_groups * max(embed_gpus, 1), 1)
    distill_gpus_total = max(distill_gpus * distill_nodes, 1)
    need = dict(DEFAULT_BUDGETS)
    need["tile"] = dataclasses.replace(
        need["tile"],
        staging_gi=_gi(slides_per_pod * SLIDE_GB),
        timeout_s=_hours(plan.tiling_pod_hours / max(tile_groups, 1), 4),
    )
    need["embed"] = dataclasses.replace(
        need["embed"],
        staging_gi=_gi(plan.shard_gb / max(embed_groups, 1) + teacher_gb),
        timeout_s=_hours(plan.teacher_gpu_hours / embed_gpus_total, 4),
    )
    need["distill"] = dataclasses.replace(
        need["distill"],
        staging_gi=_gi(plan.shard_gb + plan.cache_gb + checkpoints_gb),
        timeout_s=_hours(plan.student_gpu_hours / distill_gpus_total, 12),
    )
    need["trainjob"] = dataclasses.replace(need["trainjob"], timeout_s=need["distill"].timeout_s)
    return need


def sized_budgets(need: dict[str, StepBudget]) -> dict[str, StepBudget]:
    """Budgets for a compile: the defaults, raised wherever this run needs more."""
    out = {}
    for step, default in DEFAULT_BUDGETS.items():
        want = need.get(step, default)
        out[step] = dataclasses.replace(
            default,
            timeout_s=max(default.timeout_s, want.timeout_s),
            staging_gi=max(default.staging_gi, want.staging_gi),
        )
    return out


def needed_for_config(config_path: str) -> dict[str, StepBudget]:
    """`needed_budgets` for a cancer config (its plan, models and fan-out)."""
    from g2l.config import load_section, load_yaml
    from g2l.pipeline.config import PipelineConfig
    from g2l.pipeline.plan import plan_from_config

    raw = load_yaml(config_path)
    pipe = load_section(PipelineConfig, config_path, section="pipeline")
    embed: dict[str, Any] = raw.get("embed") or {}
    distill: dict[str, Any] = raw.get("distill") or {}
    keep = int(((distill.get("checkpoint") or {}).get("keep_last")) or 3)
    return needed_budgets(
        plan_from_config(config_path),
        teacher=str(embed.get("teacher") or "hf-hub:bioptimus/H-optimus-0"),
        student=str(distill.get("student") or "vit_large_patch14_reg4_dinov2"),
        tile_groups=pipe.tile_groups,
        embed_groups=pipe.embed_groups,
        embed_gpus=int(pipe.embed_gpus),
        distill_gpus=int(pipe.distill_gpus),
        distill_nodes=pipe.distill_nodes,
        keep_checkpoints=keep,
    )
