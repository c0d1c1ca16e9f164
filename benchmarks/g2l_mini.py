"""The G2L paper's story in miniature, on the demo's data: does the student carry the teacher's knowledge?

Rows: the teacher (demo-vit-teacher, trained on labelled synthetic tissue of other stains), the untrained
student (demo-vit-student, seeded init), and the student distilled on the demo's unlabelled slides with
the log-sum (G2L), cosine and MSE losses, each with 3 seeds (mean +- half the range). Columns: linear-
probe AUC and balanced accuracy, kNN balanced accuracy, PathoROB and de Jong robustness indices at
k = 10, and CKA to the teacher (debiased), on the demo's synthetic benchmark (three sites whose stains
differ). Every run is also judged by the demo's gate (configs/gate_demo.yaml). Everything comes from
`g2l.demo_study` (the same config, data and code as `make demo`); inputs are built once under --out.

    .venv/bin/python benchmarks/g2l_mini.py                 # ~10 min on 2 idle cores
    .venv/bin/python benchmarks/g2l_mini.py --markdown      # the table for benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from g2l.demo_study import TEACHER, UNTRAINED, prepare_study, rule_margins, study_run
    from g2l.demo_table import format_table, markdown_table, model_metrics

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output/g2l-mini"))
    parser.add_argument("--losses", nargs="+", default=["logsum", "cosine", "mse"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--max-steps", type=int, default=None, help="override distill.schedule.max_steps")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()

    started = time.monotonic()
    cpu0 = os.times()
    study = prepare_study(args.out)
    prepared = time.monotonic() - started
    runs = []
    for loss in args.losses:
        for seed in args.seeds:
            run = study_run(study, name=f"{loss}-seed{seed}", loss=loss, seed=seed, threads=args.threads,
                            max_steps=args.max_steps)
            margins = [m for m in rule_margins(run.decision).values() if m is not None]
            print(f"{run.name}: distil {run.distill_seconds:.0f} s, total {run.seconds:.0f} s, gate "
                  f"{'passed' if run.passed else 'FAILED'} (smallest margin {min(margins):+.4f})", flush=True)
            runs.append(run)
    bench = next(iter(runs[0].report["benchmarks"]))
    rows = [("teacher", [model_metrics(runs[0].report, TEACHER, bench)]),
            ("untrained student", [model_metrics(runs[0].report, UNTRAINED, bench)])]
    for loss in args.losses:
        label = {"logsum": "distilled, log-sum (G2L)", "cosine": "distilled, cosine", "mse": "distilled, MSE"}
        rows.append((label.get(loss, f"distilled, {loss}"),
                     [model_metrics(r.report, "student", bench) for r in runs if r.loss == loss]))
    cpu1 = os.times()
    print()
    print(markdown_table(rows) if args.markdown else format_table(rows))
    print()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) + (cpu1.children_user - cpu0.children_user)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"load {os.getloadavg()[0]:.1f}",
        "wall_s": round(time.monotonic() - started, 1), "prepare_s": round(prepared, 1),
        "cpu_s": round(cpu, 1), "runs": len(runs), "gate_passed": sum(r.passed for r in runs),
        "seeds": args.seeds, "threads": args.threads,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
