"""Cost plan before a run spends money: tiles, teacher forwards, student samples, storage and GPU-hours.

The counts follow the run's own config: the cache holds slides x min(tiles per slide, embed.
max_tiles_per_slide) x embed.views teacher forwards; training consumes distill.schedule.max_steps x
distill.global_batch samples, each needing one teacher forward when the teacher runs online. When the
cache holds more than training can read, the plan says so (that teacher compute is never used).
Architecture figures (parameters, width, depth, tokens) come from the model zoo's own skeletons.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from g2l.config import ConfigError, require

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
        require(
            self.gpu in GPU_PEAK_TFLOPS,
            f"pipeline.plan.gpu {self.gpu!r} is unknown; use one of {', '.join(sorted(GPU_PEAK_TFLOPS))}",
        )
        for key in ("teacher_mfu", "student_mfu"):
            value = getattr(self, key)
            require(0 < value <= 1, f"pipeline.plan.{key} must be in (0, 1], got {value}")
        require(self.tiling_tiles_per_s > 0, "pipeline.plan.tiling_tiles_per_s must be > 0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    """What the run's config makes the teacher and student do (from the embed: and distill: sections)."""

    teacher: str
    student: str
    views: int = 1  # embed.views: cached augmented views per tile
    max_tiles_per_slide: int = 0  # embed.max_tiles_per_slide: 0 = every tile
    max_steps: int = 1  # distill.schedule.max_steps
    global_batch: int = 1  # distill.global_batch
    teacher_mode: str = "cached"  # distill.teacher_mode

    @property
    def student_samples(self) -> int:
        """Samples the schedule consumes at most (an early stop ends sooner)."""
        return self.max_steps * self.global_batch


@functools.cache
def architecture(name: str) -> dict[str, float] | None:
    """params, dim, depth, patch, img, extra_tokens and embed_dim of a zoo ViT, from its meta skeleton."""
    from g2l.models.build import skeleton
    from g2l.models.check import _spec_and_weights
    from g2l.models.errors import ModelError

    try:
        spec, _ = _spec_and_weights(name, None)
    except ModelError:
        return None
    model = skeleton(spec.arch, spec.kwargs)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    blocks = getattr(model, "blocks", None)
    if patch is None or blocks is None:  # not a ViT: its FLOPs must be given
        return None
    dim = int(getattr(model, "embed_dim", 0))
    img = getattr(model.patch_embed, "img_size", (224, 224))
    return {
        "params": float(sum(p.numel() for p in model.parameters())),
        "dim": float(dim),
        "depth": float(len(blocks)),
        "patch": float(patch[0] if isinstance(patch, tuple) else patch),
        "img": float(img[0] if isinstance(img, tuple) else img),
        "extra_tokens": float(getattr(model, "num_prefix_tokens", 1)),
        "embed_dim": float(dim * (2 if spec.embedding == "cls_mean" else 1)),
    }


def forward_flops(arch: dict[str, float]) -> float:
    """Forward FLOPs of one image through a ViT: 2 x params x tokens (matmuls) + attention scores."""
    tokens = (arch["img"] / arch["patch"]) ** 2 + arch["extra_tokens"]
    return 2.0 * arch["params"] * tokens + 4.0 * arch["depth"] * tokens**2 * arch["dim"]


def _model_gflops(name: str, override: float, role: str) -> tuple[float, str]:
    if override > 0:
        return override, f"{role} forward {override:.1f} GFLOP/image (pipeline.plan.{role}_gflops)"
    arch = architecture(name)
    if arch is None:
        raise ConfigError(
            f"plan: no architecture figures for {role} {name!r} (not a ViT of the model zoo); set "
            f"pipeline.plan.{role}_gflops"
        )
    gflops = forward_flops(arch) / 1e9
    return gflops, (
        f"{role} {name}: {arch['params'] / 1e6:.0f}M params, forward {gflops:.0f} GFLOP/image "
        f"(2 x params x tokens + attention)"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """The estimate, the counts it rests on, warnings and assumptions."""

    slides: int
    tiles: int
    cached_tiles: int
    views: int
    teacher_mode: str
    teacher_forwards_cached: int
    teacher_forwards_online: int
    student_samples: int
    shard_gb: float
    cache_gb: float
    tiling_pod_hours: float
    teacher_gpu_hours_cached: float
    teacher_gpu_hours_online: float
    teacher_gpu_hours: float  # of the config's teacher_mode
    student_gpu_hours: float
    usd: float | None
    warnings: list[str]
    assumptions: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON output)."""
        return dataclasses.asdict(self)


def estimate(cfg: PlanConfig, work: Workload, *, teacher_dim: int | None = None,
             slides: int | None = None) -> Plan:
    """Estimate a run's counts, storage and GPU-hours from its workload and per-tile costs."""
    n_slides = slides if slides is not None else cfg.slides
    tiles = n_slides * cfg.tiles_per_slide
    per_slide = min(cfg.tiles_per_slide, work.max_tiles_per_slide or cfg.tiles_per_slide)
    cached_tiles = n_slides * per_slide
    cached = cached_tiles * work.views
    samples = work.student_samples
    peak = GPU_PEAK_TFLOPS[cfg.gpu] * 1e12
    t_gflops, t_note = _model_gflops(work.teacher, cfg.teacher_gflops, "teacher")
    s_gflops, s_note = _model_gflops(work.student, cfg.student_gflops, "student")
    dim = teacher_dim or int((architecture(work.teacher) or {}).get("embed_dim", 1536))
    teacher_s = {n: count * t_gflops * 1e9 / (peak * cfg.teacher_mfu)
                 for n, count in (("cached", cached), ("online", samples))}
    # Training one image costs a forward and a backward (about twice the forward): 3x forward FLOPs.
    student_s = samples * 3 * s_gflops * 1e9 / (peak * cfg.student_mfu)
    mode_s = teacher_s[work.teacher_mode]
    warnings: list[str] = []
    if work.teacher_mode == "cached" and cached > samples:
        fit = max(1, samples // max(1, n_slides * work.views))
        warnings.append(
            f"the cache holds {cached:,} teacher forwards but training reads at most {samples:,} samples: "
            f"{1 - samples / cached:.0%} of the teacher compute is never used; set embed.max_tiles_per_slide "
            f"to {fit:,} (or lower embed.views) so the cache matches the step budget, or raise "
            f"distill.schedule.max_steps to {steps_to_read(cached, work.global_batch):,} to read it all"
        )
    source = "the manifest's row count" if slides is not None else "pipeline.plan.slides"
    budget = (f"embed.max_tiles_per_slide {work.max_tiles_per_slide}" if work.max_tiles_per_slide
              else "no embed.max_tiles_per_slide")
    assumptions = [
        f"{n_slides} slides ({source}) x {cfg.tiles_per_slide} tissue tiles/slide "
        "(pipeline.plan.tiles_per_slide: ~150 mm2 of tissue at 0.5 um/px, 256 px tiles)",
        f"cache: {per_slide} tiles/slide ({budget}) x {work.views} view(s) (embed.views); float16 "
        f"[tiles, views, {dim}]; {cfg.tile_kb:g} KB per JPEG tile in the shards",
        f"student: {work.max_steps:,} steps (distill.schedule.max_steps) x {work.global_batch} "
        "(distill.global_batch) samples, an upper bound (early stopping ends sooner); "
        "a training step costs 3x the forward FLOPs",
        f"teacher_mode {work.teacher_mode}: cached = one forward per cached view, online = one per sample",
        t_note,
        s_note,
        f"GPU {cfg.gpu}: {GPU_PEAK_TFLOPS[cfg.gpu]:.0f} TFLOP/s dense bf16 peak; MFU teacher "
        f"{cfg.teacher_mfu:.0%}, student {cfg.student_mfu:.0%} (the DESIGN section 5 targets; replace with "
        "benchmarks/RESULTS.md measurements for your cluster)",
        f"tiling: {cfg.tiling_tiles_per_s:g} tiles/s per pod (cuCIM batched reads)",
    ]
    usd = None
    if cfg.gpu_usd_per_hour > 0:
        usd = (mode_s + student_s) / 3600 * cfg.gpu_usd_per_hour
        assumptions.append(f"GPU price {cfg.gpu_usd_per_hour:g} USD/hour (pipeline.plan.gpu_usd_per_hour)")
    return Plan(
        slides=n_slides,
        tiles=tiles,
        cached_tiles=cached_tiles,
        views=work.views,
        teacher_mode=work.teacher_mode,
        teacher_forwards_cached=cached,
        teacher_forwards_online=samples,
        student_samples=samples,
        shard_gb=tiles * cfg.tile_kb * 1024 / 1e9,
        cache_gb=cached * dim * 2 / 1e9 if work.teacher_mode == "cached" else 0.0,
        tiling_pod_hours=tiles / cfg.tiling_tiles_per_s / 3600,
        teacher_gpu_hours_cached=teacher_s["cached"] / 3600,
        teacher_gpu_hours_online=teacher_s["online"] / 3600,
        teacher_gpu_hours=mode_s / 3600,
        student_gpu_hours=student_s / 3600,
        usd=usd,
        warnings=warnings,
        assumptions=assumptions,
    )


def format_plan(plan: Plan) -> str:
    """Human-readable table of the estimate, then warnings and assumptions."""
    mode = {"cached": "", "online": ""}
    mode[plan.teacher_mode] = "  <- teacher_mode"
    rows = [
        ("slides", f"{plan.slides:,}"),
        ("tiles", f"{plan.tiles:,}"),
        ("tiles in the cache", f"{plan.cached_tiles:,} x {plan.views} view(s)"),
        ("teacher forwards, cached", f"{plan.teacher_forwards_cached:,}{mode['cached']}"),
        ("teacher forwards, online", f"{plan.teacher_forwards_online:,}{mode['online']}"),
        ("student samples", f"{plan.student_samples:,}"),
        ("tile shards", f"{plan.shard_gb:,.1f} GB"),
        ("teacher embedding cache", f"{plan.cache_gb:,.1f} GB"),
        ("tiling", f"{plan.tiling_pod_hours:,.1f} pod-hours"),
        ("teacher embedding", f"{plan.teacher_gpu_hours:,.1f} GPU-hours ({plan.teacher_mode}; cached "
         f"{plan.teacher_gpu_hours_cached:,.1f}, online {plan.teacher_gpu_hours_online:,.1f})"),
        ("student distillation", f"{plan.student_gpu_hours:,.1f} GPU-hours"),
    ]
    if plan.usd is not None:
        rows.append(("GPU cost", f"{plan.usd:,.0f} USD"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.extend(f"warning: {w}" for w in plan.warnings)
    lines.append("assumptions:")
    lines.extend(f"  - {a}" for a in plan.assumptions)
    return "\n".join(lines)


def workload_from_config(config_path: str) -> Workload:
    """The Workload a run config describes (its embed: and distill: sections, validated)."""
    from g2l.config import load_section, load_yaml
    from g2l.distill.config import DistillConfig
    from g2l.embed.config import EmbedConfig

    raw = load_yaml(config_path)
    embed = load_section(EmbedConfig, config_path, section="embed") if "embed" in raw else EmbedConfig()
    distill = (load_section(DistillConfig, config_path, section="distill") if "distill" in raw
               else DistillConfig())
    return Workload(
        teacher=embed.teacher if distill.teacher_mode == "cached" else (distill.teacher or embed.teacher),
        student=distill.student,
        views=embed.views,
        max_tiles_per_slide=embed.max_tiles_per_slide,
        max_steps=distill.schedule.max_steps,
        global_batch=distill.global_batch,
        teacher_mode=distill.teacher_mode,
    )


def plan_from_config(config_path: str, *, slides: int | None = None) -> Plan:
    """Estimate for a run config: the workload from embed:/distill:, assumptions from pipeline.plan."""
    from g2l.config import load_section
    from g2l.pipeline.config import PipelineConfig

    pipe = load_section(PipelineConfig, config_path, section="pipeline")
    work = workload_from_config(config_path)
    return estimate(pipe.plan, work, slides=slides)


def steps_to_read(cached: int, global_batch: int) -> int:
    """Optimiser steps that read every cached view once (to size distill.schedule.max_steps)."""
    return math.ceil(cached / max(1, global_batch))
