"""The tiling stage's configuration: target resolution, tile size, tissue detection, shards, workers."""

from __future__ import annotations

import dataclasses

from g2l.config import require
from g2l.slides import BACKENDS

TISSUE_METHODS = ("otsu_saturation",)
#: JPEG chroma subsampling of re-encoded tiles. 4:2:0 (libjpeg's default) halves colour resolution on both
#: axes: on H&E tiles at quality 90 its mean abs error is ~5.5 grey levels against ~1.5 for 4:4:4, for
#: files about 1.5x smaller.
JPEG_SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:4")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TilingConfig:
    """How slides become tiles (the `tiling:` section); validated at construction."""

    target_mpp: float = 0.5
    tile_px: int = 256
    mpp_tolerance: float = 0.05
    tissue_method: str = "otsu_saturation"
    tissue_threshold: float | None = None
    min_tissue_fraction: float = 0.25
    pen_filter: bool = True
    max_hole_mm2: float = 0.05
    min_tissue_mm2: float = 0.005
    tissue_mpp: float = 8.0
    tissue_level_px: int = 2048
    thumbnail_px: int = 1024
    backend: str = "auto"
    workers: int = 0
    batch_tiles: int = 64
    tiles_per_shard: int = 2000
    jpeg_quality: int = 90
    jpeg_subsampling: str = "4:2:0"
    jpeg_passthrough: bool = True
    fast_jpeg: bool = True
    jpeg_scaled_decode: bool = True
    max_failed_fraction: float = 0.05
    max_attempts: int = 3

    def __post_init__(self) -> None:
        require(
            0.05 <= self.target_mpp <= 50,
            f"tiling.target_mpp must be in 0.05..50 um/px (0.5 is 20x), got {self.target_mpp}",
        )
        require(
            16 <= self.tile_px <= 4096 and self.tile_px % 2 == 0,
            f"tiling.tile_px must be an even number of pixels in 16..4096, got {self.tile_px}",
        )
        require(
            0 <= self.mpp_tolerance < 0.5,
            f"tiling.mpp_tolerance is a relative tolerance in 0..0.5 (e.g. 0.05), got {self.mpp_tolerance}",
        )
        require(
            self.tissue_method in TISSUE_METHODS,
            f"tiling.tissue_method must be one of {', '.join(TISSUE_METHODS)}, got {self.tissue_method!r}",
        )
        require(
            self.tissue_threshold is None or 0 < self.tissue_threshold < 255,
            "tiling.tissue_threshold is a saturation level in 1..254 (or null for Otsu), "
            f"got {self.tissue_threshold}",
        )
        require(
            0 < self.min_tissue_fraction <= 1,
            f"tiling.min_tissue_fraction must be in (0, 1], got {self.min_tissue_fraction}",
        )
        require(self.max_hole_mm2 >= 0, f"tiling.max_hole_mm2 must be >= 0, got {self.max_hole_mm2}")
        require(self.min_tissue_mm2 >= 0, f"tiling.min_tissue_mm2 must be >= 0, got {self.min_tissue_mm2}")
        require(
            0.5 <= self.tissue_mpp <= 64,
            "tiling.tissue_mpp (resolution tissue is detected at) must be in 0.5..64 um/px, "
            f"got {self.tissue_mpp}",
        )
        require(
            128 <= self.tissue_level_px <= 16384,
            f"tiling.tissue_level_px must be in 128..16384, got {self.tissue_level_px}",
        )
        require(
            64 <= self.thumbnail_px <= 8192,
            f"tiling.thumbnail_px must be in 64..8192, got {self.thumbnail_px}",
        )
        require(
            self.backend == "auto" or self.backend in BACKENDS,
            f"tiling.backend must be 'auto' or one of {', '.join(sorted(BACKENDS))}, got {self.backend!r}",
        )
        require(self.workers >= 0, f"tiling.workers must be >= 0 (0 = all cores), got {self.workers}")
        require(
            1 <= self.batch_tiles <= 4096, f"tiling.batch_tiles must be in 1..4096, got {self.batch_tiles}"
        )
        require(self.tiles_per_shard >= 1, f"tiling.tiles_per_shard must be >= 1, got {self.tiles_per_shard}")
        require(
            50 <= self.jpeg_quality <= 100, f"tiling.jpeg_quality must be in 50..100, got {self.jpeg_quality}"
        )
        require(
            self.jpeg_subsampling in JPEG_SUBSAMPLINGS,
            f"tiling.jpeg_subsampling must be one of {', '.join(JPEG_SUBSAMPLINGS)} (4:4:4 keeps colour), "
            f"got {self.jpeg_subsampling!r}",
        )
        require(
            self.max_attempts >= 1,
            f"tiling.max_attempts (interrupted tries before a slide is skipped) must be >= 1, "
            f"got {self.max_attempts}",
        )
        require(
            0 <= self.max_failed_fraction <= 1,
            f"tiling.max_failed_fraction must be in 0..1, got {self.max_failed_fraction}",
        )
