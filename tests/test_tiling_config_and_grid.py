"""TilingConfig validation and YAML loading; level choice, read size and size0 for common scanners."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from g2l.config import ConfigError, load_section
from g2l.tiling import TilingConfig
from g2l.tiling.grid import LevelError, grid, plan_tiles

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    config = load_section(TilingConfig, path, section="tiling")
    # The paper's tiles: 256 px at 0.5 um/px (128 um). The demo's small ViTs see the same 128 um at 1 um/px.
    expected = (1.0, 128) if path.name == "demo.yaml" else (0.5, 256)
    assert (config.target_mpp, config.tile_px) == expected


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"target_mpp": 0}, "target_mpp"),
        ({"tile_px": 255}, "tile_px"),
        ({"min_tissue_fraction": 1.5}, "min_tissue_fraction"),
        ({"tissue_method": "magic"}, "tissue_method"),
        ({"jpeg_quality": 10}, "jpeg_quality"),
    ],
)
def test_bad_values_name_the_key(bad: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"tiling.{key}"):
        TilingConfig(**bad)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tiling:\n  tile_size: 256\n")
    with pytest.raises(ConfigError, match="tile_size.*valid keys"):
        load_section(TilingConfig, path, section="tiling")


def test_cli_style_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tiling:\n  target_mpp: 1.0\n")
    assert (
        load_section(TilingConfig, path, section="tiling", target_mpp=0.25, tile_px=None).target_mpp == 0.25
    )


def test_40x_svs_reads_level0_at_512_and_size0_is_512() -> None:
    plan = plan_tiles(0.25, (1.0, 4.0, 16.0), target_mpp=0.5, tile_px=256)
    assert (plan.level, plan.read_px, plan.size0, plan.identity) == (0, 512, 512, False)


def test_a_level_at_the_target_is_read_directly() -> None:
    plan = plan_tiles(0.25, (1.0, 2.0, 8.0), target_mpp=0.5, tile_px=256)
    assert (plan.level, plan.read_px, plan.size0, plan.identity) == (1, 256, 512, True)
    plan = plan_tiles(0.5, (1.0, 4.0), target_mpp=0.5, tile_px=256)
    assert (plan.level, plan.read_px, plan.size0) == (0, 256, 256)


def test_near_target_level_within_tolerance_is_used_as_is() -> None:
    plan = plan_tiles(0.2527, (1.0, 2.0, 8.0), target_mpp=0.5, tile_px=256, tolerance=0.05)
    assert (plan.level, plan.read_px, plan.size0) == (1, 256, 512)
    strict = plan_tiles(0.2527, (1.0, 2.0, 8.0), target_mpp=0.5, tile_px=256, tolerance=0.0)
    assert (strict.level, strict.read_px, strict.size0) == (0, 507, 507)


def test_slide_coarser_than_target_tells_the_user_to_raise_target_mpp() -> None:
    with pytest.raises(LevelError, match="raise tiling.target_mpp to at least 0.9524") as info:
        plan_tiles(1.0, (1.0, 4.0), target_mpp=0.5, tile_px=256)
    assert "lower" not in str(info.value)
    # The number the message names works: that target plans level 0 of the same slide.
    plan = plan_tiles(1.0, (1.0, 4.0), target_mpp=0.9524, tile_px=256)
    assert plan.level == 0


def test_grid_is_anchored_at_the_origin_with_whole_tiles_only() -> None:
    xs, ys = grid(1100, 600, 512)
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == [(0, 0), (512, 0)]
    xs, ys = grid(1024, 1024, 256)
    assert len(xs) == 16 and np.all(np.diff(ys) >= 0)


def test_tissue_is_found_on_a_small_level_of_a_huge_slide() -> None:
    """Memory stays bounded: a 100k x 80k px 40x slide is never read whole for tissue detection."""
    from g2l.tiling.slide import tissue_image_px

    dims = (100_000, 80_000)
    levels = [(100_000 // f, 80_000 // f) for f in (1, 4, 16, 64)]
    px = tissue_image_px(dims, levels, 0.25, 512, TilingConfig())
    assert 1000 <= px <= 2048  # ~12 um/px, at most tissue_level_px
    single_level = tissue_image_px(dims, levels[:1], 0.25, 512, TilingConfig())
    assert single_level <= 2048
