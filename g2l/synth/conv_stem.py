"""A convolutional stem for the demo's small ViTs (Xiao et al. 2021: early convolutions help ViTs).

A ViT's patchify stem is one strided linear layer; trained from scratch on a few thousand tiles it
learns slowly (the demo teacher sat at 50% training accuracy after 8 epochs). Stacked 3x3 stride-2
convolutions with BatchNorm and GELU, ending in a 3x3 projection to the embedding width, give the same
token grid and learn in a fraction of the steps. It is timm's `PatchEmbed` with `proj` replaced, so a
zoo entry uses it through `embed_layer: g2l.synth.conv_stem.ConvStemPatchEmbed`.
"""

from __future__ import annotations

from typing import Any

from timm.layers import PatchEmbed
from torch import nn


class ConvStemPatchEmbed(PatchEmbed):
    """timm PatchEmbed whose projection is log2(patch) stride-2 3x3 convolutions (patch 8, 16 or 32)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        patch = self.patch_size[0]
        if patch not in (8, 16, 32) or self.patch_size[0] != self.patch_size[1]:
            raise ValueError(f"ConvStemPatchEmbed needs a square patch of 8, 16 or 32 px, got "
                             f"{self.patch_size}")
        dim = self.proj.out_channels
        in_chans = self.proj.in_channels
        stages = patch.bit_length() - 1  # stride-2 convolutions in total
        widths = [max(8, dim // 2 ** (stages - 2 - i)) for i in range(stages - 1)]  # ..., dim/2, dim
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.GELU()]
            channels = width
        layers.append(nn.Conv2d(channels, dim, 3, 2, 1))
        self.proj = nn.Sequential(*layers)  # type: ignore[assignment]
