"""Distillation losses between projected student and teacher embeddings (G2L log-sum, cosine, ...)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from g2l.distill.config import LossConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def logsum_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 4.0,
    eps: float = 1e-12,
    reduction: str = "sample",
) -> torch.Tensor:
    """G2L's log-sum loss: log(sum |pred - target|^alpha).

    `sample`: the sum runs over each sample's dimensions and the logs are averaged over the batch.
    `batch`: one sum over the whole [B, D] residual matrix, log(sum_{b,d} |r_bd|^alpha), as the paper
    writes the loss over the batch matrices Z_s W_p and Z_t (a large residual anywhere dominates).

    Computed as alpha * log(m) + log(sum((|r| / m)^alpha)) with m = max|r| (detached): every ratio is
    at most 1 and the largest is exactly 1, so nothing overflows for huge residuals nor underflows to
    log(0) for tiny ones. Holding m constant does not change the gradient, because the expression
    equals the plain one for any m. `eps` floors m and the sum, so an exactly zero residual gives a
    finite loss and a zero gradient instead of -inf / NaN.
    """
    dtype = torch.promote_types(pred.dtype, torch.float32)  # bf16 autocast outputs are lifted to fp32
    r = (pred.to(dtype) - target.to(dtype)).abs().flatten(1)
    if reduction == "batch":
        r = r.reshape(1, -1)
    elif reduction != "sample":
        raise ValueError(f"logsum reduction must be 'sample' or 'batch', got {reduction!r}")
    m = r.detach().amax(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    s = (r / m).pow(alpha).sum(dim=1).clamp_min(eps)
    per_row = alpha * m.squeeze(1).log() + s.log()
    return per_row.mean()


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity, averaged over the batch."""
    return (1.0 - F.cosine_similarity(pred.float().flatten(1), target.float().flatten(1), dim=1)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements."""
    return F.mse_loss(pred.float(), target.float())


def build_loss(config: LossConfig) -> LossFn:
    """The loss function named in the config, with its parameters bound."""
    if config.name == "logsum":
        return lambda p, t: logsum_loss(p, t, alpha=config.alpha, eps=config.eps, reduction=config.reduction)
    if config.name == "cosine":
        return cosine_loss
    if config.name == "smooth_l1":
        return lambda p, t: F.smooth_l1_loss(p.float(), t.float(), beta=config.smooth_l1_beta)
    if config.name == "mse":
        return mse_loss
    raise ValueError(f"unknown loss {config.name!r}")  # unreachable: LossConfig validates the name


def patch_loss(fn: LossFn, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The same loss applied to every patch token ([B, P, D] -> one sample per token), averaged."""
    return fn(pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1]))


def mean_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity between projected student and teacher embeddings."""
    return F.cosine_similarity(pred.float().flatten(1), target.float().flatten(1), dim=1)
