"""A reference of the original DINOv2 code as HistAI/hibou publishes it, for the Hibou-L layout tests.

Written for these tests from the structure of github.com/HistAI/hibou at c453bbe (hibou/__init__.py
build_model, hibou/models/vision_transformer.py DinoVisionTransformer.prepare_tokens_with_masks /
forward_features / vit_large, hibou/models/layers/{attention,block,layer_scale,swiglu_ffn,patch_embed}.py),
without xFormers (the published code falls back to these same eager paths when it is absent). The
parameter names are the published checkpoint's names because the modules are named as there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLUFFNFused(nn.Module):
    """swiglu_ffn.py: hidden = (int(hidden * 2 / 3) + 7) // 8 * 8; w12 fused, silu(first half) * second."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Attention(nn.Module):
    """attention.py Attention: fused qkv, q scaled before q @ k^T."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """layer_scale.py: x * gamma."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """block.py Block (eval path): x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, init: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim, init)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLUFFNFused(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """patch_embed.py: a strided convolution, flattened to tokens."""

    def __init__(self, img: int, patch: int, dim: int) -> None:
        super().__init__()
        self.num_patches = (img // patch) ** 2
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    """vision_transformer.py with ffn_layer="swiglufused", block_chunks=0, as hibou's build_model makes it."""

    def __init__(self, *, img_size: int = 224, patch_size: int = 14, embed_dim: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_register_tokens: int = 4,
                 init_values: float = 1e-5) -> None:
        super().__init__()
        self.num_register_tokens = num_register_tokens
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, init_values) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """CLS prepended, positions added (CLS included), then the registers inserted after CLS."""
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        assert x.shape[1] == self.pos_embed.shape[1], "the reference does not interpolate positions"
        x = x + self.pos_embed
        return torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """head(x_norm_clstoken): the normalised CLS token (hibou's `model(data)`)."""
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


def vit_large_hibou(**overrides: object) -> DinoVisionTransformer:
    """Hibou-L: vit_large (1024, depth 24, 16 heads, ratio 4), patch 14, 4 registers, layerscale 1e-5."""
    return DinoVisionTransformer(**{"img_size": 224, "patch_size": 14, "embed_dim": 1024, "depth": 24,  # type: ignore[arg-type]
                                    "num_heads": 16, "mlp_ratio": 4.0, "num_register_tokens": 4,
                                    "init_values": 1e-5, **overrides})
