"""The real-size rehearsal as a benchmark: stage seconds and peak memory, against the bare model compute.

Runs `g2l rehearse` (H-optimus-0 and Hibou-L architectures with random weights; tile -> embed ->
distill on 2 gloo processes -> evaluate, all on CPU), then, in this process and on the same machine,
the baseline: a bare teacher forward of one 224 px tile and a bare student forward + backward of one
per-rank batch. The ratios say how much of each stage is the models' own arithmetic and how much is
everything else (loading 4.5 GB of weights, data, checkpoints, export).

    PYTHONPATH=. python benchmarks/rehearsal.py --config configs/brca.yaml --out /tmp/rehearsal
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def _bare(teacher: str, student: str, per_rank_batch: int) -> dict[str, float]:
    from g2l.models import get_spec
    from g2l.models.build import _create

    out: dict[str, float] = {}
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    spec = get_spec(teacher)
    assert spec is not None
    model = _create(spec.arch, spec.kwargs, seed=0).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        model.forward_features(x)  # warm-up
        t0 = time.perf_counter()
        model.forward_features(x)
        out["teacher_forward_s"] = time.perf_counter() - t0
    del model
    spec = get_spec(student)
    assert spec is not None
    model = _create(spec.arch, spec.kwargs, seed=0).train()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each of the 2 ranks gets
    x = torch.randn(per_rank_batch, 3, 224, 224)
    model.forward_features(x)[:, 0].sum().backward()  # warm-up
    t0 = time.perf_counter()
    model.forward_features(x)[:, 0].sum().backward()
    out["student_step_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/brca.yaml")
    parser.add_argument("--out", default="/tmp/g2l-rehearsal")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare-model baseline")
    parser.add_argument("--from-summary", help="a finished rehearsal.json: measure only the baseline")
    args = parser.parse_args()

    from g2l.config import load_section
    from g2l.distill.config import DistillConfig
    from g2l.embed.config import EmbedConfig
    from g2l.rehearse import run_rehearsal
    from g2l.rehearse.setup import PER_DEVICE_BATCH, SLIDES, STEPS, TILES_PER_SLIDE

    if args.from_summary:
        summary = json.loads(Path(args.from_summary).read_text())
        args.out = str(Path(args.from_summary).parent)
    else:
        summary = run_rehearsal(args.config, args.out, quiet=True)
    print(json.dumps(summary, indent=2, sort_keys=True))
    if args.no_baseline or not summary["ok"]:
        return
    teacher = load_section(EmbedConfig, args.config, section="embed").teacher
    student = load_section(DistillConfig, args.config, section="distill").student
    bare = _bare(teacher, student, PER_DEVICE_BATCH)
    forwards = SLIDES * TILES_PER_SLIDE
    embed_s = summary["stages"]["embed"]["seconds"]
    distill_s = summary["stages"]["distill"]["seconds"]
    print(json.dumps({
        "bare_teacher_forward_s": round(bare["teacher_forward_s"], 2),
        "embed_stage_s_per_teacher_forward": round(embed_s / forwards, 2),
        "embed_ratio_to_bare": round(embed_s / (forwards * bare["teacher_forward_s"]), 2),
        "bare_student_step_s": round(bare["student_step_s"], 2),
        "distill_ratio_to_bare_steps": round(distill_s / (STEPS * bare["student_step_s"]), 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }, indent=2))
    Path(args.out, "baseline.json").write_text(json.dumps(bare))


if __name__ == "__main__":
    main()
