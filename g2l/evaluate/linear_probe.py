"""Linear probe: logistic regression on standardised features, C chosen on a validation split, many seeds.

The validation split that picks C is the benchmark's official one when it has one (BRACS, TCGA TILs),
else a seeded split of the training side *by patient* (`train_groups`), so C is never chosen on tiles
of patients that are also fitted on. Each seed yields test log-probabilities; the report scores their
average (a log-linear pool over seeds), and the per-seed scores give the spread due to the choice of C.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

# Below this many feature values a multi-threaded BLAS only adds synchronisation overhead to each
# L-BFGS step (7x slower on a busy 2-core runner); larger probes keep every core.
_SINGLE_THREAD_BELOW = 5_000_000
# Log-probability given to a class the training side never saw (finite, so JSON and averages stay exact).
MISSING_CLASS_LOG_PROBA = -1000.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """Per-seed probe outputs on the test split: log-probabilities [n_test, n_classes], scores, chosen C."""

    seeds: tuple[int, ...]
    balanced_accuracy: tuple[float, ...]
    auc: tuple[float, ...]
    chosen_c: tuple[float, ...]
    log_proba: tuple[np.ndarray, ...] = ()

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

    def pooled_log_proba(self) -> np.ndarray:
        """The seeds' log-probabilities averaged and renormalised (a log-linear pool), [n_test, n_classes]."""
        mean = np.mean(np.stack(self.log_proba), axis=0)
        top = mean.max(axis=1, keepdims=True)
        return mean - (top + np.log(np.exp(mean - top).sum(axis=1, keepdims=True)))


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


def validation_split(
    train_y: np.ndarray, seed: int, val_fraction: float, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val) indices: by group (patient) when `groups` are given, label-stratified where possible.

    With groups: the first fold of a seeded StratifiedGroupKFold with ~1/val_fraction folds whose fit
    side still has two classes; no group is ever on both sides. Without groups (or with one group):
    a seeded stratified split of rows, as before.
    """
    y = np.asarray(train_y)
    idx = np.arange(len(y))
    if groups is not None and np.unique(groups).size >= 2:
        g = np.asarray(groups)
        n_splits = int(max(2, min(np.unique(g).size, round(1.0 / val_fraction))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class" on small sets
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            for fit_idx, val_idx in splitter.split(idx, y, g):
                if np.unique(y[fit_idx]).size >= 2:
                    return fit_idx, val_idx
    counts = np.unique(y, return_counts=True)[1]
    n_val = int(np.ceil(val_fraction * len(y)))
    # Stratify when every class can appear on both sides; tiny sets fall back to a plain seeded split.
    stratify = y if counts.min() >= 2 and counts.size <= min(n_val, len(y) - n_val) else None
    fit_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=stratify)
    return np.asarray(fit_idx), np.asarray(val_idx)


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    seed: int,
    c_grid: Sequence[float],
    val_fraction: float = 0.2,
    max_iter: int = 2000,
    *,
    groups: np.ndarray | None = None,
    val_mask: np.ndarray | None = None,
) -> tuple[Pipeline, float]:
    """Choose C on a validation split, then refit on the whole training side (fit + validation).

    `val_mask` marks an official validation set inside the training side (used as is); otherwise the
    split is drawn by `validation_split` (by patient when `groups` are given).
    """
    if val_mask is not None and np.any(val_mask) and not np.all(val_mask):
        fit_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    else:
        fit_idx, val_idx = validation_split(train_y, seed, val_fraction, groups)
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


def _full_log_proba(model: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Log-probabilities for every class index 0..n_classes-1 (classes unseen in training get a floor)."""
    out = np.full((x.shape[0], n_classes), MISSING_CLASS_LOG_PROBA)
    lp = model.predict_log_proba(x)
    out[:, np.asarray(model.classes_, dtype=np.int64)] = np.maximum(lp, MISSING_CLASS_LOG_PROBA)
    return out


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seeds: Sequence[int],
    c_grid: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0),
    val_fraction: float = 0.2,
    max_iter: int = 2000,
    *,
    groups: np.ndarray | None = None,
    val_mask: np.ndarray | None = None,
    n_classes: int | None = None,
) -> ProbeResult:
    """Per seed: fit (C on a patient-grouped or official validation split), test scores and log-probas.

    Labels are integer class indices; `n_classes` (default: max label + 1) sets the log-proba columns.
    """
    if len(np.unique(train_y)) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split")
    n_cls = int(n_classes or max(int(np.max(train_y)), int(np.max(test_y, initial=0))) + 1)
    bacc, auc, chosen, logp = [], [], [], []
    for seed in seeds:
        model, c = fit_probe(
            train_x, train_y, int(seed), c_grid, val_fraction, max_iter, groups=groups, val_mask=val_mask
        )
        pred = model.predict(test_x)
        proba = model.predict_proba(test_x)
        bacc.append(float(balanced_accuracy_score(test_y, pred)))
        auc.append(macro_ovr_auc(np.asarray(test_y), proba, model.classes_))
        chosen.append(c)
        logp.append(_full_log_proba(model, test_x, n_cls))
    return ProbeResult(
        seeds=tuple(int(s) for s in seeds),
        balanced_accuracy=tuple(bacc),
        auc=tuple(auc),
        chosen_c=tuple(chosen),
        log_proba=tuple(logp),
    )
