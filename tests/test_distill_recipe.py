"""The G2L paper's recipe as configuration: each option changes the loss and the schedule as its formula says.

Hand computations below are the paper's formulas written out (log-sum over the batch matrix; cosine
annealing of lr and weight decay; stop once the training loss exceeds the running mean of the last
iterations more than N times), compared with what the training code does.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from g2l.config import ConfigError, from_dict, load_section
from g2l.distill import run_distill
from g2l.distill.config import DistillConfig, EarlyStoppingConfig, ScheduleConfig
from g2l.distill.losses import logsum_loss
from g2l.distill.runtime import Preempted
from g2l.distill.schedule import build_scheduler, lr_factor, set_weight_decay, weight_decay_factor
from g2l.distill.stopping import RunningMeanStop
from tests.fixtures.distill import DistillData, tiny_config

ROOT = Path(__file__).resolve().parents[1]
PRED = [[0.5, -1.25, 2.0, 0.0], [3.0, 0.1, -0.2, 1.0]]
TARGET = [[0.1, 0.25, -1.0, 0.5], [-1.0, 0.3, 0.2, 1.5]]


def _t(rows: list[list[float]], grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


# ---------------------------------------------------------------- loss reduction
@pytest.mark.parametrize("alpha", [1.0, 2.0, 4.0])
def test_batch_reduction_is_the_log_of_the_sum_over_the_whole_matrix(alpha: float) -> None:
    everything = sum(abs(p - t) ** alpha for ps, ts in zip(PRED, TARGET, strict=True)
                     for p, t in zip(ps, ts, strict=True))
    per_sample = [math.log(sum(abs(p - t) ** alpha for p, t in zip(ps, ts, strict=True)))
                  for ps, ts in zip(PRED, TARGET, strict=True)]
    batch = logsum_loss(_t(PRED), _t(TARGET), alpha=alpha, reduction="batch").item()
    sample = logsum_loss(_t(PRED), _t(TARGET), alpha=alpha, reduction="sample").item()
    assert batch == pytest.approx(math.log(everything), rel=1e-12)
    assert sample == pytest.approx(sum(per_sample) / 2, rel=1e-12)
    assert abs(batch - sample) > 0.1  # the option matters


def test_batch_reduction_gradient_weights_samples_by_their_share_of_the_sum() -> None:
    pred = _t(PRED, grad=True)
    logsum_loss(pred, _t(TARGET), alpha=4.0, reduction="batch").backward()
    r = (pred - _t(TARGET)).detach()
    # d/dr log(sum_all |r|^4) = 4 |r|^3 sign(r) / sum_all |r|^4 (no division by the batch size)
    expected = 4 * r.abs().pow(3) * r.sign() / r.abs().pow(4).sum()
    torch.testing.assert_close(pred.grad, expected)


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30])
def test_batch_reduction_is_finite_for_tiny_and_huge_residuals(scale: float) -> None:
    pred = (torch.tensor([[1.0, -2.0], [0.5, 3.0]]) * scale).requires_grad_(True)
    loss = logsum_loss(pred, torch.zeros_like(pred), alpha=4.0, reduction="batch")
    loss.backward()
    expected = 4 * math.log(scale) + math.log(1 + 16 + 0.0625 + 81)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-4) and torch.isfinite(pred.grad).all()


def test_reduction_is_validated() -> None:
    with pytest.raises(ConfigError, match="reduction.*batch"):
        from_dict(DistillConfig, {"loss": {"reduction": "mean"}})


# ---------------------------------------------------------------- lr and weight-decay annealing
def _cosine(s: int, n: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * s / n))


def test_lr_and_weight_decay_follow_the_same_cosine() -> None:
    cfg = ScheduleConfig(max_steps=4, warmup_steps=0, min_lr_ratio=0.0, weight_decay_schedule="cosine",
                         min_weight_decay_ratio=0.1)
    for s in range(5):
        assert lr_factor(s, cfg) == pytest.approx(_cosine(s, 4))
        assert weight_decay_factor(s, cfg) == pytest.approx(0.1 + 0.9 * _cosine(s, 4))
    assert weight_decay_factor(3, ScheduleConfig(max_steps=4)) == 1.0  # constant by default


def test_adamw_applies_the_annealed_weight_decay_hand_computed() -> None:
    # A parameter with zero gradient: Adam's update is 0, so only decoupled weight decay moves it:
    # p_{s+1} = p_s * (1 - lr_s * wd_s) with lr_s = 0.1 c_s and wd_s = 0.5 c_s, c_s = cosine(s / 3).
    cfg = ScheduleConfig(max_steps=3, warmup_steps=0, weight_decay_schedule="cosine")
    p = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = torch.optim.AdamW([{"params": [p], "weight_decay": 0.5, "decays": True}], lr=0.1)
    sched = build_scheduler(opt, cfg)
    expected = 2.0
    for s in range(3):
        p.grad = torch.zeros_like(p)
        set_weight_decay(opt, s, cfg, base=0.5)  # as Trainer.train_step does, before the step
        opt.step()
        sched.step()
        expected *= 1 - (0.1 * _cosine(s, 3)) * (0.5 * _cosine(s, 3))
        assert p.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.usefixtures("one_thread")
def test_training_logs_the_lr_and_weight_decay_each_step_used(
    distill_data: DistillData, tmp_path: Path
) -> None:
    cfg = tiny_config(optim={"lr": 1e-2, "weight_decay": 0.05},
                      schedule={"max_steps": 4, "warmup_steps": 0, "weight_decay_schedule": "cosine"})
    run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True)
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for r in log:  # record of step s (1-based) = optimiser step s - 1
        assert r["lr"] == pytest.approx(1e-2 * _cosine(r["step"] - 1, 4))
        assert r["weight_decay"] == pytest.approx(0.05 * _cosine(r["step"] - 1, 4))


# ---------------------------------------------------------------- training-loss running-mean stop
def _replay(losses: list[float], **kw: object) -> int | None:
    stop = RunningMeanStop(EarlyStoppingConfig(mode="train_running_mean", **kw))  # type: ignore[arg-type]
    for i, loss in enumerate(losses, start=1):
        if stop.update(loss):
            return i
    return None


def test_running_mean_rule_hand_computed() -> None:
    # window 3, stop when exceeded more than once (2 times):
    # step 4: 3.5 vs mean(5,4,3)=4 no; 5: 4.0 vs mean(4,3,3.5)=3.5 yes (1); 6: 3.0 vs 3.5 no;
    # 7: 3.6 vs mean(3.5,4,3)=3.5 yes; 8: 3.7 vs mean(4,3,3.6)=3.533 yes
    losses = [5.0, 4.0, 3.0, 3.5, 4.0, 3.0, 3.6, 3.7]
    assert _replay(losses, window=3, exceed_limit=1, exceed_count="total") == 7  # 1 + 1 more: stop at 7
    assert _replay(losses, window=3, exceed_limit=1, exceed_count="consecutive") == 8  # step 6 reset it
    assert _replay([1.0] * 50, window=3, exceed_limit=0) is None  # equal is not an exceedance
    assert _replay([3.0, 2.0, 1.0, 9.0], window=3, exceed_limit=0) == 4  # no comparison before 3 losses


def test_the_rule_state_round_trips() -> None:
    a = RunningMeanStop(EarlyStoppingConfig(mode="train_running_mean", window=2, exceed_limit=5))
    for loss in (3.0, 2.0, 4.0):
        a.update(loss)
    b = RunningMeanStop(EarlyStoppingConfig(mode="train_running_mean", window=2, exceed_limit=5))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    rising = [5.0, 6.0, 7.0, 8.0, 9.0]  # each above the mean of the two before it
    assert [a.update(v) for v in rising] == [b.update(v) for v in rising] == [False] * 4 + [True]
    assert b.exceeded == a.exceeded == 6 and b.stopped


@pytest.mark.usefixtures("one_thread")
def test_training_stops_where_the_rule_says_and_resumes_with_its_state(
    distill_data: DistillData, tmp_path: Path
) -> None:
    es = {"enabled": True, "mode": "train_running_mean", "window": 3, "exceed_limit": 1,
          "exceed_count": "total"}
    cfg = tiny_config(schedule={"max_steps": 60, "warmup_steps": 0}, early_stopping=es, optim={"lr": 5e-2},
                      checkpoint={"every_steps": 2, "keep_last": 2})
    straight = tmp_path / "straight"
    student = run_distill(cfg, distill_data.shards, distill_data.cache, str(straight), quiet=True)
    card = json.loads((Path(student) / "config.json").read_text())
    losses = [json.loads(x)["loss"] for x in (straight / "train_log.jsonl").read_text().splitlines()
              if '"loss"' in x]
    expected = _replay(losses, window=3, exceed_limit=1, exceed_count="total")
    assert expected is not None and 4 < expected < 60, expected
    assert card["status"] == "early_stopped" and card["steps"] == expected == len(losses)

    def preempt(step: int) -> None:
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    resumed = tmp_path / "resumed"  # interrupted before the stop: resumed, it stops at the same step
    with pytest.raises(Preempted):
        run_distill(cfg, distill_data.shards, distill_data.cache, str(resumed), quiet=True,
                    step_callback=preempt)
    again = run_distill(cfg, distill_data.shards, distill_data.cache, str(resumed), quiet=True)
    assert json.loads((Path(again) / "config.json").read_text())["steps"] == expected


# ---------------------------------------------------------------- pretrained student, shipped configs
def test_a_pretrained_student_needs_its_weights_named() -> None:
    with pytest.raises(ConfigError, match=r"student_weights is required for 'hibou-L'.*`hub`.*hibou-L"):
        from_dict(DistillConfig, {"student": "hibou-L"})
    assert from_dict(DistillConfig, {"student": "hibou-L", "student_weights": "hub"}).student_weights == "hub"
    from_dict(DistillConfig, {"student": "tiny-vit-student"})  # random-init test models need none


@pytest.mark.parametrize("cancer", ["brca", "prad"])
def test_shipped_config_reproduces_the_paper_and_its_student_builds(cancer: str) -> None:
    from g2l.distill.model import Distiller
    from g2l.models import get_spec
    from g2l.models.build import skeleton
    from g2l.models.check import check_model

    cfg = load_section(DistillConfig, ROOT / f"configs/{cancer}.yaml", section="distill")
    assert (cfg.loss.name, cfg.loss.alpha, cfg.loss.reduction) == ("logsum", 4.0, "batch")
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.grad_clip_norm) == (1e-4, 0.05, 0.0)
    assert (cfg.schedule.warmup_steps, cfg.schedule.min_lr_ratio, cfg.schedule.weight_decay_schedule) == (
        0, 0.0, "cosine")
    es = cfg.early_stopping
    assert (es.enabled, es.mode, es.window, es.exceed_limit) == (True, "train_running_mean", 100, 10)
    assert cfg.per_device_batch == 32 and cfg.global_batch == 96  # 32 on each of 3 GPUs
    spec = get_spec(cfg.student)
    assert spec is not None and spec.pretrained and cfg.student_weights == "hub"
    assert spec.hub_repo == "histai/hibou-L"
    report = check_model(cfg.student)
    assert report.params == 303_657_216 and report.embed_dim == 1024
    # the student and the G2L head build and run at full size (on the meta device: no memory)
    student = skeleton(spec.arch, spec.kwargs)
    head = Distiller(student, 1024, 1536).to("meta")
    pred, _ = head(torch.empty(2, 3, 224, 224, device="meta"))
    assert pred.shape == (2, 1536)
