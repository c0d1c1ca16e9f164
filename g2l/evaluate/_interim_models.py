"""Interim stand-in for g2l.models (helper embed) until it merges: tiny seeded timm ViTs only."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch
import torch.nn.functional as F

_TINY = {
    "tiny-vit-teacher": ({"embed_dim": 64}, 1234),
    "tiny-vit-student": ({"embed_dim": 48}, 4321),
}


class ModelError(ValueError):
    """A model cannot be built."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preprocess:
    """Resize + normalise uint8 NHWC to float NCHW."""

    input_px: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,H,W,3] -> float [B,3,px,px]."""
        if images.ndim == 3:
            images = images.unsqueeze(0)
        x = images.permute(0, 3, 1, 2).float().div(255.0)
        x = F.interpolate(
            x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False, antialias=True
        )
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LoadedModel:
    """Model + identity."""

    model: torch.nn.Module
    name: str
    embed_dim: int
    preprocess: Preprocess
    weights_sha256: str
    embedding: str = "cls"


def build_model(name: str, weights: Any = None, device: str = "cpu") -> LoadedModel:
    """Tiny seeded ViTs by name."""
    import timm

    if name not in _TINY:
        raise ModelError(f"unknown model {name!r} (interim zoo: {', '.join(_TINY)})")
    kw, seed = _TINY[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=224,
            patch_size=32,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            num_classes=0,
            **kw,
        )
    model.eval()
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    model.to(device)
    return LoadedModel(
        model=model,
        name=name,
        embed_dim=kw["embed_dim"],
        preprocess=Preprocess(),
        weights_sha256=h.hexdigest(),
    )


def embed(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """CLS token after the final norm."""
    return model.model.forward_features(x)[:, 0]
