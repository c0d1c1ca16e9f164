"""Weight digest: sha256 over a state dict in sorted key order, independent of the file format."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, keys sorted.

    Hashing the tensors rather than a file makes the digest the same whether the weights were saved
    with safetensors, torch.save or loaded from the hub, and independent of dict insertion order.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(b"\0")
        h.update(str(t.dtype).encode())
        h.update(b"\0")
        h.update(repr(tuple(t.shape)).encode())
        h.update(b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_sha256(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """Digest of a module's state dict (or of a state dict itself)."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    return state_dict_sha256(state)
