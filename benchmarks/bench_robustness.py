"""Robustness index throughput: vectorised (blocked matmul + top-k) vs a plain per-sample loop, same run.

Usage: python benchmarks/bench_robustness.py [--n 100000] [--dim 256] [--loop-n 500]
Also times the bare similarity matmul (the physical floor). The loop is timed on --loop-n samples
and extrapolated quadratically (it is O(N^2 d) like the vectorised one, one row at a time).
Prints seconds and the ratios.
"""

import argparse
import time

import numpy as np

from g2l.evaluate.robustness import robustness_index, unit_rows


def loop_index(x, labels, sites, groups, ks):
    xn = unit_rows(x)
    counts = {k: [0, 0, 0] for k in ks}
    for i in range(len(x)):
        d = 1.0 - xn @ xn[i]
        d[groups == groups[i]] = np.inf
        order = np.argsort(d, kind="stable")
        for k in ks:
            nb = order[:k]
            sl, ss = labels[nb] == labels[i], sites[nb] == sites[i]
            counts[k][0] += int((sl & ss).sum())
            counts[k][1] += int((sl & ~ss).sum())
            counts[k][2] += int((~sl & ss).sum())
    return counts


def matmul_floor(x, device):
    """Seconds for just the blocked x @ x.T that any exact all-pairs cosine kNN must compute."""
    import torch

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    xt = torch.from_numpy(unit_rows(x)).to(dev)
    rows = max(1, (64 * 2**20) // (4 * len(x)))
    t = time.perf_counter()
    for lo in range(0, len(x), rows):
        s = xt[lo : lo + rows] @ xt.T
        float(s[0, 0])  # synchronise
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--loop-n", type=int, default=500)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ks = (3, 5, 10, 20)

    def data(n):
        return (
            rng.standard_normal((n, args.dim)).astype(np.float32),
            rng.integers(0, 5, n),
            rng.integers(0, 4, n),
            rng.integers(0, max(2, n // 100), n),
        )

    x, lab, site, grp = data(args.loop_n)
    t = time.perf_counter()
    loop_index(x, lab, site, grp, ks)
    loop_s = time.perf_counter() - t
    robustness_index(x, lab, site, grp, ks, device=args.device)  # warm-up (torch import, threads)
    t = time.perf_counter()
    robustness_index(x, lab, site, grp, ks, device=args.device)
    vec_small = time.perf_counter() - t

    x, lab, site, grp = data(args.n)
    t = time.perf_counter()
    ri = robustness_index(x, lab, site, grp, ks, device=args.device)
    vec_s = time.perf_counter() - t
    floor_s = matmul_floor(x, args.device)
    loop_extrapolated = loop_s * (args.n / args.loop_n) ** 2
    print(
        f"loop:       {args.loop_n} x {args.dim}: {loop_s:.2f} s  "
        f"(vectorised on the same: {vec_small:.3f} s, "
        f"{loop_s / vec_small:.0f}x)"
    )
    print(
        f"vectorised: {args.n} x {args.dim}: {vec_s:.1f} s; loop extrapolated to {args.n}: "
        f"{loop_extrapolated / 3600:.1f} h; ratio {loop_extrapolated / vec_s:.0f}x"
    )
    print(
        f"floor:      the bare blocked similarity matmul alone: {floor_s:.1f} s; the index takes "
        f"{vec_s / floor_s:.2f}x the floor (exact kNN needs all N^2 d products)"
    )
    print(f"pathorob@10 on random data: {ri[10]['pathorob']:.3f} (expected ~0.43 for 5 labels x 4 sites)")


if __name__ == "__main__":
    main()
