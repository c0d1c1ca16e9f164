"""Tiling stage: tissue detection, the tile grid at a target mpp, per-slide outputs, WebDataset shards."""

from g2l.tiling.config import TilingConfig
from g2l.tiling.grid import TilePlan, plan_tiles
from g2l.tiling.runner import TilingResult, run_tiling, tile_slides, write_shards
from g2l.tiling.slide import SlideOutcome
from g2l.tiling.tissue import detect_tissue

__all__ = [
    "SlideOutcome",
    "TilePlan",
    "TilingConfig",
    "TilingResult",
    "detect_tissue",
    "plan_tiles",
    "run_tiling",
    "tile_slides",
    "write_shards",
]
