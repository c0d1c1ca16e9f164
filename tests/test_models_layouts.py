"""Every zoo entry at full size: its tensors' names and shapes equal its native implementation's.

Built on the meta device (no memory, no weights), so a 1.1B-parameter ViT-g costs a second. "Native"
means the code and configuration the model's publishers give:
- timm models: `timm.create_model` with the arguments of the model card or of the hub config.json
  (the published checkpoints strictly load into exactly these), quoted below with their source;
- Hibou-L: transformers' DINOv2 with registers configured as histai/hibou-L (its Hugging Face layout)
  and the original DINOv2 code of github.com/HistAI/hibou (tests/_dinov2_reference.py), converted to
  timm names with g2l.models.layouts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from timm.layers import SwiGLUPacked

from g2l.models import known_models
from g2l.models.check import check_model
from g2l.models.hf_config import HIBOU_L_CONFIG, swiglu_hidden, timm_from_hf_config
from g2l.models.layouts import dinov2_to_timm, hf_dinov2_to_timm
from tests._dinov2_reference import vit_large_hibou

Shapes = dict[str, list[int]]

# bioptimus/H-optimus-0 config.json at revision d7e1f88 (huggingface.co/bioptimus/H-optimus-0/blob/d7e1f88/
# config.json); the card loads it with timm.create_model("hf-hub:bioptimus/H-optimus-0", pretrained=True,
# init_values=1e-5, dynamic_img_size=False).
H_OPTIMUS_0_CONFIG = {
    "architecture": "vit_giant_patch14_reg4_dinov2",
    "num_classes": 0,
    "num_features": 1536,
    "global_pool": "token",
    "pretrained_cfg": {
        "custom_load": True,
        "input_size": [3, 224, 224],
        "fixed_input_size": True,
        "mean": [0.707223, 0.578729, 0.703617],
        "std": [0.211883, 0.230117, 0.177517],
        "num_classes": 0,
        "license": "Apache 2.0",
    },
}

# The remaining timm models: the architecture and keyword arguments with which TRIDENT (github.com/
# mahmoodlab/TRIDENT v0.3.1, trident/patch_encoder_models/load.py, *InferenceEncoder._build) builds each
# encoder before `load_state_dict(torch.load(published pytorch_model.bin), strict=True)`; they repeat
# the models' cards (UNI, UNI2-h, Virchow2, Prov-GigaPath on huggingface.co).
CARD_KWARGS: dict[str, tuple[str, dict[str, object]]] = {
    "hf-hub:MahmoodLab/UNI": ("vit_large_patch16_224", {
        "img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True}),
    "hf-hub:MahmoodLab/UNI2-h": ("vit_giant_patch14_224", {
        "img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
        "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True,
        "mlp_layer": SwiGLUPacked, "act_layer": torch.nn.SiLU, "reg_tokens": 8, "dynamic_img_size": True}),
    "hf-hub:paige-ai/Virchow2": ("vit_huge_patch14_224", {
        "img_size": 224, "init_values": 1e-5, "num_classes": 0, "reg_tokens": 4, "mlp_ratio": 5.3375,
        "global_pool": "", "dynamic_img_size": True, "mlp_layer": SwiGLUPacked, "act_layer": torch.nn.SiLU}),
    "hf-hub:prov-gigapath/prov-gigapath": ("vit_giant_patch14_dinov2", {
        "img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536, "depth": 40, "num_heads": 24,
        "mlp_ratio": 5.33334, "num_classes": 0, "dynamic_img_size": True}),
    # timm's own DINOv2 ViT-L/14-reg4 (huggingface.co/timm/vit_large_patch14_reg4_dinov2.lvd142m), at 224 px
    "vit_large_patch14_reg4_dinov2": ("vit_large_patch14_reg4_dinov2", {"img_size": 224, "num_classes": 0}),
}

# Figures the publishers give, which the architectures must reproduce.
PUBLISHED = {
    # H-optimus-0's pytorch_model.bin is 4.54 GB of float32 (the hub's file listing at d7e1f88): 1.13B params
    "hf-hub:bioptimus/H-optimus-0": {"params_approx": 4.54e9 / 4, "embed_dim": 1536},
    "hf-hub:prov-gigapath/prov-gigapath": {"params_approx": 1.134e9, "embed_dim": 1536},
    "hf-hub:MahmoodLab/UNI2-h": {"params_approx": 0.681e9, "embed_dim": 1536},
    # Virchow2's published embedding: CLS ++ mean patch token (TRIDENT Virchow2InferenceEncoder.forward)
    "hf-hub:paige-ai/Virchow2": {"params_approx": 0.632e9, "embed_dim": 2560},
    "hf-hub:MahmoodLab/UNI": {"params_approx": 0.303e9, "embed_dim": 1024},
    "hibou-L": {"params_approx": 0.304e9, "embed_dim": 1024},
}


@functools.cache
def _report(name: str):  # one meta build per zoo entry for the whole module
    return check_model(name)


def _shapes(state: dict[str, torch.Tensor]) -> Shapes:
    return {k: list(v.shape) for k, v in state.items()}


def _timm_meta(arch: str, **kwargs: object) -> Shapes:
    with torch.device("meta"):
        return _shapes(timm.create_model(arch, pretrained=False, **kwargs).state_dict())


def _h_optimus_from_hub_config(tmp_path: Path) -> Shapes:
    d = tmp_path / "h-optimus-0"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(H_OPTIMUS_0_CONFIG))
    # timm's own hub-config path (local-dir: reads config.json exactly as hf-hub: does after download)
    return _timm_meta(f"local-dir:{d}", init_values=1e-5, dynamic_img_size=False)


# hibou-L as published on huggingface.co/histai/hibou-L: the config of its sibling histai/hibou-b
# (config.json at 5cc6343: model_type dinov2, use_swiglu_ffn, 4 registers, patch 14, 224 px,
# layer_norm_eps 1e-6) with HistAI/hibou's vit_large sizes (1024 wide, 24 deep, 16 heads, ratio 4).
HIBOU_L_PUBLISHED = {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24,
                     "num_attention_heads": 16, "mlp_ratio": 4, "use_swiglu_ffn": True,
                     "num_register_tokens": 4, "image_size": 224, "patch_size": 14, "layer_norm_eps": 1e-6,
                     "qkv_bias": True}


def _hibou_hf(tmp_path: Path) -> Shapes:
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    config = Dinov2WithRegistersConfig(**{k: v for k, v in HIBOU_L_PUBLISHED.items() if k != "model_type"})
    with torch.device("meta"):
        state = Dinov2WithRegistersModel(config).state_dict()
    assert "encoder.layer.0.mlp.weights_in.weight" in state  # the published names (transformers 4.x)
    return _shapes(hf_dinov2_to_timm(state))


def _hibou_original(tmp_path: Path) -> Shapes:
    with torch.device("meta"):
        state = vit_large_hibou().state_dict()
    return _shapes(dinov2_to_timm(state))


def _tiny(name: str) -> Callable[[Path], Shapes]:
    # The tiny test models have no publisher: their definition is timm's ViT with these arguments
    # (tests/test_models_zoo.py pins their seeded weights and widths).
    kwargs = {"tiny-vit-teacher": 64, "tiny-vit-student": 48}

    def build(tmp_path: Path) -> Shapes:
        return _timm_meta("vit_tiny_patch16_224", img_size=224, patch_size=32, embed_dim=kwargs[name],
                          depth=2, num_heads=2, mlp_ratio=2.0, num_classes=0)

    return build


def _demo_teacher_shipped(tmp_path: Path) -> Shapes:
    # The demo teacher is published as the safetensors file shipped in g2l: its tensors are the reference.
    from safetensors import safe_open

    import g2l

    path = Path(g2l.__file__).parent / "synth" / "weights" / "demo-vit-teacher.safetensors"
    with safe_open(str(path), framework="pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)


def _demo_student(tmp_path: Path) -> Shapes:
    # The demo student has no publisher: timm's ViT with g2l's conv stem (g2l/synth/conv_stem.py).
    from g2l.synth.conv_stem import ConvStemPatchEmbed

    return _timm_meta("vit_tiny_patch16_224", img_size=112, patch_size=16, embed_dim=64, depth=3, num_heads=2,
                      mlp_ratio=2.0, num_classes=0, embed_layer=ConvStemPatchEmbed)


NATIVE: dict[str, Callable[[Path], Shapes]] = {
    "hf-hub:bioptimus/H-optimus-0": _h_optimus_from_hub_config,
    # the GPU benchmarks' random teacher is H-optimus-0-shaped by definition
    "vit-g14-random": _h_optimus_from_hub_config,
    "hibou-L": _hibou_hf,
    "tiny-vit-teacher": _tiny("tiny-vit-teacher"),
    "tiny-vit-student": _tiny("tiny-vit-student"),
    "demo-vit-teacher": _demo_teacher_shipped,
    "demo-vit-student": _demo_student,
    **{name: (lambda arch, kw: lambda tmp_path: _timm_meta(arch, **kw))(*card)  # type: ignore[misc]
       for name, card in CARD_KWARGS.items()},
}


def test_every_zoo_entry_has_a_native_reference():
    assert set(NATIVE) == set(known_models())


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_full_size_layout_equals_the_native_implementation(name: str, tmp_path: Path) -> None:
    ours = _report(name).shapes
    native = NATIVE[name](tmp_path)
    assert sorted(ours) == sorted(native), (
        f"{name}: missing {sorted(set(native) - set(ours))[:5]}, extra {sorted(set(ours) - set(native))[:5]}")
    wrong = {k: (ours[k], native[k]) for k in ours if ours[k] != native[k]}
    assert not wrong, f"{name}: shapes differ: {dict(list(wrong.items())[:5])}"


def test_hibou_l_original_layout_equals_the_hugging_face_layout(tmp_path: Path) -> None:
    # the two published implementations describe one network: identical once in timm names
    assert _hibou_original(tmp_path) == _hibou_hf(tmp_path)
    with torch.device("meta"):
        original = vit_large_hibou().state_dict()
    # the fused SwiGLU of the issue: w12 1024 -> 5472, w3 2736 -> 1024; 4 registers
    assert list(original["blocks.0.mlp.w12.weight"].shape) == [5472, 1024]
    assert list(original["blocks.0.mlp.w3.weight"].shape) == [1024, 2736]
    assert list(original["register_tokens"].shape) == [1, 4, 1024]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_and_embedding_widths_match_the_published_figures(name: str) -> None:
    report = _report(name)
    assert report.params == pytest.approx(PUBLISHED[name]["params_approx"], rel=0.01)
    assert report.embed_dim == PUBLISHED[name]["embed_dim"]


def test_the_hibou_l_config_g2l_writes_is_the_published_one() -> None:
    assert {k: HIBOU_L_CONFIG[k] for k in HIBOU_L_PUBLISHED} == HIBOU_L_PUBLISHED
    arch, kwargs = timm_from_hf_config(HIBOU_L_CONFIG)
    with torch.device("meta"):
        from g2l.models.build import skeleton

        from_config = _shapes(skeleton(arch, kwargs).state_dict())
    assert from_config == _report("hibou-L").shapes


def test_swiglu_width_formula_matches_timms_dinov2_giant() -> None:
    # facebook/dinov2-giant's transformers config (huggingface.co/facebook/dinov2-giant, config.json at
    # cae9b8e: hidden 1536, mlp_ratio 4, use_swiglu_ffn) must give timm's own ViT-g/14 DINOv2 shapes,
    # whose MLP width timm writes independently as mlp_ratio 2.66667 * 2.
    giant = {"model_type": "dinov2", "hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24,
             "mlp_ratio": 4, "use_swiglu_ffn": True, "image_size": 518, "patch_size": 14,
             "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "qkv_bias": True}
    assert swiglu_hidden(1536, 4) == 4096 and swiglu_hidden(1024, 4) == 2736
    arch, kwargs = timm_from_hf_config(giant)
    from g2l.models.build import skeleton

    native = _timm_meta("vit_giant_patch14_dinov2", num_classes=0)
    assert _shapes(skeleton(arch, kwargs).state_dict()) == native
