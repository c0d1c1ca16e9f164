"""`g2l pipeline plan`: tiles, storage and GPU-hours from per-tile costs and model FLOPs, with assumptions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from g2l.config import ConfigError
from g2l.pipeline.plan import ARCHITECTURES, GPU_PEAK_TFLOPS, PlanConfig, estimate, forward_flops

REPO = Path(__file__).resolve().parents[1]
TEACHER, STUDENT = "hf-hub:bioptimus/H-optimus-0", "vit_large_patch14_reg4_dinov2"


def test_teacher_forward_flops_match_the_published_figure():
    # DESIGN.md: a ViT-g/14 forward is ~0.6 TFLOP per 224 px tile; ViT-L/14 about a quarter of that.
    assert forward_flops(ARCHITECTURES[TEACHER]) / 1e12 == pytest.approx(0.6, rel=0.05)
    assert forward_flops(ARCHITECTURES[STUDENT]) / 1e12 == pytest.approx(0.16, rel=0.1)


def test_estimate_equals_a_hand_computation():
    cfg = PlanConfig(
        slides=10,
        tiles_per_slide=100,
        views=2,
        gpu="a100",
        teacher_mfu=0.5,
        student_mfu=0.25,
        teacher_gflops=600.0,
        student_gflops=150.0,
        tile_kb=20.0,
        distill_epochs=3.0,
        tiling_tiles_per_s=10.0,
        gpu_usd_per_hour=2.0,
    )
    plan = estimate(cfg, teacher="any", student="any", teacher_dim=1536)
    images = 10 * 100 * 2
    assert plan.tiles == 1000
    assert plan.teacher_gpu_hours == pytest.approx(images * 600e9 / (312e12 * 0.5) / 3600)
    assert plan.student_gpu_hours == pytest.approx(images * 3 * 3 * 150e9 / (312e12 * 0.25) / 3600)
    assert plan.cache_gb == pytest.approx(images * 1536 * 2 / 1e9)
    assert plan.shard_gb == pytest.approx(1000 * 20 * 1024 / 1e9)
    assert plan.tiling_pod_hours == pytest.approx(1000 / 10 / 3600)
    assert plan.usd == pytest.approx((plan.teacher_gpu_hours + plan.student_gpu_hours) * 2.0)


def test_estimate_scales_with_slides_gpu_and_mfu():
    base = estimate(PlanConfig(), teacher=TEACHER, student=STUDENT)
    double = estimate(PlanConfig(slides=2000), teacher=TEACHER, student=STUDENT)
    a100 = estimate(PlanConfig(gpu="a100"), teacher=TEACHER, student=STUDENT)
    slow = estimate(PlanConfig(teacher_mfu=0.275), teacher=TEACHER, student=STUDENT)
    assert double.teacher_gpu_hours == pytest.approx(2 * base.teacher_gpu_hours)
    assert double.cache_gb == pytest.approx(2 * base.cache_gb)
    assert a100.student_gpu_hours / base.student_gpu_hours == pytest.approx(
        GPU_PEAK_TFLOPS["h100"] / GPU_PEAK_TFLOPS["a100"]
    )
    assert slow.teacher_gpu_hours == pytest.approx(2 * base.teacher_gpu_hours)
    assert slow.student_gpu_hours == pytest.approx(base.student_gpu_hours)


def test_unknown_model_asks_for_its_flops():
    with pytest.raises(ConfigError, match=r"pipeline\.plan\.teacher_gflops"):
        estimate(PlanConfig(), teacher="my-private-vit", student=STUDENT)


def test_plan_cli_prints_estimate_and_assumptions():
    env = {**os.environ}
    text = subprocess.run(
        [sys.executable, "-m", "g2l", "pipeline", "plan", "--config", "configs/brca.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in (
        "tiles",
        "teacher embedding",
        "student distillation",
        "GPU-hours",
        "assumptions:",
        "MFU",
        "TFLOP/s",
        "tiles/slide",
    ):
        assert line in text
    as_json = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "g2l",
                "pipeline",
                "plan",
                "--config",
                "configs/brca.yaml",
                "--json",
                "--slides",
                "500",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    expected = estimate(PlanConfig(slides=1000), teacher=TEACHER, student="hibou-L", slides=500)
    assert as_json["tiles"] == expected.tiles == 500 * 8000
    assert as_json["teacher_gpu_hours"] == pytest.approx(expected.teacher_gpu_hours)
