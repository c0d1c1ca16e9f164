"""Tiling stage: tissue detection, the tile grid at a target mpp, per-slide outputs, WebDataset shards."""

from g2l.tiling.config import TilingConfig
from g2l.tiling.runner import TilingResult, run_tiling, tile_slides, write_shards
from g2l.tiling.tissue import detect_tissue

__all__ = ["TilingConfig", "TilingResult", "detect_tissue", "run_tiling", "tile_slides", "write_shards"]
