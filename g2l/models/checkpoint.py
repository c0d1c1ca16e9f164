"""Checkpoint files: find the weights in a directory, read a state dict or only its header (names, shapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from g2l.models.errors import ModelError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Training checkpoints wrap the weights; these keys hold the state dict (DDP, Lightning, DINOv2 runs).
_NESTS = ("state_dict", "model", "module", "teacher")


def weights_file(path: str | Path) -> Path:
    """The weights file itself: `path`, or the first of WEIGHT_FILES inside a directory."""
    p = Path(path)
    if p.is_dir():
        for candidate in WEIGHT_FILES:
            if (p / candidate).is_file():
                return p / candidate
        raise ModelError(f"{path}: no weights file in the directory; "
                         f"expected one of {', '.join(WEIGHT_FILES)}")
    if not p.is_file():
        raise ModelError(f"weights file {str(p)!r} does not exist; pass --weights with a readable file")
    return p


def _unwrap(state: Any, where: Path) -> dict[str, torch.Tensor]:
    for nest in _NESTS:  # common training-checkpoint wrappers
        if isinstance(state, dict) and nest in state and isinstance(state[nest], dict):
            state = state[nest]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{where}: not a state dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, a torch file (.pt/.pth/.bin) or a directory holding one."""
    p = weights_file(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _unwrap(load_file(str(p)), p)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, pickled objects, not a torch file at all
        raise ModelError(f"{p}: cannot read it as a torch checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return _unwrap(state, p)


def read_header(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor's name, shape and dtype as meta tensors, without reading any weights.

    safetensors: the JSON header at the start of the file. Torch files: `torch.load` onto the meta
    device, which materialises no storage. Either way a 4.5 GB checkpoint is checked in milliseconds.
    """
    p = weights_file(path)
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        out: dict[str, torch.Tensor] = {}
        try:
            with safe_open(str(p), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    sl = f.get_slice(name)
                    dtype = _SAFETENSORS_DTYPES.get(sl.get_dtype(), torch.float32)
                    out[name] = torch.empty(sl.get_shape(), dtype=dtype, device="meta")
        except Exception as exc:
            raise ModelError(f"{p}: not a readable safetensors file ({exc})") from exc
        return _unwrap(out, p)
    try:
        state = torch.load(p, map_location="meta", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{p}: cannot read it as a torch checkpoint ({type(exc).__name__})") from exc
    return _unwrap(state, p)


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
