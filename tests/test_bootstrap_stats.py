"""Unit-weighted metrics equal scikit-learn's with sample weights; draws are seeded and paired."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from g2l.evaluate.stats import (
    balanced_accuracy_statistic,
    draw_counts,
    lower_bound,
    macro_auc_statistic,
    percentile_interval,
    ratio_statistic,
    tail_fraction,
)


def _data(n=300, units=60, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    unit = rng.integers(0, units, n)
    y = rng.integers(0, classes, n)
    scores = rng.standard_normal((n, classes)) + 1.5 * np.eye(classes)[y]
    scores[:40] = np.round(scores[:40])  # ties: counted one half, as scikit-learn does
    return unit, y, scores


@pytest.mark.parametrize("classes", [2, 4])
def test_weighted_metrics_equal_sklearn_with_the_same_sample_weights(classes):
    unit, y, scores = _data(classes=classes)
    counts = np.stack([np.ones(60), np.random.default_rng(1).integers(0, 4, 60)]).astype(float)
    bacc = balanced_accuracy_statistic(unit, y, scores.argmax(1), 60, classes)(counts)
    auc = macro_auc_statistic(unit, y, scores, 60)(counts)
    for row, w_unit in enumerate(counts):
        w = w_unit[unit]
        keep = w > 0
        assert bacc[row] == pytest.approx(
            balanced_accuracy_score(y[keep], scores.argmax(1)[keep], sample_weight=w[keep]), abs=1e-12
        )
        if classes == 2:
            want = roc_auc_score(y[keep], scores[keep, 1], sample_weight=w[keep])
        else:
            want = np.mean(
                [roc_auc_score(y[keep] == c, scores[keep, c], sample_weight=w[keep]) for c in range(classes)]
            )
        assert auc[row] == pytest.approx(want, abs=1e-12)


def test_draws_are_seeded_blocked_alike_and_resample_active_units_only():
    active = np.array([1, 3, 4, 8])
    a = np.concatenate(list(draw_counts(active, 10, 500, seed=3, block=7)))
    b = np.concatenate(list(draw_counts(active, 10, 500, seed=3)))
    assert a.shape == (500, 10) and np.array_equal(a, b)
    assert (a.sum(axis=1) == 4).all() and not a[:, [0, 2, 5, 6, 7, 9]].any()
    assert not np.array_equal(a, np.concatenate(list(draw_counts(active, 10, 500, seed=4))))


def test_ratio_statistic_and_the_bound_p_value_duality():
    so, os_ = np.array([3.0, 0, 5, 2]), np.array([1.0, 4, 0, 2])
    stat = ratio_statistic(so, so + os_)
    assert stat.point() == pytest.approx(10 / 17)
    values = np.random.default_rng(0).normal(0.1, 0.05, 2000)
    for q in (0.025, 0.01, 0.003):
        bound = lower_bound(values, q)
        for t in np.linspace(-0.1, 0.2, 31):
            assert (tail_fraction(values, t, strict=False) <= q) == (bound >= t)
            assert (tail_fraction(values, t, strict=True) <= q) == (bound > t)
    lo, hi = percentile_interval(values)
    assert np.mean(values < lo) <= 0.025 and np.mean(values > hi) <= 0.025
    assert lo == pytest.approx(0.1 - 1.96 * 0.05, abs=0.01) and hi == pytest.approx(
        0.1 + 1.96 * 0.05, abs=0.01
    )
