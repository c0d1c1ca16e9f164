"""teacher_mode online: the teacher runs in the step on the regenerated views; same loss as the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from g2l.config import ConfigError
from g2l.distill.runtime import DistEnv
from g2l.distill.sources import resolve_sources
from g2l.distill.train import Trainer, collate
from tests.fixtures.distill import DistillData, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(cfg, data: DistillData, out: Path) -> Trainer:
    env = DistEnv()
    return Trainer(cfg, data.shards, out, resolve_sources(cfg, data.cache, env.device), env, quiet=True)


def test_cached_and_online_give_the_same_loss(distill_data: DistillData, tmp_path: Path) -> None:
    cached = _trainer(tiny_config(), distill_data, tmp_path / "c")
    online = _trainer(tiny_config(teacher_mode="online"), distill_data, tmp_path / "o")
    assert online.sources.teacher is not None and cached.sources.teacher is None
    items = cached.plan.rank_share(0, 0, 1)  # both views occur: the plan draws views per tile
    assert {v for _, v in items} == {0, 1}
    batch_c = collate([cached.dataset[it] for it in items])
    batch_o = collate([online.dataset[it] for it in items])
    assert "target" in batch_c and "target" not in batch_o
    torch.testing.assert_close(batch_c["pixels"], batch_o["pixels"], rtol=0, atol=0)
    with torch.no_grad():
        loss_c, pred_c, target_c = cached.batch_loss(batch_c)
        loss_o, pred_o, target_o = online.batch_loss(batch_o)
    torch.testing.assert_close(pred_c, pred_o, rtol=0, atol=0)  # same student, same head init
    # the cache stores float16: targets agree to its precision, and so do the float32 losses
    torch.testing.assert_close(target_o, target_c, rtol=2e-3, atol=2e-3)
    assert loss_o.dtype == loss_c.dtype == torch.float32
    assert loss_o.item() == pytest.approx(loss_c.item(), rel=1e-3)
    # the other view of the same tiles gives targets far outside that tolerance: the comparison has teeth
    other = collate([online.dataset[(i, 1 - v)] for i, v in items])
    with torch.no_grad():
        _, _, target_other = online.batch_loss(other)
    assert (target_other - target_c).abs().max() > 10 * (target_o - target_c).abs().max()


def test_online_teacher_must_match_the_cache(distill_data: DistillData, tmp_path: Path) -> None:
    cfg = tiny_config(teacher_mode="online", teacher="tiny-vit-student")
    with pytest.raises(ConfigError, match="weight digest"):
        resolve_sources(cfg, distill_data.cache, torch.device("cpu"))


def test_patch_tokens_need_the_online_teacher(distill_data: DistillData, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="patch tokens"):
        _trainer(tiny_config(loss={"patch_weight": 0.5}), distill_data, tmp_path)
    trainer = _trainer(tiny_config(teacher_mode="online", loss={"patch_weight": 0.5}), distill_data, tmp_path)
    batch = collate([trainer.dataset[it] for it in trainer.plan.rank_share(0, 0, 1)])
    loss = trainer.train_step([batch])
    assert torch.isfinite(torch.tensor(loss))
    assert trainer.module.patch_head is not None and trainer.module.patch_head.weight.grad is None  # zeroed
