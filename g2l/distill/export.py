"""Export the distilled student (head dropped): model.safetensors + config.json, loadable by g2l and timm."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

STUDENT_DIR = "student"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_student(
    out_dir: str | os.PathLike[str], state: dict[str, torch.Tensor], student: Any, card: dict[str, Any]
) -> Path:
    """Write `state` (the student's own weights) and its config/model card to `out_dir`, atomically.

    config.json carries the timm `architecture` and `model_args`, so `timm.create_model(architecture,
    pretrained=True, pretrained_cfg_overlay=dict(file=.../model.safetensors), **model_args)` rebuilds it,
    and `g2l.models.load_student(out_dir)` (= `build_model(out_dir)`) does the same with preprocessing.
    """
    from safetensors.torch import save_file

    from g2l.models import state_dict_sha256

    out = Path(out_dir)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    config = {**student.config(), **card}
    config["name"] = card.get("name") or f"{student.name}-g2l"
    config["weights_sha256"] = state_dict_sha256(tensors)
    config["base_student"] = {"name": student.name, "weights_sha256": student.weights_sha256}
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def read_student_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The exported student's config.json (lineage, metrics, timm architecture)."""
    return json.loads((Path(path) / CONFIG_FILE).read_text())


def load_student(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Any:
    """Load an exported student directory as a g2l.models.LoadedModel (weights, preprocessing, digest)."""
    from g2l.models import build_model

    return build_model(str(Path(path)), device=device)
