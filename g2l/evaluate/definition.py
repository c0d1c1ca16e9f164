"""Benchmark definitions (configs/benchmarks/*.yaml): where the data is, how it is read, split and scored.

A benchmark names a `root` where the user put the data and one of two sources:
- `table`: a CSV under root with one row per tile: an image `path` (relative to root, or absolute),
  or a `slide` path plus level-0 `x`, `y` (read at `mpp` into `tile_px` squares); and `label`,
  `site`, `group`, optional `patient` and `split` columns (names configurable);
- `folders`: a glob-like `pattern` relative to root whose `{label}`, `{split}`, `{site}`, `{group}`
  placeholders are read from each file's path (e.g. `"{split}/{label}/*.png"`).
Missing fields are `derive`d from another field by regex (e.g. the TCGA tissue-source site from a
barcode) or take a constant default. `split` says where the split comes from (`source`, documented in
each file): the official one (`column`, validation set kept for choosing C), a shipped list (`list`),
a patient-grouped hold-out, or patient-grouped, label-stratified (and optionally site-preserved) folds.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from g2l.config import ConfigError, from_dict, load_yaml, require

FIELDS = ("label", "site", "group", "split")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SPLIT_KINDS = ("column", "list", "holdout", "folds")
FITS = ("crop", "grid", "whole")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableSource:
    """A CSV of tiles under the benchmark root; column names are configurable."""

    csv: str
    path_column: str = "path"
    slide_column: str = "slide"
    x_column: str = "x"
    y_column: str = "y"
    label_column: str = "label"
    site_column: str = "site"
    group_column: str = "group"
    patient_column: str = "patient"
    split_column: str = "split"

    def __post_init__(self) -> None:
        require(bool(self.csv), "table.csv must name a CSV file under the benchmark root")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FolderSource:
    """Image files found by a pattern whose `{field}` placeholders are parsed from each path."""

    pattern: str

    def __post_init__(self) -> None:
        require(
            "{label}" in self.pattern,
            f"folders.pattern must contain {{label}} (labels come from folder names), got {self.pattern!r}",
        )
        unknown = set(re.findall(r"\{([^}]*)\}", self.pattern)) - set(FIELDS)
        require(
            not unknown,
            f"folders.pattern has unknown placeholder(s) {sorted(unknown)}; "
            f"use {', '.join('{' + f + '}' for f in FIELDS)}",
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeriveRule:
    """Fill `target` from the first capture group of `regex` applied to field `source` (path, group, ...)."""

    target: str
    source: str
    regex: str

    def __post_init__(self) -> None:
        require(
            self.target in ("site", "group", "patient", "split", "label"),
            f"derive.target must be one of site, group, patient, split, label, got {self.target!r}",
        )
        require(
            self.source in ("path", "slide", "label", "site", "group", "patient", "split"),
            f"derive.source must be path, slide, label, site, group, patient or split, got {self.source!r}",
        )
        try:
            compiled = re.compile(self.regex)
        except re.error as exc:
            raise ConfigError(
                f"derive.regex {self.regex!r} is not a valid regular expression: {exc}"
            ) from exc
        require(compiled.groups >= 1, f"derive.regex {self.regex!r} needs one capture group (...)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitSpec:
    """Where the split comes from.

    `column`: the data's own train/val/test (official splits; `val` is kept to choose C);
    `list`: a shipped CSV (`file`, relative to the definition) of `file,split[,group]` rows matched on
    the end of each tile's path (e.g. eva's patient-aware BACH split);
    `holdout`: a seeded, label-stratified hold-out of patients; `folds`: k patient-grouped,
    label-stratified folds, all of a site in one fold with `preserve_site` (TCGA biomarkers).
    """

    kind: str = "column"
    file: str = ""
    test_fraction: float = 0.25
    folds: int = 5
    seed: int = 0
    preserve_site: bool = False
    # A patient with tiles on both sides of an official split: `error`, or `exclude` its tiles from the
    # training side (the official test set stays whole).
    shared_groups: str = "error"
    source: str = ""  # where the split comes from, for the report (e.g. "official BRACS folders")

    def __post_init__(self) -> None:
        require(
            self.kind in SPLIT_KINDS, f"split.kind must be one of {', '.join(SPLIT_KINDS)}, got {self.kind!r}"
        )
        require(
            (self.kind == "list") == bool(self.file),
            "split.file (a CSV of file,split[,group] rows) goes with split.kind: list, and only there",
        )
        require(
            0.05 <= self.test_fraction <= 0.8,
            f"split.test_fraction must be in [0.05, 0.8], got {self.test_fraction}",
        )
        require(self.folds >= 2, f"split.folds must be >= 2, got {self.folds}")
        require(
            self.shared_groups in ("error", "exclude"),
            f"split.shared_groups must be error or exclude, got {self.shared_groups!r}",
        )
        require(
            not self.preserve_site or self.kind == "folds",
            "split.preserve_site applies to split.kind: folds (site-preserved cross-validation)",
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchmarkDef:
    """One benchmark YAML file (configs/benchmarks/<name>.yaml)."""

    name: str
    description: str = ""
    root: str
    table: TableSource | None = None
    folders: FolderSource | None = None
    derive: tuple[DeriveRule, ...] = ()
    defaults: dict[str, str] = dataclasses.field(default_factory=dict)
    label_map: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: tuple[str, ...] = ()
    split: SplitSpec = dataclasses.field(default_factory=SplitSpec)
    # Pixels: `mpp` is the images' native um/px (for slide tables: the um/px tiles are read at, `tile_px`
    # squares). Every tile is brought to the evaluation's input mpp (evaluate.input_mpp, the models'
    # training resolution) without changing its aspect ratio, then `fit`: `crop` (centre `tile_px`
    # square), `grid` (mean embedding of up to `max_crops` central `tile_px` squares), or `whole`
    # (eva's ResizeAndCrop: shorter side to `tile_px`, mpp not matched; for tiny low-magnification
    # patches). An image smaller than `tile_px` at the input mpp is enlarged to it; the report says so.
    tile_px: int = 224
    mpp: float | None = None
    fit: str = "crop"
    max_crops: int = 16
    hash_files: bool = True
    generate: dict[str, Any] | None = None
    # `slide`: the label is per slide (e.g. a mutation), so the probe and kNN score slides (mean-pooled
    # tile embeddings) and the bootstrap resamples patients; `tile`: every tile is a sample.
    score_level: str = "tile"
    # The bootstrap's resampling unit: `group` (the patient, or the slide where patients are unknown)
    # or `tile` (only where no grouping is published; intervals are then optimistic).
    resample_by: str = "group"
    # Non-empty when the benchmark's `site` also stands for biology (e.g. TCGA tissue-source sites and
    # cancer type): robustness rules are then refused on it, whatever the data look like.
    site_confounded_with: str = ""

    def __post_init__(self) -> None:
        require(
            bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.name)),
            f"benchmark name must be letters, digits, '-' or '_', got {self.name!r}",
        )
        require(bool(self.root), f"benchmark {self.name}: root must say where the data lives")
        require(
            (self.table is None) != (self.folders is None),
            f"benchmark {self.name}: give exactly one of `table` or `folders`",
        )
        require(
            set(self.defaults) <= {"site", "group", "patient", "split"},
            f"benchmark {self.name}: defaults may set site, group, patient or split, "
            f"got {sorted(self.defaults)}",
        )
        require(
            16 <= self.tile_px <= 4096, f"benchmark {self.name}: tile_px must be 16..4096, got {self.tile_px}"
        )
        require(self.mpp is None or self.mpp > 0, f"benchmark {self.name}: mpp must be > 0, got {self.mpp}")
        require(
            self.fit in FITS, f"benchmark {self.name}: fit must be one of {', '.join(FITS)}, got {self.fit!r}"
        )
        require(self.max_crops >= 1, f"benchmark {self.name}: max_crops must be >= 1, got {self.max_crops}")
        require(
            self.score_level in ("tile", "slide"),
            f"benchmark {self.name}: score_level must be tile or slide, got {self.score_level!r}",
        )
        require(
            self.resample_by in ("group", "tile"),
            f"benchmark {self.name}: resample_by must be group or tile, got {self.resample_by!r}",
        )
        require(
            self.generate is None or self.table is not None,
            f"benchmark {self.name}: `generate` writes a table; use it with `table: {{csv: tiles.csv}}`",
        )


def expand_env(text: str) -> str:
    """Expand `${VAR}` and `${VAR:-default}` in a path."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value:
            return value
        if m.group(2) is not None:
            return m.group(2)
        raise ConfigError(
            f"environment variable {m.group(1)} is not set; set it or write ${{{m.group(1)}:-default}}"
        )

    return _ENV.sub(sub, text)


def load_definition(path: str | Path, root: str | None = None) -> BenchmarkDef:
    """Read and validate a benchmark YAML; `root` overrides the file's root."""
    data = load_yaml(path)
    if root is not None:
        data["root"] = root
    return from_dict(BenchmarkDef, data, where=str(path))
