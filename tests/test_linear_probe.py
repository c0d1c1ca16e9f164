"""The linear probe equals scikit-learn's own pipeline on the same features, splits and seeds."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from g2l.evaluate.linear_probe import linear_probe

GRID = (0.001, 0.1, 10.0)


def sklearn_reference(trx, try_, tex, tey, seed):
    fit, val = train_test_split(np.arange(len(try_)), test_size=0.2, random_state=seed, stratify=try_)
    scores = []
    for c in GRID:
        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        m.fit(trx[fit], try_[fit])
        scores.append(balanced_accuracy_score(try_[val], m.predict(trx[val])))
    best = GRID[int(np.argmax(scores))]
    m = make_pipeline(StandardScaler(), LogisticRegression(C=best, max_iter=2000, random_state=seed))
    m.fit(trx, try_)
    proba = m.predict_proba(tex)
    auc = (
        roc_auc_score(tey, proba, multi_class="ovr", average="macro")
        if proba.shape[1] > 2
        else roc_auc_score(tey, proba[:, 1])
    )
    return balanced_accuracy_score(tey, m.predict(tex)), auc, best


def _data(n_classes, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, 300)
    x = rng.standard_normal((300, 12)) + 1.5 * np.eye(n_classes, 12)[y] * rng.uniform(0.5, 2, (300, 1))
    return x[:200], y[:200], x[200:], y[200:]


@pytest.mark.parametrize("n_classes", [2, 4])
def test_probe_matches_sklearn_on_same_features_and_seeds(n_classes):
    trx, try_, tex, tey = _data(n_classes)
    seeds = (0, 1, 2, 3, 4)
    res = linear_probe(trx, try_, tex, tey, seeds=seeds, c_grid=GRID, val_fraction=0.2, max_iter=2000)
    assert res.seeds == seeds and len(res.balanced_accuracy) == 5
    for i, seed in enumerate(seeds):
        bacc, auc, c = sklearn_reference(trx, try_, tex, tey, seed)
        assert res.balanced_accuracy[i] == pytest.approx(bacc, abs=1e-12)
        assert res.auc[i] == pytest.approx(auc, abs=1e-12)
        assert res.chosen_c[i] == c
    assert res.balanced_accuracy_mean == pytest.approx(np.mean(res.balanced_accuracy))
    assert res.balanced_accuracy_std == pytest.approx(np.std(res.balanced_accuracy))
    assert res.balanced_accuracy_mean > 0.6  # the features carry the label


def test_probe_on_label_free_features_is_at_chance():
    rng = np.random.default_rng(1)
    res = linear_probe(
        rng.standard_normal((200, 8)),
        rng.integers(0, 2, 200),
        rng.standard_normal((200, 8)),
        rng.integers(0, 2, 200),
        seeds=range(5),
        c_grid=GRID,
    )
    assert abs(res.balanced_accuracy_mean - 0.5) < 0.12


def test_probe_runs_on_a_tiny_training_set():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 0, 1])
    x = np.random.default_rng(0).standard_normal((10, 4)) + 3 * y[:, None]
    res = linear_probe(x, y, x, y, seeds=range(5), c_grid=GRID)
    assert len(res.balanced_accuracy) == 5 and all(0 <= b <= 1 for b in res.balanced_accuracy)
    assert set(res.chosen_c) <= set(GRID)
