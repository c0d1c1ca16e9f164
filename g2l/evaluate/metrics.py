"""All metrics of one model on one benchmark, with what the gate needs to resample them.

The linear probe and kNN are fitted on each split's training side and scored on its test side; with
k folds the out-of-fold predictions are pooled (every sample is scored once, by a model that never saw
its patient). Every resampled metric's value is `UnitStatistic.point()` of the data kept in the
report, so the table, the intervals and the gate all read the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from g2l.evaluate.cka import cka_report
from g2l.evaluate.config import EvaluateConfig
from g2l.evaluate.knn import knn_predict
from g2l.evaluate.linear_probe import linear_probe
from g2l.evaluate.robustness import balanced_unit_counts, unit_counts
from g2l.evaluate.samples import model_block
from g2l.evaluate.stats import (
    UnitStatistic,
    balanced_accuracy_statistic,
    draw_counts,
    evaluate_draws,
    macro_auc_statistic,
    percentile_interval,
    ratio_statistic,
    stable_seed,
)


@dataclasses.dataclass(frozen=True)
class Fold:
    """One split: training rows, test rows, and which training rows form the official validation set."""

    train: np.ndarray
    test: np.ndarray
    val_mask: np.ndarray | None = None  # over `train`; None: draw a validation split by patient


@dataclasses.dataclass(frozen=True)
class Scoring:
    """What the probe and kNN are scored on: samples (tiles, or slides), labels, units, folds."""

    x: np.ndarray
    y: np.ndarray
    unit: np.ndarray  # resampling unit index per sample
    groups: np.ndarray  # grouping for the probe's own validation split (patients)
    folds: tuple[Fold, ...]
    n_classes: int

    def test_rows(self) -> np.ndarray:
        """Every scored sample in ascending order (pooled over folds)."""
        return np.unique(np.concatenate([f.test for f in self.folds]))


@dataclasses.dataclass(frozen=True)
class RobustnessInput:
    """Tile-level labels, sites, groups and units for the robustness index, and PathoROB's subsets."""

    labels: np.ndarray
    sites: np.ndarray
    groups: np.ndarray
    unit: np.ndarray
    n_units: int
    subsets: tuple[np.ndarray, ...]
    defined: bool  # False on single-site benchmarks: the index has nothing to measure there


@dataclasses.dataclass
class BenchmarkResult:
    """Metrics, per-seed values, resampling data and 95% intervals of one model on one benchmark."""

    metrics: dict[str, float | None]
    per_seed: dict[str, list[Any]]
    samples: dict[str, Any]
    intervals: dict[str, list[float]]


def _pooled_predictions(
    scoring: Scoring, config: EvaluateConfig
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(seed-pooled log-probas, kNN predictions, per-seed log-probas), rows = `scoring.test_rows()`."""
    rows = scoring.test_rows()
    where = {int(r): i for i, r in enumerate(rows)}
    n_seeds = len(config.seeds)
    per_seed = [np.zeros((rows.size, scoring.n_classes)) for _ in range(n_seeds)]
    pooled = np.zeros((rows.size, scoring.n_classes))
    knn = np.zeros(rows.size, dtype=np.int64)
    for fold in scoring.folds:
        pos = np.array([where[int(r)] for r in fold.test])
        res = linear_probe(
            scoring.x[fold.train],
            scoring.y[fold.train],
            scoring.x[fold.test],
            scoring.y[fold.test],
            seeds=config.seeds,
            c_grid=config.probe_c_grid,
            val_fraction=config.probe_val_fraction,
            max_iter=config.probe_max_iter,
            groups=scoring.groups[fold.train],
            val_mask=fold.val_mask,
            n_classes=scoring.n_classes,
        )
        for s, lp in enumerate(res.log_proba):
            per_seed[s][pos] = lp
        pooled[pos] = res.pooled_log_proba()
        knn[pos] = knn_predict(
            scoring.x[fold.train], scoring.y[fold.train], scoring.x[fold.test], k=config.knn_k
        )
    return pooled, knn, per_seed


def _interval(stat: UnitStatistic, draws: int, seed: int) -> list[float]:
    values = evaluate_draws(stat, draw_counts(stat.active, stat.units, draws, seed))
    lo, hi = percentile_interval(values, 0.95)
    return [lo, hi]


def benchmark_metrics(
    features: np.ndarray,
    scoring: Scoring,
    robustness: RobustnessInput,
    config: EvaluateConfig,
    teacher_features: np.ndarray | None,
    *,
    bench_name: str,
    n_units: int,
    device: str = "cpu",
) -> BenchmarkResult:
    """Probe, kNN, robustness indices and CKA of one model on one benchmark, with resampling data."""
    pooled, knn, per_seed_lp = _pooled_predictions(scoring, config)
    rows = scoring.test_rows()
    unit, y = scoring.unit[rows], scoring.y[rows]
    stats: dict[str, UnitStatistic] = {
        "lp_balanced_accuracy": balanced_accuracy_statistic(
            unit, y, pooled.argmax(1), n_units, scoring.n_classes
        ),
        "lp_auc": macro_auc_statistic(unit, y, pooled, n_units),
        "knn_balanced_accuracy": balanced_accuracy_statistic(unit, y, knn, n_units, scoring.n_classes),
    }
    seed_bacc = [
        balanced_accuracy_statistic(unit, y, lp.argmax(1), n_units, scoring.n_classes).point()
        for lp in per_seed_lp
    ]
    seed_auc = [macro_auc_statistic(unit, y, lp, n_units).point() for lp in per_seed_lp]
    ri_samples: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    ri_metrics: dict[str, float | None] = {}
    ks = sorted(set(config.robustness_ks))
    if robustness.defined:
        pooled_counts = unit_counts(
            features,
            robustness.labels,
            robustness.sites,
            robustness.groups,
            robustness.unit,
            robustness.n_units,
            ks,
            device=device,
        )
        ri_samples["pooled"] = pooled_counts
        for k in ks:
            c = pooled_counts[k]
            stats[f"pathorob_ri@k={k}"] = ratio_statistic(c["SO"], c["SO"] + c["OS"])
            stats[f"de_jong_ri@k={k}"] = ratio_statistic(c["SO"], c["OS"])
        if robustness.subsets:
            balanced = balanced_unit_counts(
                features,
                robustness.labels,
                robustness.sites,
                robustness.groups,
                robustness.unit,
                robustness.n_units,
                ks,
                list(robustness.subsets),
                device=device,
            )
            ri_samples["balanced"] = balanced
            for k in ks:
                c = balanced[k]
                stats[f"pathorob_ri_balanced@k={k}"] = ratio_statistic(c["SO"], c["SO"] + c["OS"])
    else:
        for k in ks:  # one site: no other-site neighbour can exist, the index is undefined, not 0
            ri_metrics[f"pathorob_ri@k={k}"] = None
            ri_metrics[f"de_jong_ri@k={k}"] = None
    metrics: dict[str, float | None] = {name: s.point() for name, s in stats.items()}
    metrics.update(ri_metrics)
    metrics["lp_balanced_accuracy_std"] = float(np.std(seed_bacc))
    metrics["lp_auc_std"] = float(np.std(seed_auc))
    if teacher_features is not None:
        cka = cka_report(features, teacher_features, seed=stable_seed("cka", bench_name))
        metrics["cka_teacher"] = cka["cka"]
        metrics["cka_teacher_random_baseline"] = cka["random_baseline"]
    intervals = {
        name: _interval(s, config.bootstrap_draws, stable_seed(config.bootstrap_seed, bench_name, name))
        for name, s in stats.items()
    }
    ri_counts = {
        kind: {k: {c: v[c] for c in ("SS", "SO", "OS")} for k, v in per_k.items()}
        for kind, per_k in ri_samples.items()
    }
    return BenchmarkResult(
        metrics=metrics,
        per_seed={"lp_balanced_accuracy": seed_bacc, "lp_auc": seed_auc},
        samples=model_block(pooled, knn, ri_counts),
        intervals=intervals,
    )
