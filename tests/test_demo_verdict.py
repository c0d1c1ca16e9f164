"""The demo's verdict does not depend on the machine: torch thread counts, another CPU's kernels, seeds.

The demo distils the same student from the same data with seeds 0, 1, 2, each with 1, 2 and 4 torch
threads, and seed 0 once more under another CPU's SIMD paths (tests/fixtures/cpus.py: AVX2 kernels
instead of AVX-512). Float reductions differ between these, so the students differ in their last bits
and, after hundreds of steps, more; the gate (configs/gate_demo.yaml) must pass in every run, every
rule clearing its threshold by at least twice TOLERANCE, and TOLERANCE must cover the largest change
of the value any rule is judged on (its bootstrap bound) across thread counts and CPUs for one seed
(TOLERANCE: g2l.demo_study.VERDICT_TOLERANCE, per rule). About six minutes on two idle cores:
`pytest -m rehearsal -s tests/test_demo_verdict.py` (-s prints every run's margins).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from g2l.demo_study import prepare_study, rule_bounds, rule_margins, study_run, verdict_tolerance
from tests.fixtures.cpus import OTHER_CPUS

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.rehearsal
SEEDS = (0, 1, 2)
THREADS = (1, 2, 4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdict")
    study = prepare_study(root)
    results = {}
    for seed in SEEDS:
        for threads in THREADS:
            run = study_run(study, name=f"seed{seed}-threads{threads}", seed=seed, threads=threads)
            results[(seed, f"threads={threads}")] = run.decision
    # Seed 0 on "another CPU": a fresh process with torch's AVX2 kernels and OpenBLAS's Haswell ones.
    script = (
        "import json, sys; from g2l.demo_study import prepare_study, study_run; "
        f"s = prepare_study({str(root)!r}); r = study_run(s, name='seed0-avx2', seed=0, threads=2); "
        "print(json.dumps(r.decision))"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **OTHER_CPUS["avx2"], "G2L_DATA": str(root / "data")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results[(0, "avx2")] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def test_the_verdict_passes_with_margin_for_every_seed_thread_count_and_cpu(runs):
    for (seed, where), decision in runs.items():
        margins = {k: m for k, m in rule_margins(decision).items() if m is not None}
        print(f"seed {seed} {where}: " + ", ".join(
            f"{k.split('@')[0]} {m:+.3f} ({m / verdict_tolerance(k):.1f}x tol)" for k, m in margins.items()))
        assert decision["passed"], (seed, where, margins)
        assert len(margins) == 7, margins  # every rule of configs/gate_demo.yaml was judged
        for key, margin in margins.items():
            assert margin >= 2 * verdict_tolerance(key), (seed, where, key, margin)


def test_what_a_thread_count_or_cpu_changes_stays_within_the_stated_tolerance(runs):
    for seed in SEEDS:
        same_seed = [rule_bounds(d) for (s, _), d in runs.items() if s == seed]
        for key in same_seed[0]:
            values = [b[key] for b in same_seed if b[key] is not None]
            change = max(values) - min(values)
            print(f"seed {seed} {key}: change {change:.4f} <= tolerance {verdict_tolerance(key)}")
            assert change <= verdict_tolerance(key), (seed, key, values)
