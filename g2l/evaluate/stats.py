"""Unit-weighted metrics for the bootstrap: one draw = multiplicities of resampling units (patients).

A bootstrap replicate resamples test *units* (patients, else slides) with replacement; every sample
of a unit drawn m times counts m times. Each metric here is therefore written as a function of a
weight matrix `counts` [draws, units] and returns one value per draw; the point estimate is the same
function at weight 1 for every unit, so the report's number and the bootstrap's centre never differ.
Pure numpy: `g2l gate` imports it without torch or scikit-learn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterator

import numpy as np

# Elements of one [draws, samples] weight block: bounds memory (~64 MB in float64) whatever N is.
_BLOCK_ELEMENTS = 8_000_000


@dataclasses.dataclass(frozen=True)
class UnitStatistic:
    """A metric as a function of unit multiplicities: `fn(counts [D, U]) -> [D]` over `units` of them.

    `active` are the units the metric is computed from (e.g. the units with test samples); a bootstrap
    resamples those and gives the others weight 0. Two statistics with the same `active` units are
    resampled identically (paired) when they share a seed.
    """

    fn: Callable[[np.ndarray], np.ndarray]
    units: int
    active: np.ndarray

    def point(self) -> float:
        """The metric on the data as observed (every unit once)."""
        ones = np.zeros((1, self.units), dtype=np.float64)
        ones[0, self.active] = 1.0
        return float(self.fn(ones)[0])

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """Values for a block of draws."""
        return self.fn(counts)


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from strings/ints, the same on every machine and Python (no `hash()` salt)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def draw_counts(
    active: np.ndarray, units: int, draws: int, seed: int, block: int | None = None
) -> Iterator[np.ndarray]:
    """Bootstrap multiplicities [d, units] in blocks of draws: `len(active)` units drawn with replacement.

    Deterministic in (`active`, `units`, `draws`, `seed`) and independent of `block`: the multinomial
    counts are generated draw by draw from one seeded stream.
    """
    act = np.asarray(active, dtype=np.int64)
    if act.size == 0:
        raise ValueError("no resampling units: the benchmark has no test samples for this metric")
    rng = np.random.default_rng(seed)
    probs = np.full(act.size, 1.0 / act.size)
    step = block or max(1, min(draws, _BLOCK_ELEMENTS // max(1, units)))
    done = 0
    while done < draws:
        d = min(step, draws - done)
        picked = rng.multinomial(act.size, probs, size=d)
        counts = np.zeros((d, units), dtype=np.float64)
        counts[:, act] = picked
        yield counts
        done += d


def evaluate_draws(stat: UnitStatistic, counts_blocks: Iterator[np.ndarray]) -> np.ndarray:
    """The statistic on every draw, concatenated."""
    return np.concatenate([stat(c) for c in counts_blocks])


def _rows_per_block(n_samples: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, n_samples))


def balanced_accuracy_statistic(
    unit_of_sample: np.ndarray, labels: np.ndarray, pred: np.ndarray, units: int, n_classes: int
) -> UnitStatistic:
    """Balanced accuracy (mean recall over the classes present) with samples weighted by their unit."""
    u = np.asarray(unit_of_sample, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(pred, dtype=np.int64)
    total = np.zeros((units, n_classes))
    correct = np.zeros((units, n_classes))
    np.add.at(total, (u, y), 1.0)
    np.add.at(correct, (u, y), (p == y).astype(np.float64))

    def fn(counts: np.ndarray) -> np.ndarray:
        n = counts @ total
        k = counts @ correct
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(n > 0, k / np.where(n > 0, n, 1.0), np.nan)
        present = n > 0
        out = np.nansum(recall, axis=1) / np.maximum(present.sum(axis=1), 1)
        out[present.sum(axis=1) == 0] = np.nan
        return out

    return UnitStatistic(fn=fn, units=units, active=np.unique(u))


def _auc_parts(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order, tie-group starts and positive mask in sorted order (ties count one half)."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts, positive[order]


def _weighted_auc(weights: np.ndarray, order: np.ndarray, starts: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """AUC per row of `weights` [D, n]: P(score_pos > score_neg) + 1/2 P(tie), pairs weighted by w_i w_j."""
    w = weights[:, order]
    wpos = np.add.reduceat(w * pos, starts, axis=1)
    wneg = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(wneg, axis=1) - wneg
    num = (wpos * (neg_below + 0.5 * wneg)).sum(axis=1)
    den = wpos.sum(axis=1) * wneg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# Above this many units the per-unit pair matrices (U x U per class) would not fit comfortably; the
# sample-weighted form is used instead (same numbers, O(draws x samples) per class).
_MAX_PAIR_UNITS = 4000


def _auc_pair_matrix(
    unit: np.ndarray, positive: np.ndarray, score: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, pos, neg): A[u, v] = sum over positives i of unit u and negatives j of unit v of
    1[s_i > s_j] + 1/2 1[s_i = s_j]; pos/neg = positives/negatives per unit.

    With unit multiplicities c, the weighted AUC is c'Ac / ((c.pos)(c.neg)): each bootstrap draw then
    costs O(U^2) instead of O(n). Built one negative unit at a time by binary search, O(U n_pos log n).
    """
    a = np.zeros((n_units, n_units))
    pos_idx = np.flatnonzero(positive)
    pos_idx = pos_idx[np.argsort(unit[pos_idx], kind="mergesort")]  # grouped by unit for reduceat
    pos_count = np.bincount(unit[positive], minlength=n_units).astype(np.float64)
    neg_count = np.bincount(unit[~positive], minlength=n_units).astype(np.float64)
    if pos_idx.size == 0 or neg_count.sum() == 0:
        return a, pos_count, neg_count
    pos_units, unit_starts = np.unique(unit[pos_idx], return_index=True)
    pos_scores = score[pos_idx]
    neg_idx = np.flatnonzero(~positive)
    neg_idx = neg_idx[np.lexsort((score[neg_idx], unit[neg_idx]))]  # by unit, then by score
    neg_units, neg_starts = np.unique(unit[neg_idx], return_index=True)
    neg_ends = np.r_[neg_starts[1:], neg_idx.size]
    for v, lo, hi in zip(neg_units, neg_starts, neg_ends, strict=True):
        scores_v = score[neg_idx[lo:hi]]
        below = np.searchsorted(scores_v, pos_scores, side="left")
        not_above = np.searchsorted(scores_v, pos_scores, side="right")
        a[pos_units, v] = np.add.reduceat(0.5 * (below + not_above), unit_starts)
    return a, pos_count, neg_count


def macro_auc_statistic(
    unit_of_sample: np.ndarray, labels: np.ndarray, scores: np.ndarray, units: int, method: str = "auto"
) -> UnitStatistic:
    """Macro one-vs-rest ROC AUC over the classes present (two columns: the positive class's AUC).

    `scores` [n, C] are per-class scores (log-probabilities); ties count one half, as scikit-learn's
    `roc_auc_score`. Samples are weighted by their unit's multiplicity. `method`: `pairs` (per-unit
    pair matrices, the default up to 4000 units), `samples` (sample-weighted), or `auto`.
    """
    if method not in ("auto", "pairs", "samples"):
        raise ValueError(f"method must be auto, pairs or samples, got {method!r}")
    u = np.asarray(unit_of_sample, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    sc = np.asarray(scores, dtype=np.float64)
    if sc.ndim != 2 or sc.shape[0] != y.size:
        raise ValueError(f"scores must be [n, classes] with n = {y.size}, got {sc.shape}")
    classes = [1] if sc.shape[1] == 2 else list(range(sc.shape[1]))
    active = np.unique(u)
    if method == "pairs" or (method == "auto" and active.size <= _MAX_PAIR_UNITS):
        compact = np.searchsorted(active, u)
        mats = [_auc_pair_matrix(compact, y == c, sc[:, c], active.size) for c in classes]

        def fn(counts: np.ndarray) -> np.ndarray:
            c = counts[:, active]
            per_class = []
            for a, pos, neg in mats:
                num = ((c @ a) * c).sum(axis=1)
                den = (c @ pos) * (c @ neg)
                with np.errstate(invalid="ignore", divide="ignore"):
                    per_class.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
            return _nanmean_rows(np.stack(per_class, axis=1))

        return UnitStatistic(fn=fn, units=units, active=active)
    parts = [_auc_parts(sc[:, c], y == c) for c in classes]
    rows = _rows_per_block(y.size)

    def fn_samples(counts: np.ndarray) -> np.ndarray:
        out = np.empty(counts.shape[0])
        for lo in range(0, counts.shape[0], rows):
            w = counts[lo : lo + rows][:, u]
            out[lo : lo + rows] = _nanmean_rows(np.stack([_weighted_auc(w, *p) for p in parts], axis=1))
        return out

    return UnitStatistic(fn=fn_samples, units=units, active=active)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        # An all-NaN row (no class with both positives and negatives) is a legitimate NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=1)


def ratio_statistic(numerator: np.ndarray, denominator: np.ndarray) -> UnitStatistic:
    """sum(numerator) / sum(denominator) over units (a robustness index from per-unit neighbour counts)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"per-unit counts must be two 1-D arrays of one shape, got {num.shape}, {den.shape}")

    def fn(counts: np.ndarray) -> np.ndarray:
        a = counts @ num
        b = counts @ den
        with np.errstate(invalid="ignore", divide="ignore"):
            # a / 0 is inf for a > 0 (de Jong's index with no OS neighbour), NaN for 0 / 0.
            return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.where(a > 0, np.inf, np.nan))

    # Every unit is a query unit (its samples looked for neighbours), whether or not it met SO/OS ones.
    return UnitStatistic(fn=fn, units=num.size, active=np.arange(num.size))


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap values (NaN draws ignored)."""
    v = np.sort(values[np.isfinite(values)])
    if v.size == 0:
        return float("nan"), float("nan")
    q = (1.0 - level) / 2.0
    lo = _order_statistic(v, q)
    hi = float(v[max(0, int(np.ceil((1.0 - q) * v.size - 1e-12)) - 1)])  # as many draws above as below
    return lo, hi


def _order_statistic(sorted_values: np.ndarray, q: float) -> float:
    """The lower bound at one-sided level q: the (floor(q B) + 1)-th smallest of B draws.

    With p = #{draws < t} / B, `p <= q` holds exactly when this bound is >= t, so a test stated with
    the bound and a test stated with the p-value always agree.
    """
    index = min(sorted_values.size - 1, int(np.floor(q * sorted_values.size + 1e-12)))
    return float(sorted_values[index])


def lower_bound(values: np.ndarray, q: float) -> float:
    """One-sided lower confidence bound at level q (e.g. 0.025 for the lower end of a 95% interval)."""
    v = np.sort(values[np.isfinite(values)])
    return _order_statistic(v, q) if v.size else float("nan")


def tail_fraction(values: np.ndarray, threshold: float, strict: bool) -> float:
    """Bootstrap p-value: share of draws below (`strict`: at or below) the threshold (NaN draws ignored)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    below = np.count_nonzero(finite <= threshold) if strict else np.count_nonzero(finite < threshold)
    return float(below) / finite.size


__all__ = [
    "UnitStatistic",
    "balanced_accuracy_statistic",
    "draw_counts",
    "evaluate_draws",
    "lower_bound",
    "macro_auc_statistic",
    "percentile_interval",
    "ratio_statistic",
    "stable_seed",
    "tail_fraction",
]
