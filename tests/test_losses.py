"""The distillation losses: G2L log-sum against a hand computation, stable gradients, other losses."""

from __future__ import annotations

import math

import pytest
import torch

from g2l.config import ConfigError
from g2l.distill.config import LossConfig
from g2l.distill.losses import build_loss, cosine_loss, logsum_loss, mean_cosine


def _hand_logsum(pred: list[list[float]], target: list[list[float]], alpha: float) -> float:
    per_sample = [
        math.log(sum(abs(p - t) ** alpha for p, t in zip(ps, ts, strict=True)))
        for ps, ts in zip(pred, target, strict=True)
    ]
    return sum(per_sample) / len(per_sample)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0, 4.0, 2.5])
def test_logsum_equals_hand_computation(alpha: float) -> None:
    pred = [[0.5, -1.25, 2.0, 0.0], [3.0, 0.1, -0.2, 1.0]]
    target = [[0.1, 0.25, -1.0, 0.5], [-1.0, 0.3, 0.2, 1.5]]
    got = logsum_loss(
        torch.tensor(pred, dtype=torch.float64), torch.tensor(target, dtype=torch.float64), alpha=alpha
    )
    assert got.item() == pytest.approx(_hand_logsum(pred, target, alpha), rel=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 4.0])
def test_logsum_gradient_matches_analytic(alpha: float) -> None:
    pred = torch.tensor([[0.5, -1.25, 2.0], [3.0, 0.1, -0.2]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.1, 0.25, -1.0], [-1.0, 0.3, 0.2]], dtype=torch.float64)
    logsum_loss(pred, target, alpha=alpha).backward()
    r = (pred - target).detach()
    # d/dr log(sum |r|^a) = a |r|^(a-1) sign(r) / sum |r|^a, divided by the batch size (mean)
    expected = alpha * r.abs().pow(alpha - 1) * r.sign() / r.abs().pow(alpha).sum(1, keepdim=True) / 2
    torch.testing.assert_close(pred.grad, expected)


@pytest.mark.parametrize("scale", [1e-30, 1e-8, 1.0, 1e8, 1e30])
@pytest.mark.parametrize("alpha", [2.0, 4.0])
def test_logsum_finite_for_tiny_and_huge_residuals(scale: float, alpha: float) -> None:
    base = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    pred = (base * scale).float().requires_grad_(True)
    loss = logsum_loss(pred, torch.zeros_like(pred), alpha=alpha)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    # the exact value, computed in log space so the hand computation itself does not overflow
    expected = alpha * math.log(scale) + math.log(sum(abs(v) ** alpha for v in [1.0, -2.0, 0.5, 3.0]))
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert pred.grad.abs().sum() > 0


def test_logsum_zero_residual_is_finite() -> None:
    pred = torch.zeros(3, 5, requires_grad=True)
    loss = logsum_loss(pred, torch.zeros(3, 5))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


def test_cosine_loss_and_metric() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    assert cosine_loss(a, b).item() == pytest.approx(0.5)
    torch.testing.assert_close(mean_cosine(a, b), torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("name", ["logsum", "cosine", "smooth_l1", "mse"])
def test_every_configured_loss_decreases_under_gradient_descent(name: str) -> None:
    torch.manual_seed(0)
    target = torch.randn(8, 6)
    pred = torch.randn(8, 6, requires_grad=True)
    fn = build_loss(LossConfig(name=name))
    opt = torch.optim.SGD([pred], lr=0.05)
    first = fn(pred, target).item()
    for _ in range(50):
        opt.zero_grad()
        fn(pred, target).backward()
        opt.step()
    assert fn(pred, target).item() < first


def test_unknown_loss_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="logsum"):
        LossConfig(name="kl")
