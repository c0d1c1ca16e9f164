"""The distill config: defaults from the paper, validation naming key and fix, YAML sections, strategy."""

from __future__ import annotations

from pathlib import Path

import pytest

from g2l.config import ConfigError, load_section
from g2l.distill.config import DistillConfig
from g2l.distill.schedule import lr_factor

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_g2l() -> None:
    cfg = DistillConfig()
    assert (cfg.loss.name, cfg.loss.alpha, cfg.optim.lr, cfg.optim.weight_decay) == (
        "logsum",
        4.0,
        1e-4,
        0.05,
    )
    assert cfg.strategy == "ddp" and cfg.teacher_mode == "cached"


def test_global_batch_gives_accumulation_per_world_size() -> None:
    cfg = DistillConfig(per_device_batch=4, global_batch=16)
    assert cfg.grad_accum_steps(1) == 4 and cfg.grad_accum_steps(2) == 2 and cfg.grad_accum_steps(4) == 1
    with pytest.raises(ConfigError, match="global_batch"):
        cfg.grad_accum_steps(3)


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match="distill.strategy"):
        DistillConfig(strategy="zero3")
    with pytest.raises(ConfigError, match="teacher_mode"):
        DistillConfig(teacher_mode="live")


def test_yaml_selects_fsdp_and_online(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("distill:\n  strategy: fsdp\n  teacher_mode: online\n  loss: {name: cosine}\n")
    cfg = load_section(DistillConfig, path, section="distill")
    assert cfg.strategy == "fsdp" and cfg.teacher_mode == "online" and cfg.loss.name == "cosine"
    path.write_text("distill:\n  lossy: 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_section(DistillConfig, path, section="distill")


@pytest.mark.parametrize("name", ["demo", "brca", "prad"])
def test_shipped_configs_load(name: str) -> None:
    load_section(DistillConfig, REPO / "configs" / f"{name}.yaml", section="distill")


def test_schedule_warms_up_then_decays_to_floor() -> None:
    cfg = DistillConfig().with_max_steps(100).schedule
    cfg = type(cfg)(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
