"""How a loaded benchmark is scored: resampling units, the probe's samples, folds, robustness inputs."""

from __future__ import annotations

import numpy as np

from g2l.evaluate.benchmark import Benchmark
from g2l.evaluate.metrics import Fold, RobustnessInput, Scoring
from g2l.evaluate.robustness import balanced_subsets, eligibility


def units(bench: Benchmark) -> tuple[str, list[str], np.ndarray]:
    """(kind, sorted unit ids, unit index per tile): the patients (else slides) a bootstrap resamples."""
    return bench.resampling_units()


def scoring(bench: Benchmark, features: np.ndarray) -> Scoring:
    """Samples, labels, units and folds the probe and kNN are scored on (tiles, or slides by mean pooling)."""
    unit = units(bench)[2]
    folds = tuple(Fold(train=tr, test=te, val_mask=vm) for tr, te, vm in bench.folds())
    groups = bench.column(bench.unit_column())  # the probe's validation split never splits a patient
    x, y = np.asarray(features), bench.labels
    if bench.definition.score_level == "slide":
        slide_rows, slides = bench.slide_rows()
        for rows, name in zip(slide_rows, slides, strict=True):
            if np.unique(y[rows]).size > 1:
                raise ValueError(
                    f"benchmark {bench.name} scores slides (score_level: slide) but slide {name} has tiles "
                    f"with different labels; give each slide one label or use score_level: tile"
                )
        x = np.stack([x[rows].mean(axis=0) for rows in slide_rows])
        first = np.array([rows[0] for rows in slide_rows])
        y, unit, groups = y[first], unit[first], groups[first]
        slide_of_tile = np.empty(len(bench), dtype=np.int64)
        for s, rows in enumerate(slide_rows):
            slide_of_tile[rows] = s
        folds = tuple(
            Fold(
                train=np.unique(slide_of_tile[f.train]),
                test=np.unique(slide_of_tile[f.test]),
                val_mask=None if f.val_mask is None else _slide_mask(f, slide_of_tile),
            )
            for f in folds
        )
    return Scoring(x=x, y=y, unit=unit, groups=groups, folds=folds, n_classes=len(bench.classes))


def _slide_mask(fold: Fold, slide_of_tile: np.ndarray) -> np.ndarray:
    train_slides = np.unique(slide_of_tile[fold.train])
    val_slides = set(slide_of_tile[fold.train][fold.val_mask].tolist())
    return np.array([s in val_slides for s in train_slides])


def robustness_input(bench: Benchmark, min_per_cell: int, seed: int = 0) -> RobustnessInput:
    """Tile labels, sites, groups and units for the robustness index; balanced subsets where they exist."""
    _, ids, unit = units(bench)
    labels, sites = bench.column("label"), bench.column("site")
    defined = np.unique(sites).size >= 2
    subsets = balanced_subsets(labels, sites, min_per_cell=min_per_cell, seed=seed) if defined else []
    return RobustnessInput(
        labels=labels,
        sites=sites,
        groups=bench.column("group"),
        unit=unit,
        n_units=len(ids),
        subsets=tuple(subsets),
        defined=bool(defined),
    )


def robustness_eligibility(bench: Benchmark, min_per_cell: int) -> dict[str, object]:
    """Whether robustness rules may apply to this benchmark, checked from its data (robustness.py)."""
    return eligibility(
        bench.column("label"),
        bench.column("site"),
        min_per_cell=min_per_cell,
        declared_confound=bench.definition.site_confounded_with,
    )
