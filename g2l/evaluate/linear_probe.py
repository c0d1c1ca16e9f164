"""Linear probe: logistic regression on standardised features, C chosen on a validation split, many seeds."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

# Below this many feature values a multi-threaded BLAS only adds synchronisation overhead to each
# L-BFGS step (7x slower on a busy 2-core runner); larger probes keep every core.
_SINGLE_THREAD_BELOW = 5_000_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """Per-seed probe scores on the test split, with the C each seed chose."""

    seeds: tuple[int, ...]
    balanced_accuracy: tuple[float, ...]
    auc: tuple[float, ...]
    chosen_c: tuple[float, ...]

    @property
    def balanced_accuracy_mean(self) -> float:
        """Mean balanced accuracy over seeds."""
        return float(np.mean(self.balanced_accuracy))

    @property
    def balanced_accuracy_std(self) -> float:
        """Population standard deviation of balanced accuracy over seeds."""
        return float(np.std(self.balanced_accuracy))

    @property
    def auc_mean(self) -> float:
        """Mean macro one-vs-rest AUC over seeds (NaN when undefined)."""
        return float(np.mean(self.auc))

    @property
    def auc_std(self) -> float:
        """Standard deviation of the AUC over seeds."""
        return float(np.std(self.auc))


def _model(c: float, seed: int, max_iter: int) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))


def macro_ovr_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in `y_true` (binary: the positive class's AUC)."""
    present = np.unique(y_true)
    if present.size < 2:
        return float("nan")
    if classes.size == 2:
        return float(roc_auc_score(y_true == classes[1], proba[:, 1]))
    scores = [roc_auc_score(y_true == c, proba[:, i]) for i, c in enumerate(classes) if c in present]
    return float(np.mean(scores))


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    seed: int,
    c_grid: Sequence[float],
    val_fraction: float = 0.2,
    max_iter: int = 2000,
) -> tuple[Pipeline, float]:
    """Choose C on a seeded stratified validation split of the training set, then refit on all of it."""
    counts = np.unique(train_y, return_counts=True)[1]
    n_val = int(np.ceil(val_fraction * len(train_y)))
    # Stratify when every class can appear on both sides; tiny sets fall back to a plain seeded split.
    stratify = train_y if counts.min() >= 2 and counts.size <= min(n_val, len(train_y) - n_val) else None
    fit_idx, val_idx = train_test_split(
        np.arange(len(train_y)), test_size=val_fraction, random_state=seed, stratify=stratify
    )
    best_c, best_score = float(c_grid[0]), -np.inf
    limits = 1 if train_x.size < _SINGLE_THREAD_BELOW else None
    with warnings.catch_warnings(), threadpool_limits(limits=limits):
        # Small C grids on tiny sets may not fully converge; the validation score judges the result.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in c_grid if np.unique(train_y[fit_idx]).size >= 2 else ():  # else: keep the first C
            model = _model(float(c), seed, max_iter).fit(train_x[fit_idx], train_y[fit_idx])
            score = balanced_accuracy_score(train_y[val_idx], model.predict(train_x[val_idx]))
            if score > best_score:  # strict: ties keep the smaller C (stronger regularisation)
                best_c, best_score = float(c), score
        model = _model(best_c, seed, max_iter).fit(train_x, train_y)
    return model, best_c


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seeds: Sequence[int],
    c_grid: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0),
    val_fraction: float = 0.2,
    max_iter: int = 2000,
) -> ProbeResult:
    """Balanced accuracy and macro OvR AUC on the test split per seed (seed: validation split + solver)."""
    if len(np.unique(train_y)) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split")
    bacc, auc, chosen = [], [], []
    for seed in seeds:
        model, c = fit_probe(train_x, train_y, int(seed), c_grid, val_fraction, max_iter)
        pred = model.predict(test_x)
        proba = model.predict_proba(test_x)
        bacc.append(float(balanced_accuracy_score(test_y, pred)))
        auc.append(macro_ovr_auc(np.asarray(test_y), proba, model.classes_))
        chosen.append(c)
    return ProbeResult(
        seeds=tuple(int(s) for s in seeds),
        balanced_accuracy=tuple(bacc),
        auc=tuple(auc),
        chosen_c=tuple(chosen),
    )
