"""What report.json keeps for resampling, and the metrics rebuilt from it (the gate's paired bootstrap).

Per benchmark (`report["benchmarks"][b]`):
- `units`: `{"kind": "patient" | "slide" | "tile", "ids": [...]}`, the resampling units (sorted);
- `test`: `{"unit": [i, ...], "label": [c, ...]}`, one entry per scored test sample (a tile, or a slide
  where the label is per slide), pooled over folds for k-fold benchmarks: out-of-fold predictions.
Per model and benchmark (`report["models"][m]["samples"][b]`):
- `lp_log_proba`: [n_test][C] log-probabilities of the seed-averaged linear probe;
- `knn_pred`: [n_test] kNN predictions;
- `ri`: `{"pooled" | "balanced": {"<k>": {"SS", "SO", "OS": [per unit]}}}`, neighbour counts summed over
  each unit's query samples.
Every metric with resampling data is a `UnitStatistic`; `point()` of it is the value in the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from g2l.evaluate.stats import (
    UnitStatistic,
    balanced_accuracy_statistic,
    macro_auc_statistic,
    ratio_statistic,
)

# Significant digits of stored log-probabilities: ranks (AUC) and argmax survive; the file stays small.
_DIGITS = 6
_RI = re.compile(r"^(pathorob_ri|pathorob_ri_balanced|de_jong_ri)@k=(\d+)$")
ROBUSTNESS_PREFIXES = ("pathorob_ri", "de_jong_ri")


class SamplesError(ValueError):
    """The report lacks (or has malformed) resampling data for a metric; names it and the fix."""


def is_robustness_metric(metric: str) -> bool:
    """True for robustness-index metrics (refused on single-site or label-site-confounded benchmarks)."""
    return metric.startswith(ROBUSTNESS_PREFIXES)


def _round(values: np.ndarray) -> list[Any]:
    return np.vectorize(lambda v: float(f"{v:.{_DIGITS}g}"), otypes=[float])(values).tolist()


def benchmark_block(
    unit_kind: str, unit_ids: list[str], test_units: np.ndarray, test_labels: np.ndarray
) -> dict:
    """The benchmark's `units` and `test` entries."""
    return {
        "units": {"kind": unit_kind, "ids": list(unit_ids)},
        "test": {
            "unit": np.asarray(test_units, dtype=np.int64).tolist(),
            "label": np.asarray(test_labels, dtype=np.int64).tolist(),
        },
    }


def model_block(
    log_proba: np.ndarray, knn_pred: np.ndarray, ri: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]]
) -> dict[str, Any]:
    """One model's `samples` entry for one benchmark."""
    return {
        "lp_log_proba": _round(np.asarray(log_proba, dtype=np.float64)),
        "knn_pred": np.asarray(knn_pred, dtype=np.int64).tolist(),
        "ri": {
            kind: {
                str(k): {c: np.asarray(v, dtype=np.int64).tolist() for c, v in counts.items()}
                for k, counts in per_k.items()
            }
            for kind, per_k in ri.items()
        },
    }


def _bench(report: Mapping[str, Any], bench: str) -> tuple[int, np.ndarray, np.ndarray, int]:
    info = (report.get("benchmarks") or {}).get(bench) or {}
    units, test = info.get("units"), info.get("test")
    if not isinstance(units, Mapping) or not isinstance(test, Mapping):
        raise SamplesError(
            f"benchmark {bench!r} in the report has no per-sample test data (`units`, `test`); it was "
            f"written by an older g2l evaluate: re-run `g2l evaluate` to get a report the gate can resample"
        )
    unit = np.asarray(test.get("unit") or [], dtype=np.int64)
    label = np.asarray(test.get("label") or [], dtype=np.int64)
    n_units = len(units.get("ids") or [])
    if unit.shape != label.shape or (unit.size and (unit.min() < 0 or unit.max() >= n_units)):
        raise SamplesError(
            f"benchmark {bench!r}: malformed `test` block (units out of range or lengths differ)"
        )
    n_classes = len(info.get("classes") or []) or int(label.max(initial=-1)) + 1
    return n_units, unit, label, n_classes


def statistic(report: Mapping[str, Any], model: str, bench: str, metric: str) -> UnitStatistic | None:
    """The metric of `model` on `bench` as a function of unit multiplicities; None when not resampled.

    None means the metric has no per-unit decomposition (e.g. `cka_teacher`); a metric that should
    have one but whose data is missing is a SamplesError.
    """
    m = _RI.match(metric)
    if metric not in ("lp_balanced_accuracy", "lp_auc", "knn_balanced_accuracy") and m is None:
        return None
    n_units, unit, label, n_classes = _bench(report, bench)
    samples = ((report.get("models") or {}).get(model) or {}).get("samples", {}).get(bench)
    if not isinstance(samples, Mapping):
        raise SamplesError(
            f"model {model!r} has no per-sample data for benchmark {bench!r} in the report; "
            f"re-run g2l evaluate"
        )
    if metric == "knn_balanced_accuracy":
        pred = np.asarray(samples.get("knn_pred") or [], dtype=np.int64)
        _same_length(pred, label, model, bench, "knn_pred")
        return balanced_accuracy_statistic(unit, label, pred, n_units, n_classes)
    if metric in ("lp_balanced_accuracy", "lp_auc"):
        scores = np.asarray(samples.get("lp_log_proba") or [], dtype=np.float64)
        _same_length(scores, label, model, bench, "lp_log_proba")
        if metric == "lp_auc":
            return macro_auc_statistic(unit, label, scores, n_units)
        return balanced_accuracy_statistic(unit, label, np.argmax(scores, axis=1), n_units, n_classes)
    assert m is not None
    kind = "balanced" if m.group(1) == "pathorob_ri_balanced" else "pooled"
    counts = ((samples.get("ri") or {}).get(kind) or {}).get(m.group(2))
    if not isinstance(counts, Mapping):
        raise SamplesError(
            f"model {model!r} on {bench!r}: no per-unit neighbour counts for {metric} "
            f"(ri.{kind}.{m.group(2)}); "
            f"is k={m.group(2)} in evaluate.robustness_ks?"
        )
    so = np.asarray(counts["SO"], dtype=np.float64)
    os_ = np.asarray(counts["OS"], dtype=np.float64)
    if so.size != n_units or os_.size != n_units:
        raise SamplesError(
            f"model {model!r} on {bench!r}: {metric} counts do not cover the benchmark's units"
        )
    if m.group(1) == "de_jong_ri":
        return ratio_statistic(so, os_)  # de Jong et al. 2025: sum SO / sum OS
    return ratio_statistic(so, so + os_)  # PathoROB: sum SO / (sum SO + sum OS)


def _same_length(values: np.ndarray, label: np.ndarray, model: str, bench: str, key: str) -> None:
    if values.shape[0] != label.size:
        raise SamplesError(
            f"model {model!r} on {bench!r}: `{key}` has {values.shape[0]} rows but the benchmark has "
            f"{label.size} test samples"
        )


__all__ = [
    "ROBUSTNESS_PREFIXES",
    "SamplesError",
    "benchmark_block",
    "is_robustness_metric",
    "model_block",
    "statistic",
]
