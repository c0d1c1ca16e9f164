"""Distillation loop throughput vs a bare forward/backward of the same student on the same batch.

Both arms run in this process on the same machine: (1) bare: one preprocessed batch held in memory,
student + head forward, loss, backward, clip, AdamW step, nothing else; (2) loop: `Trainer` on real
shards + a tiny-teacher cache with the same student, batch and optimiser (data loading, views,
accumulation, logging, metrics, SIGTERM flag, all included). Prints steps/s and tiles/s of both and
their ratio (goal: the loop adds < 10 % on CPU). On CUDA also the model FLOPs utilisation (MFU) of
the loop against the chip's dense bf16 peak.

    PYTHONPATH=. python benchmarks/distill.py --student vit_small_patch16_224 --batch 8 --steps 12
    PYTHONPATH=. python benchmarks/distill.py --device cuda --student vit_large_patch14_reg4_dinov2 \
        --batch 64 --steps 30 --workers 8 --tiles-per-slide 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}


def _peak_tflops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _data(root: Path, slides: int, tiles_per_slide: int) -> tuple[str, str]:
    from g2l.embed import EmbedConfig, run_embed
    from tests.fixtures.shards import write_synthetic_shards

    names = tuple(f"slide{i}" for i in range(slides))
    shards = write_synthetic_shards(root, slides=names, tiles_per_slide=tiles_per_slide, tiles_per_shard=64)
    cache = run_embed(shards, root, EmbedConfig(views=2, num_workers=0, batch_size=64), quiet=True)
    return str(shards), cache


def _config(args: argparse.Namespace, steps: int) -> Any:
    from g2l.config import from_dict
    from g2l.distill.config import DistillConfig

    return from_dict(
        DistillConfig,
        {
            "student": args.student,
            "per_device_batch": args.batch,
            "global_batch": args.batch,
            "num_workers": args.workers,
            "log_every_steps": 1,
            "export": "last",
            "schedule": {"max_steps": steps, "warmup_steps": 1},
            "checkpoint": {"every_steps": 10**6},
            "validation": {"fraction": 0.0},
            "early_stopping": {"enabled": False},
        },
    )


def _sources(args: argparse.Namespace, cache: str, device: torch.device) -> Any:
    from g2l.distill.sources import Sources, view_spec_from
    from g2l.embed import open_cache
    from g2l.models import build_model

    c = open_cache(cache)
    student = build_model(args.student, device=device, pretrained=False)  # random init: no download
    return Sources(
        student=student,
        teacher=None,
        cache=c,
        view_spec=view_spec_from(c.index["view_spec"]),
        teacher_dim=c.dim,
        teacher_name=c.teacher,
        teacher_sha256=c.weights_sha256,
        cache_key=c.key,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare(trainer: Any, steps: int, warmup: int) -> list[float]:
    """Per-step seconds of forward/backward/step on one batch already on the device."""
    from g2l.distill.train import collate

    batch = collate([trainer.dataset[it] for it in trainer.plan.rank_share(0, 0, 1)])
    batch = {k: v.to(trainer.env.device) for k, v in batch.items()}
    times = []
    for i in range(warmup + steps):
        _sync(trainer.env.device)
        t0 = time.perf_counter()
        trainer.train_step([batch])
        _sync(trainer.env.device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def loop(trainer: Any, warmup: int) -> list[float]:
    """Per-step wall seconds of the real training loop (end of step to end of step)."""
    stamps: list[float] = []
    trainer.step_callback = lambda step: stamps.append(time.perf_counter())
    trainer.run()
    return [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :], strict=False)]


def step_flops(trainer: Any) -> float:
    """Model FLOPs of one training step (forward + backward) of student + head, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(trainer.config.per_device_batch, 3, 224, 224, device=trainer.env.device)
    counter = FlopCounterMode(display=False)
    with counter:
        pred, _ = trainer.module(x)
        pred.float().sum().backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def main() -> None:
    """Run both arms and print the figures (and a JSON line)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--student", default="vit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--slides", type=int, default=2)
    parser.add_argument("--tiles-per-slide", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from g2l.distill.runtime import DistEnv
    from g2l.distill.train import Trainer

    device = torch.device(args.device)
    env = DistEnv(device=device)
    with tempfile.TemporaryDirectory() as tmp:
        shards, cache = _data(Path(tmp) / "data", args.slides, args.tiles_per_slide)
        total = args.warmup + args.steps + 1
        cfg = _config(args, total)

        def make(out: str) -> Trainer:
            return Trainer(
                cfg, shards, Path(tmp) / out, _sources(args, cache, device), env, resume="never", quiet=True
            )

        bare_times = bare(make("bare"), args.steps, args.warmup)
        loop_times = loop(make("loop"), args.warmup)
        flops = step_flops(make("flops")) if device.type == "cuda" else None

    b, lp = statistics.median(bare_times), statistics.median(loop_times)
    result: dict[str, Any] = {
        "student": args.student,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}",
        "batch": args.batch,
        "workers": args.workers,
        "bare_steps_per_s": 1 / b,
        "bare_tiles_per_s": args.batch / b,
        "loop_steps_per_s": 1 / lp,
        "loop_tiles_per_s": args.batch / lp,
        "loop_over_bare": lp / b,
    }
    if flops is not None:
        peak = _peak_tflops()
        result["step_tflop"] = flops / 1e12
        result["loop_tflops"] = flops / lp / 1e12
        if peak:
            result["mfu"] = flops / lp / (peak * 1e12)
    print(f"student {args.student}, batch {args.batch}, {result['device']}, {args.workers} data worker(s)")
    for label, arm in (("bare forward/backward", "bare"), ("training loop        ", "loop")):
        steps, tiles = result[f"{arm}_steps_per_s"], result[f"{arm}_tiles_per_s"]
        print(f"{label}: {steps:.3f} steps/s, {tiles:.1f} tiles/s")
    print(f"loop / bare step time: {result['loop_over_bare']:.3f} (goal < 1.10 on CPU)")
    if "mfu" in result:
        print(f"MFU: {100 * result['mfu']:.1f} % ({result['loop_tflops']:.0f} TFLOP/s; goal 50 %)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
