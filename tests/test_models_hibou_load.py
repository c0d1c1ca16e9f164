"""Hibou-L loads from both published layouts and embeds exactly as the published implementations do.

The references are the implementations Hibou-L is published with, at small sizes (same code paths:
DINOv2 with 4 registers and the fused SwiGLU FFN, fewer layers and a narrower width):
- Hugging Face layout: transformers' Dinov2WithRegistersModel (transformers 4.x, models/
  dinov2_with_registers/modeling_dinov2_with_registers.py) with `use_swiglu_ffn`, which is what
  histai/hibou-L's custom "Dinov2ModelWithRegisters" code is; its embedding is `pooler_output`, the
  normalised CLS token (HistAI/hibou example.ipynb compares `hf_output.pooler_output` with `model(data)`).
- Original layout: tests/_dinov2_reference.py, the DINOv2 code of github.com/HistAI/hibou at c453bbe.
Both checkpoints are written with the published key names by the reference modules themselves
(transformers' save_pretrained; torch.save of the reference's state_dict, as hibou's weights are).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from g2l.models import build_model, embed, weights_sha256
from tests._dinov2_reference import DinoVisionTransformer

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "mlp_ratio": 4,
         "use_swiglu_ffn": True, "num_register_tokens": 4, "image_size": 56, "patch_size": 14,
         "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "qkv_bias": True}
# histai/hibou-b/-L's config.json spells the type "dinov2" with custom code (huggingface.co/histai/hibou-b,
# config.json at 5cc6343); transformers 4.x itself writes "dinov2_with_registers".
PUBLISHED_STYLE = {"architectures": ["Dinov2ModelWithRegisters"], "model_type": "dinov2",
                   "auto_map": {"AutoConfig": "configuration_dinov2.Dinov2Config",
                                "AutoModel": "modeling_dinov2.Dinov2ModelWithRegisters"}}
HIBOU_PREPROCESSOR = {"crop_size": {"height": 56, "width": 56}, "do_normalize": True,
                      "image_mean": [0.7068, 0.5755, 0.722], "image_std": [0.195, 0.2316, 0.1816],
                      "resample": 3, "size": {"shortest_edge": 56}}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    # every tensor random (registers, layer scales, norms included), so no part of the mapping hides
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def _hf_reference(seed: int = 0):
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**SMALL)).eval()
    _randomise(model, seed)
    return model


def _original_from_hf(hf) -> DinoVisionTransformer:
    """The same weights in the original DINOv2 module, mapped here by hand (not by g2l's converter)."""
    ref = DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=64, depth=2, num_heads=4, mlp_ratio=4.0,
                                num_register_tokens=4, init_values=1.0).eval()
    src = hf.state_dict()
    with torch.no_grad():
        ref.cls_token.copy_(src["embeddings.cls_token"])
        ref.pos_embed.copy_(src["embeddings.position_embeddings"])
        ref.register_tokens.copy_(src["embeddings.register_tokens"])
        ref.mask_token.copy_(src["embeddings.mask_token"])
        ref.patch_embed.proj.weight.copy_(src["embeddings.patch_embeddings.projection.weight"])
        ref.patch_embed.proj.bias.copy_(src["embeddings.patch_embeddings.projection.bias"])
        for i, blk in enumerate(ref.blocks):
            p = f"encoder.layer.{i}."
            for kind in ("weight", "bias"):
                qkv = [src[f"{p}attention.attention.{n}.{kind}"] for n in ("query", "key", "value")]
                getattr(blk.attn.qkv, kind).copy_(torch.cat(qkv))
                getattr(blk.attn.proj, kind).copy_(src[f"{p}attention.output.dense.{kind}"])
                getattr(blk.norm1, kind).copy_(src[f"{p}norm1.{kind}"])
                getattr(blk.norm2, kind).copy_(src[f"{p}norm2.{kind}"])
                getattr(blk.mlp.w12, kind).copy_(src[f"{p}mlp.weights_in.{kind}"])
                getattr(blk.mlp.w3, kind).copy_(src[f"{p}mlp.weights_out.{kind}"])
            blk.ls1.gamma.copy_(src[f"{p}layer_scale1.lambda1"])
            blk.ls2.gamma.copy_(src[f"{p}layer_scale2.lambda1"])
        ref.norm.weight.copy_(src["layernorm.weight"])
        ref.norm.bias.copy_(src["layernorm.bias"])
    return ref


def _images(n: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (n, 56, 56, 3), generator=gen, dtype=torch.uint8)


def _hf_dir(tmp_path: Path, hf, published_style: bool) -> Path:
    d = tmp_path / "hibou-hf"
    hf.save_pretrained(d, safe_serialization=True)  # config.json + model.safetensors, published names
    if published_style:
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, **PUBLISHED_STYLE}))
        (d / "preprocessor_config.json").write_text(json.dumps(HIBOU_PREPROCESSOR))
    return d


@pytest.mark.parametrize("published_style", [True, False], ids=["hibou-config", "transformers-config"])
def test_hugging_face_layout_loads_and_embeds_as_transformers(tmp_path: Path, published_style: bool) -> None:
    hf = _hf_reference()
    d = _hf_dir(tmp_path, hf, published_style)
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), "pt") as f:
        assert "encoder.layer.0.mlp.weights_in.weight" in set(f.keys())  # really the published names
    loaded = build_model(str(d))
    x = loaded.preprocess(_images())
    with torch.no_grad():
        ours = embed(loaded, x)
        reference = hf(pixel_values=x).pooler_output
    assert loaded.embed_dim == 64
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)
    if published_style:  # the snapshot's own normalisation
        assert loaded.preprocess.mean == (0.7068, 0.5755, 0.722) and loaded.preprocess.input_px == 56


def test_original_layout_loads_and_embeds_as_the_hibou_code(tmp_path: Path) -> None:
    hf = _hf_reference(seed=1)
    ref = _original_from_hf(hf)
    d = tmp_path / "hibou-original"
    d.mkdir()
    torch.save(ref.state_dict(), d / "model.pth")  # what hibou's build_model(weights_path) torch.loads
    (d / "config.json").write_text(json.dumps({**SMALL, **PUBLISHED_STYLE}))  # the architecture, for g2l
    loaded = build_model(str(d))
    x = loaded.preprocess(_images())
    with torch.no_grad():
        torch.testing.assert_close(embed(loaded, x), ref(x), rtol=0, atol=1e-4)


def test_both_published_layouts_give_the_same_model(tmp_path: Path) -> None:
    hf = _hf_reference(seed=2)
    ref = _original_from_hf(hf)
    x = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # the two published implementations agree on these weights ...
        torch.testing.assert_close(ref(x), hf(pixel_values=x).pooler_output, rtol=0, atol=1e-5)
    from_hf = build_model(str(_hf_dir(tmp_path, hf, published_style=True)))
    d = tmp_path / "original"
    d.mkdir()
    torch.save({"model": {f"module.{k}": v for k, v in ref.state_dict().items()}}, d / "model.pth")  # wrapped
    (d / "config.json").write_text((tmp_path / "hibou-hf" / "config.json").read_text())
    from_original = build_model(str(d))
    # ... and g2l turns both checkpoints into the very same tensors, so the embeddings are identical
    assert from_hf.weights_sha256 == from_original.weights_sha256 == weights_sha256(from_original.model)
    with torch.no_grad():
        assert torch.equal(embed(from_hf, x), embed(from_original, x))


def test_registered_hibou_l_takes_weights_in_either_layout_by_name(tmp_path: Path) -> None:
    # `build_model("hibou-L", weights=...)` picks the layout from the keys; a checkpoint of another
    # architecture is refused with the tensors that do not fit and the command that lists them all
    hf = _hf_reference()
    d = _hf_dir(tmp_path, hf, published_style=True)
    with pytest.raises(ValueError, match=r"hf-dinov2 layout.*g2l models check hibou-L"):
        build_model("hibou-L", weights=d / "model.safetensors")
