"""Registry of known teacher/student models: timm architecture, kwargs, preprocessing, pooling, source."""

from __future__ import annotations

import dataclasses
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Embedding kinds: what `g2l.models.embed` returns for a model.
EMBEDDINGS = ("cls", "cls_mean")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """How to build one named model: timm architecture + kwargs, preprocessing overrides, pooling, source.

    `arch` + `kwargs` rebuild the exact architecture offline, so a local `--weights` file can be loaded
    without the hub. Class-valued kwargs (mlp_layer, act_layer) are written as strings (see
    `g2l.models.build.resolve_kwargs`) so a spec stays hashable and JSON-friendly.
    """

    name: str
    arch: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    role: str = "teacher"  # teacher | student | test
    # hf-hub (huggingface_hub snapshot) | timm (timm pretrained tag) | seeded (random init) | local
    # | package (weights shipped inside g2l: `weights_file`, checked against `weights_file_sha256`)
    source: str = "hf-hub"
    hub_repo: str | None = None
    gated: bool = False
    input_px: int = 224
    mean: tuple[float, float, float] | None = None  # None: from the pretrained config (timm)
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None
    embedding: str = "cls"
    seed: int | None = None  # seeded random init (tiny test models)
    weights_file: str | None = None  # source "package": safetensors path relative to the g2l package
    weights_file_sha256: str | None = None  # sha256 of that file's bytes (pinned)
    # layouts its published checkpoints come in (g2l.models.layouts); every one loads into `arch`
    layouts: tuple[str, ...] = ("timm",)
    # the model card publishes pretrained weights a distillation student starts from: a run must name
    # them (distill.student_weights: a file/directory, or `hub` for the registered source)
    pretrained: bool = False
    notes: str = ""


_SWIGLU = {"mlp_layer": "timm.layers.SwiGLUPacked", "act_layer": "torch.nn.SiLU"}
# The demo's small ViTs: 112 px input (224 px views at 1 um/px), 16 px tokens from a convolutional stem.
_DEMO_VIT = {"img_size": 112, "patch_size": 16, "num_classes": 0,
             "embed_layer": "g2l.synth.conv_stem.ConvStemPatchEmbed"}

# Architectures and kwargs follow each model card's `timm.create_model` call and the hub repo's
# config.json (`architecture` + `model_args`); preprocessing follows the card's transform.
_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="hf-hub:bioptimus/H-optimus-0",
        arch="vit_giant_patch14_reg4_dinov2",
        kwargs={"img_size": 224, "num_classes": 0, "global_pool": "token", "init_values": 1e-5,
                "dynamic_img_size": False},
        hub_repo="bioptimus/H-optimus-0",
        gated=True,
        mean=(0.707223, 0.578729, 0.703617),
        std=(0.211883, 0.230117, 0.177517),
        interpolation="bicubic",
        notes="ViT-g/14 + 4 registers, 1536-d CLS, 224 px at 0.5 um/px; the G2L paper's teacher.",
    ),
    ModelSpec(
        name="hf-hub:MahmoodLab/UNI2-h",
        arch="vit_giant_patch14_224",
        kwargs={"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
                "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True,
                "reg_tokens": 8, "dynamic_img_size": True, **_SWIGLU},
        hub_repo="MahmoodLab/UNI2-h",
        gated=True,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bicubic",
        notes="ViT-h/14 + 8 registers, 1536-d CLS.",
    ),
    ModelSpec(
        name="hf-hub:paige-ai/Virchow2",
        arch="vit_huge_patch14_224",
        kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "reg_tokens": 4, "mlp_ratio": 5.3375,
                "global_pool": "", "dynamic_img_size": True, **_SWIGLU},
        hub_repo="paige-ai/Virchow2",
        gated=True,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bicubic",
        embedding="cls_mean",
        notes="ViT-H/14 + 4 registers; its published embedding is CLS concatenated with the mean patch "
              "token (registers excluded): 2 x 1280 = 2560-d.",
    ),
    ModelSpec(
        name="hf-hub:prov-gigapath/prov-gigapath",
        arch="vit_giant_patch14_dinov2",
        kwargs={"img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536, "depth": 40,
                "num_heads": 24, "init_values": 1e-5, "mlp_ratio": 5.33334, "num_classes": 0},
        hub_repo="prov-gigapath/prov-gigapath",
        gated=True,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bicubic",
        notes="Tile encoder, ViT-g with 16 px patches at 224 px, 1536-d CLS.",
    ),
    ModelSpec(
        name="vit_large_patch14_reg4_dinov2",
        arch="vit_large_patch14_reg4_dinov2",
        kwargs={"img_size": 224, "num_classes": 0},
        role="student",
        source="timm",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bicubic",
        pretrained=True,
        notes="ViT-L/14 + 4 registers (DINOv2 LVD-142M weights), 1024-d; timm-native student.",
    ),
    ModelSpec(
        name="hf-hub:MahmoodLab/UNI",
        arch="vit_large_patch16_224",
        kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True},
        role="student",
        hub_repo="MahmoodLab/UNI",
        gated=True,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        pretrained=True,
        notes="ViT-L/16, 1024-d; pathology-pretrained student.",
    ),
    ModelSpec(
        name="hibou-L",
        # DINOv2 ViT-L/14 with 4 registers and the fused SwiGLU FFN: w12 1024 -> 5472, w3 2736 -> 1024
        # (HistAI/hibou vision_transformer.py vit_large + build_model(ffn_layer="swiglufused",
        # num_register_tokens=4)). timm's SwiGLUPacked is the same fused layer; mlp_ratio 5472/1024.
        arch="vit_large_patch14_reg4_dinov2",
        kwargs={"img_size": 224, "num_classes": 0, "mlp_ratio": 5472 / 1024, **_SWIGLU},
        role="student",
        hub_repo="histai/hibou-L",
        gated=True,
        mean=(0.7068, 0.5755, 0.722),
        std=(0.195, 0.2316, 0.1816),
        interpolation="bicubic",
        layouts=("hf-dinov2", "dinov2"),
        pretrained=True,
        notes="histai/hibou-L, the G2L paper's student (ViT-L/14 + 4 registers, SwiGLU, 1024-d CLS after "
              "the final norm = transformers' pooler_output). Loads the hub snapshot (config.json + "
              "model.safetensors, transformers names) or the HistAI/hibou DINOv2-style .pth, converted.",
    ),
    ModelSpec(
        name="tiny-vit-teacher",
        arch="vit_tiny_patch16_224",
        kwargs={"img_size": 224, "patch_size": 32, "embed_dim": 64, "depth": 2, "num_heads": 2,
                "mlp_ratio": 2.0, "num_classes": 0},
        role="test",
        source="seeded",
        seed=1234,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        notes="Random-init 64-d ViT (seed 1234) for tests and the demo; cheap on CPU.",
    ),
    ModelSpec(
        name="tiny-vit-student",
        arch="vit_tiny_patch16_224",
        kwargs={"img_size": 224, "patch_size": 32, "embed_dim": 48, "depth": 2, "num_heads": 2,
                "mlp_ratio": 2.0, "num_classes": 0},
        role="test",
        source="seeded",
        seed=4321,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        notes="Random-init 48-d ViT (seed 4321) for tests and the demo.",
    ),
    ModelSpec(
        name="demo-vit-teacher",
        arch="vit_tiny_patch16_224",
        kwargs=dict(_DEMO_VIT, embed_dim=96, depth=4, num_heads=3, mlp_ratio=3.0),
        role="teacher",
        source="package",
        weights_file="synth/weights/demo-vit-teacher.safetensors",
        weights_file_sha256="bac7596226a0bbe9c45c22df77f5ea19ef9dfa64a489a78c14640b1cceaf69fb",
        input_px=112,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        notes="The demo's teacher: a 96-d ViT (conv stem, 4 blocks, 0.5M parameters) trained on labelled "
              "synthetic tissue, shipped in g2l; regenerate with `python -m g2l.synth.train_teacher "
              "--out g2l/synth/weights/demo-vit-teacher.safetensors`.",
    ),
    ModelSpec(
        name="demo-vit-student",
        arch="vit_tiny_patch16_224",
        kwargs=dict(_DEMO_VIT, embed_dim=64, depth=3, num_heads=2, mlp_ratio=2.0),
        role="student",
        source="seeded",
        seed=4321,
        input_px=112,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        notes="The demo's student: a 64-d ViT (conv stem, 3 blocks, a third of the teacher's parameters), "
              "seeded random init; distilled from demo-vit-teacher by `make demo`.",
    ),
    ModelSpec(
        name="vit-g14-random",
        arch="vit_giant_patch14_reg4_dinov2",
        kwargs={"img_size": 224, "num_classes": 0, "init_values": 1e-5, "dynamic_img_size": False},
        role="test",
        source="seeded",
        seed=0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bicubic",
        notes="H-optimus-0-shaped (ViT-g/14 + 4 registers) random-init teacher for GPU benchmarks.",
    ),
)

REGISTRY: dict[str, ModelSpec] = {s.name: s for s in _SPECS}

# Other spellings people use for the same models (timm accepts `hf_hub:` too).
ALIASES: dict[str, str] = {
    "h-optimus-0": "hf-hub:bioptimus/H-optimus-0",
    "uni2-h": "hf-hub:MahmoodLab/UNI2-h",
    "virchow2": "hf-hub:paige-ai/Virchow2",
    "prov-gigapath": "hf-hub:prov-gigapath/prov-gigapath",
    "uni": "hf-hub:MahmoodLab/UNI",
    "histai/hibou-l": "hibou-L",
    "hf-hub:histai/hibou-L": "hibou-L",
}


def canonical_name(name: str) -> str:
    """The registry spelling of a model name (`hf_hub:` -> `hf-hub:`, aliases resolved)."""
    if name.startswith("hf_hub:"):
        name = "hf-hub:" + name[len("hf_hub:"):]
    if name in REGISTRY:
        return name
    return ALIASES.get(name.lower(), ALIASES.get(name, name))


def known_models() -> list[str]:
    """Registered model names (teachers, students and tiny test models), in registry order."""
    return list(REGISTRY)


def get_spec(name: str) -> ModelSpec | None:
    """The registered spec for `name` (after aliasing), or None."""
    return REGISTRY.get(canonical_name(name))
