"""Train / validation / test splits of a benchmark's tile table, never with a patient on two sides.

- `column` / `list`: the official split (or a shipped list of it). Its validation set is kept apart to
  choose the probe's C. A patient found on two sides is an error, or (`shared_groups: exclude`) its
  tiles leave the training side so that the official test set stays whole.
- `holdout`: one seeded, label-stratified hold-out of patients.
- `folds`: k seeded, patient-grouped, label-stratified folds (scikit-learn's StratifiedGroupKFold);
  with `preserve_site` every tissue-source site sits in one fold (site-preserved cross-validation,
  Howard et al. 2021, Nat. Commun. 12:4423: TCGA site signatures otherwise inflate biomarker scores).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from g2l.evaluate.definition import SplitSpec


@dataclasses.dataclass(frozen=True)
class Split:
    """Row indices of one split: training side (incl. an official validation set) and test side."""

    train: np.ndarray
    test: np.ndarray
    val_mask: np.ndarray | None = None  # over `train`: the official validation rows, if any


def _stratified_group_folds(
    labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, name: str, what: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    n_groups = np.unique(groups).size
    if n_groups < n_splits:
        raise ValueError(
            f"benchmark {name}: {n_splits} folds need at least {n_splits} {what}, found {n_groups}; "
            f"use fewer folds or more data"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members than ..."
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]


def _official(df: pd.DataFrame, spec: SplitSpec, name: str, units: np.ndarray) -> Split:
    split = df["split"].astype(str).str.lower().to_numpy()
    bad = sorted(set(split) - {"train", "val", "test"})
    if bad:
        raise ValueError(
            f"benchmark {name}: split column has {bad}; use train/val/test, or set "
            f"split.kind: holdout (or folds) to split by patient"
        )
    keep = np.ones(len(df), dtype=bool)
    for side, other in (("test", ("train", "val")), ("val", ("train",))):
        shared = set(units[split == side]) & set(units[np.isin(split, other) & keep])
        if not shared:
            continue
        if spec.shared_groups == "error":
            example = sorted(str(u) for u in shared)[:3]
            raise ValueError(
                f"benchmark {name}: {len(shared)} patient(s)/slide(s) have tiles in both {side} and "
                f"{'/'.join(other)} (e.g. {example}); that leaks them into the score. Fix the data, or set "
                f"split.shared_groups: exclude to drop their tiles from the training side"
            )
        keep &= ~(np.isin(split, other) & np.isin(units, list(shared)))
    test = np.flatnonzero(split == "test")
    train = np.flatnonzero((split != "test") & keep)
    is_val = split[train] == "val"
    val_mask = is_val if is_val.any() and not is_val.all() else None
    return Split(train=train, test=test, val_mask=val_mask)


def make_splits(df: pd.DataFrame, spec: SplitSpec, name: str, units: np.ndarray) -> list[Split]:
    """The benchmark's splits; `units` are the patients (else slides) that may never cross sides."""
    labels = df["label"].astype(str).to_numpy()
    units = np.asarray(units).astype(str)
    if spec.kind in ("column", "list"):
        splits = [_official(df, spec, name, units)]
    elif spec.kind == "holdout":
        n_splits = int(max(2, round(1.0 / spec.test_fraction)))
        tr, te = _stratified_group_folds(labels, units, n_splits, spec.seed, name, "patients")[0]
        splits = [Split(train=tr, test=te)]
    else:
        by = df["site"].astype(str).to_numpy() if spec.preserve_site else units
        what = "sites (site-preserved folds)" if spec.preserve_site else "patients"
        splits = [
            Split(train=tr, test=te)
            for tr, te in _stratified_group_folds(labels, by, spec.folds, spec.seed, name, what)
        ]
    for s in splits:
        if s.train.size == 0 or s.test.size == 0:
            raise ValueError(
                f"benchmark {name}: a split has an empty train or test side "
                f"({s.train.size} train, {s.test.size} test tiles)"
            )
        if np.unique(labels[s.train]).size < 2:
            raise ValueError(f"benchmark {name}: a split's training side has a single class")
        crossing = set(units[s.train]) & set(units[s.test])
        if crossing:  # cannot happen by construction; a loud failure beats a silently leaky score
            raise RuntimeError(f"benchmark {name}: split puts {sorted(crossing)[:3]} on both sides")
    return splits
