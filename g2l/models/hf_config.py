"""A transformers DINOv2 config.json (e.g. histai/hibou-L's) as the timm architecture and kwargs it equals."""

from __future__ import annotations

from typing import Any

from g2l.models.errors import ModelError

HF_DINOV2_TYPES = ("dinov2", "dinov2_with_registers")


def is_hf_dinov2_config(cfg: dict[str, Any]) -> bool:
    """Whether a config.json describes a transformers DINOv2 (with or without registers)."""
    return cfg.get("model_type") in HF_DINOV2_TYPES and "hidden_size" in cfg


def swiglu_hidden(dim: int, mlp_ratio: float) -> int:
    """DINOv2's fused SwiGLU width: two thirds of dim * mlp_ratio, rounded up to a multiple of 8.

    The formula of SwiGLUFFNFused (HistAI/hibou hibou/models/layers/swiglu_ffn.py) and of transformers'
    Dinov2SwiGLUFFN: ViT-L (1024, ratio 4) -> 2736, so w12 is 1024 -> 5472 and w3 2736 -> 1024.
    """
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


def packed_mlp_ratio(dim: int, hidden: int) -> float:
    """The timm `mlp_ratio` whose fc1 has 2 * hidden outputs (timm computes int(dim * mlp_ratio))."""
    ratio = 2 * hidden / dim
    return ratio if int(dim * ratio) == 2 * hidden else (2 * hidden + 0.5) / dim


def timm_from_hf_config(cfg: dict[str, Any], where: str = "config.json") -> tuple[str, dict[str, Any]]:
    """(timm architecture, kwargs) building the skeleton that a converted checkpoint of `cfg` loads into."""
    if not is_hf_dinov2_config(cfg):
        raise ModelError(f"{where}: not a transformers DINOv2 config (model_type {cfg.get('model_type')!r})")
    eps = float(cfg.get("layer_norm_eps", 1e-6))
    if abs(eps - 1e-6) > 1e-12:
        raise ModelError(f"{where}: layer_norm_eps {eps} differs from the 1e-6 of timm's DINOv2 models")
    act = cfg.get("hidden_act", "gelu")
    dim = int(cfg["hidden_size"])
    regs = int(cfg.get("num_register_tokens", 0) or 0)
    ratio = float(cfg.get("mlp_ratio", 4))
    kwargs: dict[str, Any] = {
        "img_size": int(cfg.get("image_size", 518)),
        "patch_size": int(cfg.get("patch_size", 14)),
        "embed_dim": dim,
        "depth": int(cfg["num_hidden_layers"]),
        "num_heads": int(cfg["num_attention_heads"]),
        "init_values": float(cfg.get("layerscale_value", 1.0)),
        "qkv_bias": bool(cfg.get("qkv_bias", True)),
        "reg_tokens": regs,
        "no_embed_class": regs > 0,
        "num_classes": 0,
    }
    if cfg.get("use_swiglu_ffn"):
        kwargs.update(mlp_ratio=packed_mlp_ratio(dim, swiglu_hidden(dim, ratio)),
                      mlp_layer="timm.layers.SwiGLUPacked", act_layer="torch.nn.SiLU")
    elif act != "gelu":
        raise ModelError(f"{where}: hidden_act {act!r} is not supported (timm's DINOv2 MLP is GELU)")
    else:
        kwargs["mlp_ratio"] = ratio
    arch = "vit_large_patch14_reg4_dinov2" if regs else "vit_large_patch14_dinov2"
    return arch, kwargs  # every architecture argument is explicit: the base name only picks the class


# histai/hibou-L's config.json, as its published sibling histai/hibou-b (huggingface.co/histai/hibou-b,
# config.json at 5cc6343) with the ViT-L sizes of HistAI/hibou's vit_large (github.com/HistAI/hibou at
# c453bbe, hibou/models/vision_transformer.py): what `g2l rehearse` writes beside random Hibou-L weights.
HIBOU_L_CONFIG: dict[str, Any] = {
    "architectures": ["Dinov2ModelWithRegisters"],
    "auto_map": {"AutoConfig": "configuration_dinov2.Dinov2Config",
                 "AutoModel": "modeling_dinov2.Dinov2ModelWithRegisters"},
    "model_type": "dinov2",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "mlp_ratio": 4,
    "use_swiglu_ffn": True,
    "num_register_tokens": 4,
    "hidden_act": "gelu",
    "image_size": 224,
    "patch_size": 14,
    "num_channels": 3,
    "layer_norm_eps": 1e-06,
    "layerscale_value": 1.0,
    "qkv_bias": True,
    "apply_layernorm": True,
    "drop_path_rate": 0.0,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}
