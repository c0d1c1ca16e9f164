"""The trained module (student + projection head), the online teacher's forward, and DDP/FSDP wrapping."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class Distiller(nn.Module):
    """Student plus head = Linear(student dim -> teacher dim) + BatchNorm1d, trained together.

    The head exists only for training (G2L drops it at export); an optional separate linear head
    projects patch tokens when the loss has a patch-token term.
    """

    def __init__(
        self,
        student: nn.Module,
        student_dim: int,
        teacher_dim: int,
        embedding: str = "cls",
        patch_tokens: bool = False,
    ) -> None:
        super().__init__()
        self.student = student
        self.embedding = embedding
        self.head = nn.Sequential(nn.Linear(student_dim, teacher_dim), nn.BatchNorm1d(teacher_dim))
        self.patch_head = nn.Linear(student_dim, teacher_dim) if patch_tokens else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projected embedding [B, Dt] and, with a patch head, projected patch tokens [B, P, Dt]."""
        emb, patches = features(self.student, x, self.embedding, self.patch_head is not None)
        if self.patch_head is None or patches is None:
            return self.head(emb), None
        return self.head(emb), self.patch_head(patches)


def features(
    model: nn.Module, x: torch.Tensor, embedding: str, patch_tokens: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(embedding, patch tokens or None): the embedding is g2l.models.embed's, as the cache stores it."""
    from g2l.models import embed

    if not patch_tokens:
        return embed(model, x, embedding), None
    feats = model.forward_features(x)  # type: ignore[operator]
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    patches = feats[:, prefix:]
    cls = feats[:, 0]
    emb = cls if embedding == "cls" else torch.cat([cls, patches.mean(dim=1)], dim=-1)
    return emb, patches


@torch.no_grad()
def teacher_forward(
    teacher: nn.Module, x: torch.Tensor, embedding: str, patch_tokens: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The online teacher's targets for a batch: the same embedding the cache would hold, in float32."""
    emb, patches = features(teacher, x, embedding, patch_tokens)
    return emb.float(), None if patches is None else patches.float()


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (precision auto or bf16); a no-op on CPU, where bf16 is slow and not needed."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def wrap(module: Distiller, strategy: str, device: torch.device, world_size: int) -> nn.Module:
    """DDP (default) or FSDP2 `fully_shard` per transformer block; unwrapped when running alone."""
    module.to(device)
    if world_size <= 1:
        return module
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(module.student, "blocks", []):
            fully_shard(block)
        fully_shard(module)
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # gradients as views into DDP's all-reduce buckets: one copy of the gradients instead of two
    # (1.2 GB less per rank for a ViT-L student, on GPU and CPU alike)
    return DistributedDataParallel(module, device_ids=ids, gradient_as_bucket_view=True)


def grad_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    no_sync = getattr(model, "no_sync", None)
    if no_sync is not None:  # DDP
        return contextlib.nullcontext() if sync else no_sync()
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is not None:  # FSDP2
        setter(sync)
    return contextlib.nullcontext()


def unwrap(model: nn.Module) -> Distiller:
    """The Distiller inside a DDP wrapper (FSDP2 shards in place, so it is the module itself)."""
    inner = getattr(model, "module", model)
    assert isinstance(inner, Distiller)  # internal invariant, not user input
    return inner


def param_groups(module: Distiller, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms and what timm lists (position embedding, tokens)."""
    skip_fn = getattr(module.student, "no_weight_decay", None)
    skip = {f"student.{n}" for n in (skip_fn() if callable(skip_fn) else ())}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    # `decays` marks the group a weight-decay schedule may change (its value can anneal to 0)
    return [{"params": decay, "weight_decay": weight_decay, "decays": True},
            {"params": no_decay, "weight_decay": 0.0, "decays": False}]


def trainable(model: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters that get gradients."""
    return (p for p in model.parameters() if p.requires_grad)


def clip_gradients(params: list[nn.Parameter], max_norm: float) -> float:
    """Scale gradients so their global L2 norm is at most `max_norm`; returns the norm before clipping.

    FSDP2 gradients are DTensor shards: their squared norms are summed locally and all-reduced once,
    so the norm is that of the full gradient (the same number DDP and one process get).
    """
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    locals_ = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
    total_sq = torch.stack([t.detach().double().pow(2).sum() for t in locals_]).sum()
    if any(isinstance(g, DTensor) for g in grads):
        dist.all_reduce(total_sq)  # every FSDP gradient is a shard on the one data-parallel mesh
    norm = float(total_sq.sqrt())
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for t in locals_:
            t.mul_(coef)
    return norm
