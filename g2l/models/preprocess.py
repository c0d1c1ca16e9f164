"""Model input preprocessing: uint8 RGB views -> normalised float tensors at the model's input size."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preprocess:
    """What a model expects: square input size in px, per-channel mean/std (0..1 scale), resize mode."""

    input_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        from g2l.config import require

        require(self.input_px > 0, f"preprocess.input_px must be positive, got {self.input_px}")
        require(len(self.mean) == 3 and len(self.std) == 3,
                f"preprocess.mean/std need 3 channels, got {self.mean} / {self.std}")
        require(all(s > 0 for s in self.std), f"preprocess.std must be positive, got {self.std}")
        require(self.interpolation in _INTERPOLATIONS,
                f"preprocess.interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (goes into the cache key and index)."""
        return {"input_px": self.input_px, "mean": [float(m) for m in self.mean],
                "std": [float(s) for s in self.std], "interpolation": self.interpolation}

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 [B, H, W, 3] (or [H, W, 3]) -> normalised `dtype` [B, 3, input_px, input_px].

        Runs on whatever device `images` is on, so workers ship compact uint8 and the GPU normalises.
        The permuted NHWC tensor is already channels-last in memory, which is what the GPU path wants.
        """
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images [B, H, W, 3], got shape {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        if x.shape[-2:] != (self.input_px, self.input_px):
            mode = self.interpolation
            kwargs: dict[str, Any] = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            x = F.interpolate(x, size=(self.input_px, self.input_px), mode=mode, **kwargs)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(dtype)


def from_timm_config(cfg: dict[str, Any], **overrides: Any) -> Preprocess:
    """Preprocess from a `timm.data.resolve_data_config` dict, with per-model overrides (None = keep)."""
    input_size = cfg.get("input_size", (3, 224, 224))
    values: dict[str, Any] = {
        "input_px": int(input_size[-1]),
        "mean": tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        "interpolation": str(cfg.get("interpolation", "bicubic")),
    }
    if values["interpolation"] not in _INTERPOLATIONS:
        values["interpolation"] = "bicubic"
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["mean"] = tuple(float(v) for v in values["mean"])
    values["std"] = tuple(float(v) for v in values["std"])
    return Preprocess(**values)
