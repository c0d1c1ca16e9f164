"""Configuration of the teacher embedding cache (the `embed:` section)."""

from __future__ import annotations

import dataclasses

from g2l.config import require
from g2l.models.zoo import EMBEDDINGS
from g2l.tile_budget import TileBudget
from g2l.views import ViewSpec

PRECISIONS = ("auto", "fp32", "bf16")


_VIEW_DEFAULTS = ViewSpec()


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbedConfig:
    """Which teacher embeds which views, and how fast (batch, workers, device) - the latter not in the key."""

    teacher: str = "tiny-vit-teacher"
    weights: str | None = None
    embedding: str = "auto"  # auto: the model's own pooling; cls | cls_mean
    # view spec (part of the cache key); ViewSpec holds the defaults, so they live in one place
    views: int = _VIEW_DEFAULTS.views
    seed: int = _VIEW_DEFAULTS.seed
    crop_px: int = _VIEW_DEFAULTS.crop_px
    hflip_p: float = _VIEW_DEFAULTS.hflip_p
    vflip_p: float = _VIEW_DEFAULTS.vflip_p
    color_jitter: tuple[float, float, float, float] = _VIEW_DEFAULTS.color_jitter
    color_jitter_p: float = _VIEW_DEFAULTS.color_jitter_p
    blur_p: float = _VIEW_DEFAULTS.blur_p
    blur_sigma: tuple[float, float] = _VIEW_DEFAULTS.blur_sigma
    blur_kernel_px: int = _VIEW_DEFAULTS.blur_kernel_px
    # tile budget (part of the key when > 0): at most this many tiles per slide, seeded, tissue-weighted
    max_tiles_per_slide: int = 0
    tile_seed: int = 0
    # execution (never part of the key)
    batch_size: int = 64
    num_workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False

    def __post_init__(self) -> None:
        require(bool(self.teacher), "embed.teacher must name a model (see `g2l.models.known_models()`)")
        require(self.embedding == "auto" or self.embedding in EMBEDDINGS,
                f"embed.embedding must be auto or one of {EMBEDDINGS}, got {self.embedding!r}")
        require(self.batch_size >= 1, f"embed.batch_size must be >= 1, got {self.batch_size}")
        require(self.num_workers >= 0, f"embed.num_workers must be >= 0, got {self.num_workers}")
        require(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                f"embed.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        require(self.precision in PRECISIONS,
                f"embed.precision must be one of {PRECISIONS}, got {self.precision!r}")
        self.view_spec()  # validates the view keys with their own messages
        self.tile_budget()

    def tile_budget(self) -> TileBudget:
        """The TileBudget these settings describe (inactive when max_tiles_per_slide is 0)."""
        return TileBudget(max_tiles_per_slide=self.max_tiles_per_slide, seed=self.tile_seed)

    def view_spec(self) -> ViewSpec:
        """The ViewSpec these settings describe."""
        return ViewSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ViewSpec)})
