"""`g2l pipeline plan`: counts that follow the run config (cached vs online teacher forwards, student
samples), storage and GPU-hours from model FLOPs, and a warning when the cache exceeds what training reads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from g2l.config import ConfigError
from g2l.pipeline.plan import (
    GPU_PEAK_TFLOPS,
    PlanConfig,
    Workload,
    architecture,
    estimate,
    format_plan,
    forward_flops,
    plan_from_config,
)

REPO = Path(__file__).resolve().parents[1]
TEACHER, STUDENT = "hf-hub:bioptimus/H-optimus-0", "hibou-L"


def test_forward_flops_from_the_zoo_match_the_published_figure():
    # DESIGN.md: a ViT-g/14 forward is ~0.6 TFLOP per 224 px tile; ViT-L/14 about a quarter of that.
    assert forward_flops(architecture(TEACHER)) / 1e12 == pytest.approx(0.6, rel=0.05)
    assert forward_flops(architecture(STUDENT)) / 1e12 == pytest.approx(0.16, rel=0.1)
    assert architecture("hf-hub:paige-ai/Virchow2")["embed_dim"] == 2560  # the cache width: CLS ++ mean


def test_estimate_equals_a_hand_computation():
    cfg = PlanConfig(slides=10, tiles_per_slide=100, gpu="a100", teacher_mfu=0.5, student_mfu=0.25,
                     teacher_gflops=600.0, student_gflops=150.0, tile_kb=20.0, tiling_tiles_per_s=10.0,
                     gpu_usd_per_hour=2.0)
    work = Workload(teacher="any", student="any", views=2, max_tiles_per_slide=50, max_steps=10,
                    global_batch=8, teacher_mode="cached")
    plan = estimate(cfg, work, teacher_dim=1536)
    assert (plan.tiles, plan.cached_tiles) == (1000, 500)
    assert plan.teacher_forwards_cached == 500 * 2
    assert plan.teacher_forwards_online == plan.student_samples == 80
    assert plan.teacher_gpu_hours_cached == pytest.approx(1000 * 600e9 / (312e12 * 0.5) / 3600)
    assert plan.teacher_gpu_hours_online == pytest.approx(80 * 600e9 / (312e12 * 0.5) / 3600)
    assert plan.teacher_gpu_hours == plan.teacher_gpu_hours_cached
    assert plan.student_gpu_hours == pytest.approx(80 * 3 * 150e9 / (312e12 * 0.25) / 3600)
    assert plan.cache_gb == pytest.approx(1000 * 1536 * 2 / 1e9)
    assert plan.shard_gb == pytest.approx(1000 * 20 * 1024 / 1e9)
    assert plan.tiling_pod_hours == pytest.approx(1000 / 10 / 3600)
    assert plan.usd == pytest.approx((plan.teacher_gpu_hours + plan.student_gpu_hours) * 2.0)
    # 1000 cached forwards, 80 read: 92% wasted; 80 samples / (10 slides x 2 views) = 4 tiles per slide
    assert len(plan.warnings) == 1
    assert "92% of the teacher compute is never used" in plan.warnings[0]
    assert "embed.max_tiles_per_slide to 4" in plan.warnings[0]
    online = estimate(cfg, Workload(**{**work.__dict__, "teacher_mode": "online"}), teacher_dim=1536)
    assert online.warnings == [] and online.teacher_gpu_hours == online.teacher_gpu_hours_online


def test_estimate_scales_with_gpu_and_mfu():
    work = Workload(teacher=TEACHER, student=STUDENT, views=1, max_steps=100, global_batch=96)
    base = estimate(PlanConfig(), work)
    a100 = estimate(PlanConfig(gpu="a100"), work)
    slow = estimate(PlanConfig(teacher_mfu=0.275), work)
    assert a100.student_gpu_hours / base.student_gpu_hours == pytest.approx(
        GPU_PEAK_TFLOPS["h100"] / GPU_PEAK_TFLOPS["a100"])
    assert slow.teacher_gpu_hours == pytest.approx(2 * base.teacher_gpu_hours)
    assert slow.student_gpu_hours == pytest.approx(base.student_gpu_hours)


def _variant(tmp_path: Path, embed: dict, distill: dict, schedule: dict | None = None) -> str:
    raw = yaml.safe_load((REPO / "configs/brca.yaml").read_text())
    raw["embed"].update(embed)
    raw["distill"].update(distill)
    raw["distill"]["schedule"].update(schedule or {})
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_the_shipped_brca_config_caches_exactly_what_training_reads():
    plan = plan_from_config(str(REPO / "configs/brca.yaml"))
    # 1000 slides x 2880 tiles x 1 view = 30,000 steps x 96 samples
    assert plan.teacher_forwards_cached == 1000 * 2880 * 1 == plan.student_samples == 30_000 * 96
    assert plan.warnings == []


def test_counts_follow_the_config(tmp_path: Path):
    # the former default: 4 views of every tile (8000/slide) = 32M forwards for 2.88M samples
    old = plan_from_config(_variant(tmp_path, {"views": 4, "max_tiles_per_slide": 0}, {}))
    assert old.teacher_forwards_cached == 1000 * 8000 * 4 and old.student_samples == 2_880_000
    assert "91% of the teacher compute is never used" in old.warnings[0]
    assert "embed.max_tiles_per_slide to 720" in old.warnings[0]
    custom = plan_from_config(_variant(tmp_path, {"views": 2, "max_tiles_per_slide": 500},
                                       {"global_batch": 64, "per_device_batch": 32}, {"max_steps": 1000}),
                              slides=300)
    assert custom.cached_tiles == 300 * 500 and custom.teacher_forwards_cached == 300 * 500 * 2
    assert custom.student_samples == custom.teacher_forwards_online == 1000 * 64
    online = plan_from_config(_variant(tmp_path, {}, {"teacher_mode": "online"}))
    assert online.teacher_gpu_hours == online.teacher_gpu_hours_online and online.cache_gb == 0.0


def test_unknown_model_asks_for_its_flops():
    with pytest.raises(ConfigError, match=r"pipeline\.plan\.teacher_gflops"):
        estimate(PlanConfig(), Workload(teacher="my-private-vit", student=STUDENT))


def test_plan_cli_prints_counts_warnings_and_assumptions(tmp_path: Path):
    text = format_plan(plan_from_config(_variant(tmp_path, {"views": 4, "max_tiles_per_slide": 0}, {})))
    for line in ("teacher forwards, cached  32,000,000  <- teacher_mode",
                 "teacher forwards, online  2,880,000", "student samples           2,880,000",
                 "warning: the cache holds 32,000,000", "GPU-hours", "assumptions:", "MFU",
                 "distill.schedule.max_steps"):
        assert line in text, line
    as_json = json.loads(subprocess.run(
        [sys.executable, "-m", "g2l", "pipeline", "plan", "--config", "configs/brca.yaml", "--json",
         "--slides", "500"], cwd=REPO, capture_output=True, text=True, check=True).stdout)
    expected = plan_from_config(str(REPO / "configs/brca.yaml"), slides=500)
    assert as_json["tiles"] == expected.tiles == 500 * 8000
    assert as_json["teacher_forwards_cached"] == 500 * 2880
    assert as_json["teacher_gpu_hours"] == pytest.approx(expected.teacher_gpu_hours)
