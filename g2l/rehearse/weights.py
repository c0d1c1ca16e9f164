"""Random weights of a zoo model written as a local checkpoint in the model's published layout.

The rehearsal loads these through `--weights`, exactly as it will load the real files: H-optimus-0 as
its hub ships it (a timm state dict, pytorch_model.bin), Hibou-L as histai/hibou-L's snapshot
(transformers names: config.json, preprocessor_config.json, model.safetensors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from g2l.models.build import skeleton
from g2l.models.zoo import ModelSpec


def _init(name: str, shape: torch.Size, gen: torch.Generator, init_values: float) -> torch.Tensor:
    """Name-based init close to timm's: norms 1/0, layer scales init_values, tokens ~0, weights N(0, 0.02)."""
    if name.endswith(".bias"):
        return torch.zeros(shape)
    if name.endswith(".gamma"):
        return torch.full(shape, init_values)
    if len(shape) == 1 and "norm" in name:
        return torch.ones(shape)
    std = 1e-6 if name in ("cls_token", "reg_token") else 0.02
    return torch.randn(shape, generator=gen) * std


def random_state(spec: ModelSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full-size random state dict of `spec` in timm names (fast: no module is materialised)."""
    model = skeleton(spec.arch, spec.kwargs)
    init_values = float(spec.kwargs.get("init_values") or 1e-5)
    gen = torch.Generator().manual_seed(seed)
    return {k: _init(k, v.shape, gen, init_values) for k, v in model.state_dict().items()}


def write_published_checkpoint(spec: ModelSpec, out_dir: Path, seed: int = 0) -> tuple[Path, int]:
    """Write random weights of `spec` in its first published layout; (path for --weights, parameters)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = random_state(spec, seed)
    params = sum(v.numel() for k, v in state.items())
    layout = spec.layouts[0]
    if layout == "hf-dinov2":
        from safetensors.torch import save_file

        from g2l.models.hf_config import HIBOU_L_CONFIG
        from g2l.models.layouts import timm_to_hf_dinov2

        if spec.name != "hibou-L":
            raise ValueError(f"{spec.name}: only Hibou-L's transformers config is known to g2l")
        tensors = {k: v.contiguous() for k, v in timm_to_hf_dinov2(state).items()}
        del state
        save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        (out_dir / "config.json").write_text(json.dumps(HIBOU_L_CONFIG, indent=2))
        preprocessor: dict[str, Any] = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
                                        "do_normalize": True, "image_mean": list(spec.mean or ()),
                                        "image_std": list(spec.std or ()), "resample": 3,
                                        "size": {"shortest_edge": 224}}
        (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
        return out_dir, params
    if layout != "timm":
        raise ValueError(f"{spec.name}: no writer for the {layout!r} layout")
    path = out_dir / "pytorch_model.bin"  # as timm hub repos (H-optimus-0) ship it
    torch.save(state, path)
    return path, params


def main(argv: list[str] | None = None) -> None:
    """`python -m g2l.rehearse.weights NAME OUT_DIR SEED`: write the checkpoint, print {path, params}.

    A separate process so that the gigabytes of random tensors are returned to the system when it
    exits (the rehearsal's own process stays small while the stages run).
    """
    import sys

    from g2l.models import get_spec

    name, out_dir, seed = (argv if argv is not None else sys.argv[1:])[:3]
    spec = get_spec(name)
    if spec is None:
        raise SystemExit(f"{name!r} is not a model of the zoo")
    path, params = write_published_checkpoint(spec, Path(out_dir), seed=int(seed))
    print(json.dumps({"path": str(path), "params": params}))


if __name__ == "__main__":
    main()
