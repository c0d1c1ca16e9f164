"""Gate bootstrap cost: AUC draws through per-unit pair matrices vs the sample-weighted form, same run.

Usage: PYTHONPATH=. python benchmarks/gate_bootstrap.py [--n 20000] [--classes 7] [--units 400] [--draws 2000]
Builds one model's test predictions (n samples of `units` patients, `classes` classes), then times the
2000 paired-bootstrap draws of macro AUC both ways (and balanced accuracy for scale) and checks that
both AUC forms give the same draws. Prints seconds and the ratio.
"""

import argparse
import time

import numpy as np

from g2l.evaluate.stats import balanced_accuracy_statistic, draw_counts, macro_auc_statistic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--units", type=int, default=400)
    ap.add_argument("--draws", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    unit = rng.integers(0, args.units, args.n)
    y = rng.integers(0, args.classes, args.n)
    scores = rng.standard_normal((args.n, args.classes)) + 1.5 * np.eye(args.classes)[y]
    counts = np.concatenate(list(draw_counts(np.arange(args.units), args.units, args.draws, seed=0)))
    timings = {}
    values = {}
    for name, make in (
        ("auc pairs", lambda: macro_auc_statistic(unit, y, scores, args.units, method="pairs")),
        ("auc samples", lambda: macro_auc_statistic(unit, y, scores, args.units, method="samples")),
        (
            "balanced accuracy",
            lambda: balanced_accuracy_statistic(unit, y, scores.argmax(1), args.units, args.classes),
        ),
    ):
        t = time.perf_counter()
        stat = make()
        built = time.perf_counter() - t
        values[name] = stat(counts)
        timings[name] = (built, time.perf_counter() - t)
        print(
            f"{name:18s} build {built:7.2f} s   build + {args.draws} draws {timings[name][1]:7.2f} s",
            flush=True,
        )
    diff = float(np.max(np.abs(values["auc pairs"] - values["auc samples"])))
    ratio = timings["auc samples"][1] / timings["auc pairs"][1]
    print(
        f"n={args.n} classes={args.classes} units={args.units}: samples / pairs = {ratio:.1f}x; "
        f"max |difference| of the draws = {diff:.2e}"
    )


if __name__ == "__main__":
    main()
