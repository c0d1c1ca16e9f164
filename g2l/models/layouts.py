"""Published checkpoint layouts -> the timm skeleton: DINOv2-style (HistAI/hibou) and HF transformers DINOv2.

Hibou-L is published twice, in neither case as a timm state dict:

- `dinov2`: the original DINOv2 code (github.com/HistAI/hibou, hibou/models/vision_transformer.py and
  layers/swiglu_ffn.py): `cls_token`, `pos_embed` [1, 1 + patches, D] (the CLS position included),
  `register_tokens`, `mask_token`, `blocks.N.attn.qkv`, `blocks.N.mlp.w12` (fused SwiGLU: silu(first
  half) * second half), `blocks.N.mlp.w3`, `blocks.N.ls1.gamma`, ...
- `hf-dinov2`: the Hugging Face repository histai/hibou-L (transformers' DINOv2 with registers and
  `use_swiglu_ffn`): `embeddings.cls_token`, `embeddings.position_embeddings`, `embeddings.register_tokens`,
  `encoder.layer.N.attention.attention.{query,key,value}`, `encoder.layer.N.mlp.weights_in`,
  `encoder.layer.N.layer_scale1.lambda1`, `layernorm`, ...

Both convert to timm's `vit_*_reg4_dinov2` skeleton (`no_embed_class`: the CLS position embedding is
folded into `cls_token`, registers carry none), the same transformation timm applies to DINOv2
checkpoints. The conversions are pure tensor reshuffles, so they run on meta tensors too: that is how
`g2l models check` compares a checkpoint's header with a model without reading any weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

Tensor = torch.Tensor
LAYOUTS = ("timm", "dinov2", "hf-dinov2")

# Wrappers seen around the same weights (DDP, DINOv2 training checkpoints, HF task heads).
_PREFIXES = ("module.", "teacher.backbone.", "student.backbone.", "backbone.", "dinov2_with_registers.",
             "dinov2.")


class LayoutError(ValueError):
    """A checkpoint's tensors do not follow the layout they claim (or any known one)."""


def strip_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop wrapper prefixes every key shares (`module.`, `backbone.`, `dinov2.`, ...)."""
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def detect_layout(keys: Any) -> str:
    """Which layout a set of state-dict keys follows: hf-dinov2, dinov2 (original) or timm."""
    names = set(strip_prefixes(dict.fromkeys(keys, None)))  # type: ignore[arg-type]
    if any(k.startswith("embeddings.") for k in names) and any(k.startswith("encoder.layer.") for k in names):
        return "hf-dinov2"
    if "register_tokens" in names or "mask_token" in names or any(".mlp.w12." in k for k in names):
        return "dinov2"
    return "timm"


def _unchunk(key: str) -> str:
    """DINOv2's FSDP `block_chunks` name blocks `blocks.<chunk>.<index>.`; timm has `blocks.<index>.`."""
    return re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)


def dinov2_to_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Original DINOv2 (HistAI/hibou) names -> timm names; CLS position folded into the CLS token."""
    src = {_unchunk(k): v for k, v in strip_prefixes(state).items()}
    out: dict[str, Tensor] = {}
    src.pop("mask_token", None)  # only used by DINOv2's masked-image training
    if "register_tokens" in src:  # with registers timm uses no_embed_class: fold the CLS position in
        if "cls_token" not in src or "pos_embed" not in src:
            raise LayoutError("dinov2 layout: cls_token and pos_embed are required")
        pos = src.pop("pos_embed")
        out["cls_token"] = src.pop("cls_token") + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
        out["reg_token"] = src.pop("register_tokens")
    for key, value in src.items():
        out[re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", key))] = value
    return out


def timm_to_dinov2(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """timm names -> the original DINOv2 layout (the inverse of `dinov2_to_timm`, zero mask token)."""
    src = dict(state)
    zero = torch.zeros_like(src["cls_token"])
    out: dict[str, Tensor] = {"mask_token": torch.zeros_like(zero[0])}
    if "reg_token" in src:
        out["pos_embed"] = torch.cat([zero, src.pop("pos_embed")], dim=1)
        out["register_tokens"] = src.pop("reg_token")
    for key, value in src.items():
        out[re.sub(r"\.mlp\.fc1\.", ".mlp.w12.", re.sub(r"\.mlp\.fc2\.", ".mlp.w3.", key))] = value
    return out


_HF_BLOCK = {  # transformers Dinov2 layer -> timm block (qkv handled separately)
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.weights_in": "mlp.fc1",  # SwiGLU: silu(first half) * second half, as timm's SwiGLUPacked
    "mlp.weights_out": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_TOP = {
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "embeddings.register_tokens": "reg_token",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def hf_dinov2_to_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """transformers DINOv2 (with registers) names -> timm; q, k, v fused into one qkv projection."""
    src = strip_prefixes(state)
    out: dict[str, Tensor] = {}
    if "embeddings.cls_token" not in src or "embeddings.position_embeddings" not in src:
        raise LayoutError("hf-dinov2 layout: embeddings.cls_token and embeddings.position_embeddings are "
                          "required")
    pos = src.pop("embeddings.position_embeddings")
    if "embeddings.register_tokens" in src:  # timm's no_embed_class: CLS position folded into the token
        out["cls_token"] = src.pop("embeddings.cls_token") + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
    else:
        out["cls_token"], out["pos_embed"] = src.pop("embeddings.cls_token"), pos
    src.pop("embeddings.mask_token", None)
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in src.items():
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        m = re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$", key)
        if m is None:
            out[key] = value  # unknown: kept, so the caller reports it as unexpected
            continue
        block, name, kind = int(m.group(1)), m.group(2), m.group(3)
        attn = re.match(r"attention\.attention\.(query|key|value)$", name)
        if attn is not None:
            qkv.setdefault((block, kind), {})[attn.group(1)] = value
            continue
        inner = f"{name}.{kind}" if kind == "lambda1" else name
        mapped = _HF_BLOCK.get(inner)
        if mapped is None:
            out[key] = value
            continue
        out[f"blocks.{block}.{mapped}" + ("" if kind == "lambda1" else f".{kind}")] = value
    for (block, kind), parts in sorted(qkv.items()):
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise LayoutError(f"hf-dinov2 layout: encoder.layer.{block}.attention.attention lacks "
                              f"{', '.join(missing)}.{kind}")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


def timm_to_hf_dinov2(state: Mapping[str, Tensor], *, swiglu: bool = True) -> dict[str, Tensor]:
    """timm names -> the transformers DINOv2-with-registers layout (the inverse of `hf_dinov2_to_timm`)."""
    src = dict(state)
    top = {v: k for k, v in _HF_TOP.items()}
    mlp = {"mlp.fc1": "mlp.weights_in", "mlp.fc2": "mlp.weights_out"} if swiglu else {}
    block_names = {v: k for k, v in _HF_BLOCK.items() if not k.startswith("mlp.")}
    block_names.update(mlp or {"mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"})
    pos = src.pop("pos_embed")
    zero = torch.zeros_like(src["cls_token"])
    if "reg_token" in src:
        pos = torch.cat([zero, pos], dim=1)
    out: dict[str, Tensor] = {"embeddings.cls_token": src.pop("cls_token"),
                              "embeddings.position_embeddings": pos,
                              "embeddings.mask_token": torch.zeros_like(zero[0])}
    for key, value in src.items():
        if key in top:
            out[top[key]] = value
            continue
        m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$", key)
        if m is None:
            raise LayoutError(f"timm -> hf-dinov2: no counterpart for {key}")
        block, name, kind = m.group(1), m.group(2), m.group(3)
        prefix = f"encoder.layer.{block}."
        if name == "attn.qkv":
            for part, chunk in zip(("query", "key", "value"), value.chunk(3), strict=True):
                out[f"{prefix}attention.attention.{part}.{kind}"] = chunk
        elif kind == "gamma":
            out[prefix + block_names[f"{name}.gamma"]] = value
        else:
            out[f"{prefix}{block_names[name]}.{kind}"] = value
    return out


_TO_TIMM: dict[str, Callable[[Mapping[str, Tensor]], dict[str, Tensor]]] = {
    "timm": lambda s: dict(strip_prefixes(s)),
    "dinov2": dinov2_to_timm,
    "hf-dinov2": hf_dinov2_to_timm,
}


def to_timm(state: Mapping[str, Tensor], layout: str | None = None) -> tuple[dict[str, Tensor], str]:
    """(the state in timm names, the layout it came in); `layout` None detects it from the keys."""
    found = layout or detect_layout(state.keys())
    if found not in _TO_TIMM:
        raise LayoutError(f"unknown checkpoint layout {found!r}; known: {', '.join(LAYOUTS)}")
    return _TO_TIMM[found](state), found
