"""Cost plan before a run spends money: tiles, storage, teacher and student GPU-hours, with assumptions."""

from __future__ import annotations

import dataclasses
from typing import Any

from g2l.config import ConfigError, require

# Architecture figures for the models DESIGN section 1 names: parameters, width, depth, patch size,
# input size and register tokens, from the models' published configs. Forward FLOPs per image are
# derived from these (see `forward_flops`); a model not listed needs `plan.teacher_gflops` /
# `plan.student_gflops`.
ARCHITECTURES: dict[str, dict[str, float]] = {
    "hf-hub:bioptimus/H-optimus-0": {
        "params": 1.134e9,
        "dim": 1536,
        "depth": 40,
        "patch": 14,
        "img": 224,
        "extra_tokens": 5,
    },
    "hf-hub:prov-gigapath/prov-gigapath": {
        "params": 1.134e9,
        "dim": 1536,
        "depth": 40,
        "patch": 16,
        "img": 224,
        "extra_tokens": 1,
    },
    "hf-hub:MahmoodLab/UNI2-h": {
        "params": 0.681e9,
        "dim": 1536,
        "depth": 24,
        "patch": 14,
        "img": 224,
        "extra_tokens": 9,
    },
    "hf-hub:paige-ai/Virchow2": {
        "params": 0.632e9,
        "dim": 1280,
        "depth": 32,
        "patch": 14,
        "img": 224,
        "extra_tokens": 5,
    },
    "vit_large_patch14_reg4_dinov2": {
        "params": 0.304e9,
        "dim": 1024,
        "depth": 24,
        "patch": 14,
        "img": 224,
        "extra_tokens": 5,
    },
    "hf-hub:histai/hibou-L": {
        "params": 0.304e9,
        "dim": 1024,
        "depth": 24,
        "patch": 14,
        "img": 224,
        "extra_tokens": 5,
    },
    "hf-hub:MahmoodLab/UNI": {
        "params": 0.303e9,
        "dim": 1024,
        "depth": 24,
        "patch": 16,
        "img": 224,
        "extra_tokens": 1,
    },
    "vit_base_patch14_reg4_dinov2": {
        "params": 0.086e9,
        "dim": 768,
        "depth": 12,
        "patch": 14,
        "img": 224,
        "extra_tokens": 5,
    },
}

# Short names of the model zoo (g2l.models) for the same architectures.
ALIASES = {
    "h-optimus-0": "hf-hub:bioptimus/H-optimus-0",
    "prov-gigapath": "hf-hub:prov-gigapath/prov-gigapath",
    "uni2-h": "hf-hub:MahmoodLab/UNI2-h",
    "virchow2": "hf-hub:paige-ai/Virchow2",
    "uni": "hf-hub:MahmoodLab/UNI",
    "hibou-l": "hf-hub:histai/hibou-L",
}

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets (SXM parts, no sparsity).
GPU_PEAK_TFLOPS: dict[str, float] = {
    "h100": 989.0,
    "h200": 989.0,
    "a100": 312.0,
    "l4": 121.0,
    "t4": 65.0,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanConfig:
    """Assumptions of `g2l pipeline plan` (the `pipeline.plan:` section); every one is printed."""

    slides: int = 1000
    tiles_per_slide: int = 8000
    tile_kb: float = 24.0
    views: int = 4
    distill_epochs: float = 1.0
    gpu: str = "h100"
    teacher_mfu: float = 0.55
    student_mfu: float = 0.50
    teacher_gflops: float = 0.0
    student_gflops: float = 0.0
    tiling_tiles_per_s: float = 150.0
    gpu_usd_per_hour: float = 0.0

    def __post_init__(self) -> None:
        require(self.slides >= 1, f"pipeline.plan.slides must be >= 1, got {self.slides}")
        require(
            self.tiles_per_slide >= 1,
            f"pipeline.plan.tiles_per_slide must be >= 1, got {self.tiles_per_slide}",
        )
        require(self.views >= 1, f"pipeline.plan.views must be >= 1, got {self.views}")
        require(
            self.gpu in GPU_PEAK_TFLOPS,
            f"pipeline.plan.gpu {self.gpu!r} is unknown; use one of {', '.join(sorted(GPU_PEAK_TFLOPS))}",
        )
        for key in ("teacher_mfu", "student_mfu"):
            value = getattr(self, key)
            require(0 < value <= 1, f"pipeline.plan.{key} must be in (0, 1], got {value}")
        require(self.tiling_tiles_per_s > 0, "pipeline.plan.tiling_tiles_per_s must be > 0")


def forward_flops(arch: dict[str, float]) -> float:
    """Forward FLOPs of one image through a ViT: 2 x params x tokens (matmuls) + attention scores."""
    tokens = (arch["img"] / arch["patch"]) ** 2 + arch["extra_tokens"]
    return 2.0 * arch["params"] * tokens + 4.0 * arch["depth"] * tokens**2 * arch["dim"]


def _model_gflops(name: str, override: float, role: str) -> tuple[float, str]:
    if override > 0:
        return override, f"{role} forward {override:.1f} GFLOP/image (pipeline.plan.{role}_gflops)"
    arch = ARCHITECTURES.get(name) or ARCHITECTURES.get(ALIASES.get(name.lower(), ""))
    if arch is None:
        raise ConfigError(
            f"plan: no architecture figures for {role} {name!r}; set pipeline.plan.{role}_gflops "
            f"or use one of {', '.join(sorted(ARCHITECTURES))}"
        )
    gflops = forward_flops(arch) / 1e9
    return gflops, (
        f"{role} {name}: {arch['params'] / 1e6:.0f}M params, forward {gflops:.0f} GFLOP/image "
        f"(2 x params x tokens + attention)"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """The estimate and the assumptions it rests on."""

    slides: int
    tiles: int
    shard_gb: float
    cache_gb: float
    tiling_pod_hours: float
    teacher_gpu_hours: float
    student_gpu_hours: float
    usd: float | None
    assumptions: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON output)."""
        return dataclasses.asdict(self)


def estimate(
    cfg: PlanConfig, *, teacher: str, student: str, teacher_dim: int | None = None, slides: int | None = None
) -> Plan:
    """Estimate a run's tiles, storage and GPU-hours from per-tile costs and model FLOPs."""
    n_slides = slides if slides is not None else cfg.slides
    tiles = n_slides * cfg.tiles_per_slide
    peak = GPU_PEAK_TFLOPS[cfg.gpu] * 1e12
    t_gflops, t_note = _model_gflops(teacher, cfg.teacher_gflops, "teacher")
    s_gflops, s_note = _model_gflops(student, cfg.student_gflops, "student")
    t_arch = ARCHITECTURES.get(teacher) or ARCHITECTURES.get(ALIASES.get(teacher.lower(), ""), {})
    dim = teacher_dim or int(t_arch.get("dim", 1536))
    images = tiles * cfg.views
    teacher_s = images * t_gflops * 1e9 / (peak * cfg.teacher_mfu)
    # Training one image costs a forward and a backward (about twice the forward): 3x forward FLOPs.
    student_images = images * cfg.distill_epochs
    student_s = student_images * 3 * s_gflops * 1e9 / (peak * cfg.student_mfu)
    gpu_hours = (teacher_s + student_s) / 3600
    source = "the manifest's row count" if slides is not None else "pipeline.plan.slides"
    assumptions = [
        f"{n_slides} slides ({source}) x {cfg.tiles_per_slide} tissue tiles/slide "
        "(pipeline.plan.tiles_per_slide: ~150 mm2 of tissue at 0.5 um/px, 256 px tiles)",
        f"{cfg.tile_kb:g} KB per JPEG tile in the shards; cache float16 [tiles, {cfg.views} views, {dim}]",
        t_note,
        s_note,
        f"GPU {cfg.gpu}: {GPU_PEAK_TFLOPS[cfg.gpu]:.0f} TFLOP/s dense bf16 peak; MFU teacher "
        f"{cfg.teacher_mfu:.0%}, student {cfg.student_mfu:.0%} (the DESIGN section 5 targets; replace with "
        "benchmarks/RESULTS.md measurements for your cluster)",
        f"distillation: {cfg.distill_epochs:g} pass(es) over the cached views; a training step costs "
        "3x the forward FLOPs",
        f"tiling: {cfg.tiling_tiles_per_s:g} tiles/s per pod (cuCIM batched reads)",
    ]
    usd = None
    if cfg.gpu_usd_per_hour > 0:
        usd = gpu_hours * cfg.gpu_usd_per_hour
        assumptions.append(f"GPU price {cfg.gpu_usd_per_hour:g} USD/hour (pipeline.plan.gpu_usd_per_hour)")
    return Plan(
        slides=n_slides,
        tiles=tiles,
        shard_gb=tiles * cfg.tile_kb * 1024 / 1e9,
        cache_gb=images * dim * 2 / 1e9,
        tiling_pod_hours=tiles / cfg.tiling_tiles_per_s / 3600,
        teacher_gpu_hours=teacher_s / 3600,
        student_gpu_hours=student_s / 3600,
        usd=usd,
        assumptions=assumptions,
    )


def format_plan(plan: Plan) -> str:
    """Human-readable table of the estimate followed by its assumptions."""
    rows = [
        ("slides", f"{plan.slides:,}"),
        ("tiles", f"{plan.tiles:,}"),
        ("tile shards", f"{plan.shard_gb:,.1f} GB"),
        ("teacher embedding cache", f"{plan.cache_gb:,.1f} GB"),
        ("tiling", f"{plan.tiling_pod_hours:,.1f} pod-hours"),
        ("teacher embedding", f"{plan.teacher_gpu_hours:,.1f} GPU-hours"),
        ("student distillation", f"{plan.student_gpu_hours:,.1f} GPU-hours"),
    ]
    if plan.usd is not None:
        rows.append(("GPU cost", f"{plan.usd:,.0f} USD"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("assumptions:")
    lines.extend(f"  - {a}" for a in plan.assumptions)
    return "\n".join(lines)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    return value if isinstance(value, dict) else {}


def plan_from_config(config_path: str, *, slides: int | None = None) -> Plan:
    """Estimate for a cancer config: models from pipeline/embed/distill, assumptions from pipeline.plan."""
    from g2l.config import load_section, load_yaml
    from g2l.pipeline.config import PipelineConfig

    raw = load_yaml(config_path)
    pipe = load_section(PipelineConfig, config_path, section="pipeline")
    teacher = str(_section(raw, "embed").get("teacher") or "hf-hub:bioptimus/H-optimus-0")
    student = str(_section(raw, "distill").get("student") or "vit_large_patch14_reg4_dinov2")
    return estimate(pipe.plan, teacher=teacher, student=student, slides=slides)
