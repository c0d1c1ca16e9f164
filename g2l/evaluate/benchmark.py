"""Benchmark definitions (configs/benchmarks/*.yaml): a labelled tile table with sites, groups and splits.

A benchmark names a `root` where the user put the data and one of two sources:
- `table`: a CSV under root with one row per tile: an image `path` (relative to root, or absolute),
  or a `slide` path plus level-0 `x`, `y` (read at `mpp` into `tile_px` squares); and `label`,
  `site`, `group`, optional `split` columns (names configurable);
- `folders`: a glob-like `pattern` relative to root whose `{label}`, `{split}`, `{site}`, `{group}`
  placeholders are read from each file's path (e.g. `"{split}/{label}/*.png"`).
Missing fields are `derive`d from another field by regex (e.g. the TCGA tissue-source site from a
barcode) or take a constant default. Splits come from the `split` column (val counts as train; the
probe draws its own validation split), a seeded hold-out by group, or k folds by group.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from g2l.config import ConfigError, from_dict, load_yaml, require

FIELDS = ("label", "site", "group", "split")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
            self.target in ("site", "group", "split", "label"),
            f"derive.target must be one of site, group, split, label, got {self.target!r}",
        )
        require(
            self.source in ("path", "slide", "label", "site", "group", "split"),
            f"derive.source must be path, slide, label, site, group or split, got {self.source!r}",
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
    """How tiles are split: `column` (train/val/test), `holdout` (by group) or `folds` (k folds by group)."""

    kind: str = "column"
    test_fraction: float = 0.25
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self.kind in ("column", "holdout", "folds"),
            f"split.kind must be column, holdout or folds, got {self.kind!r}",
        )
        require(
            0.05 <= self.test_fraction <= 0.8,
            f"split.test_fraction must be in [0.05, 0.8], got {self.test_fraction}",
        )
        require(self.folds >= 2, f"split.folds must be >= 2, got {self.folds}")


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
    tile_px: int = 224
    mpp: float | None = None
    hash_files: bool = True
    generate: dict[str, Any] | None = None
    # `slide`: the label is per slide (e.g. a mutation), so the probe and kNN score slides (mean-pooled
    # tile embeddings) and the bootstrap resamples patients; `tile`: every tile is a sample.
    score_level: str = "tile"
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
            set(self.defaults) <= {"site", "group", "split"},
            f"benchmark {self.name}: defaults may set site, group or split, got {sorted(self.defaults)}",
        )
        require(
            16 <= self.tile_px <= 4096, f"benchmark {self.name}: tile_px must be 16..4096, got {self.tile_px}"
        )
        require(self.mpp is None or self.mpp > 0, f"benchmark {self.name}: mpp must be > 0, got {self.mpp}")
        require(
            self.score_level in ("tile", "slide"),
            f"benchmark {self.name}: score_level must be tile or slide, got {self.score_level!r}",
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


@dataclasses.dataclass
class Benchmark:
    """A loaded benchmark: the resolved tile table (path|slide,x,y,label,site,group,split) and its splits."""

    definition: BenchmarkDef
    root: Path
    table: pd.DataFrame
    classes: list[str]
    splits: list[tuple[np.ndarray, np.ndarray]]
    sha256: str
    source_file: str = ""

    @property
    def name(self) -> str:
        """The benchmark's name."""
        return self.definition.name

    @property
    def labels(self) -> np.ndarray:
        """Integer label per tile (index into `classes`)."""
        return np.searchsorted(np.array(self.classes), self.table["label"].to_numpy())

    def groups_shared_across_split(self) -> int:
        """Groups with tiles on both sides of a split (a `column` split may leak slides; others never do)."""
        groups = self.column("group")
        return sum(len(set(groups[tr]) & set(groups[te])) for tr, te in self.splits)

    def unit_column(self) -> str:
        """The bootstrap's resampling unit column: `patient` when the table has one, else `group`."""
        return "patient" if "patient" in self.table.columns else "group"

    def folds(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(train, test, val_mask over train) per split; val_mask marks an official validation set, if any."""
        has_split = "split" in self.table.columns
        split = self.table["split"].astype(str).str.lower().to_numpy() if has_split else None
        out = []
        for train, test in self.splits:
            mask = None
            if self.definition.split.kind == "column" and split is not None:
                is_val = split[train] == "val"
                mask = is_val if is_val.any() and not is_val.all() else None
            out.append((train, test, mask))
        return out

    def slide_rows(self) -> tuple[list[np.ndarray], list[str]]:
        """Tile rows per slide (`slide` column, else `group`), slides in sorted order."""
        key = self.column("slide" if "slide" in self.table.columns else "group")
        names, inverse = np.unique(key, return_inverse=True)
        return [np.flatnonzero(inverse == i) for i in range(names.size)], [str(n) for n in names]

    def column(self, name: str) -> np.ndarray:
        """A column of the tile table as a numpy array of strings."""
        return self.table[name].astype(str).to_numpy()

    def __len__(self) -> int:
        return len(self.table)

    def tile_source(self, i: int) -> str:
        """Human-readable origin of tile `i`, for error messages."""
        row = self.table.iloc[i]
        if "path" in self.table.columns:
            return str(row["path"])
        return f"{row['slide']}@({row['x']},{row['y']})"

    def iter_batches(
        self, batch_size: int, num_workers: int = 4, open_slide: Callable[[str], Any] | None = None
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """Yield `(row_indices, [uint8 HxWx3 tiles])` in table order, decoding with a thread pool.

        Slide + coords tables read through `open_slide(path)` (default: `g2l.slides.open_slide`).
        """
        n = len(self.table)
        slide_reader: _SlideTileReader | None = None
        if "path" in self.table.columns:
            paths = [self._abs(p) for p in self.table["path"]]

            def load(i: int) -> np.ndarray:
                return _read_image(paths[i])
        else:
            slide_reader = _SlideTileReader(self, open_slide)
            load = slide_reader.read
        try:
            with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
                for lo in range(0, n, batch_size):
                    idx = np.arange(lo, min(n, lo + batch_size))
                    yield idx, list(pool.map(load, idx.tolist()))
        finally:
            if slide_reader is not None:
                slide_reader.close()

    def _abs(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.root / q


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read benchmark tile {path}: {exc}; fix or remove its row") from exc


class _SlideTileReader:
    """Reads `tile_px` squares at the benchmark's mpp from slides (one open reader per slide)."""

    def __init__(self, bench: Benchmark, open_slide: Callable[[str], Any] | None = None) -> None:
        self.bench = bench
        self.open_slide = open_slide
        self.readers: dict[str, Any] = {}
        self.lock = threading.Lock()

    def _reader(self, slide: str) -> Any:
        with self.lock:
            if slide not in self.readers:
                opener: Any = self.open_slide
                if opener is None:
                    import g2l.slides  # cuCIM / openslide / tiffslide, in the slides helper's auto order

                    opener = g2l.slides.open_slide  # type: ignore[attr-defined]
                self.readers[slide] = opener(str(self.bench._abs(slide)))
            return self.readers[slide]

    def close(self) -> None:
        """Close every slide opened so far."""
        for reader in self.readers.values():
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        self.readers.clear()

    def read(self, i: int) -> np.ndarray:
        from PIL import Image

        d = self.bench.definition
        row = self.bench.table.iloc[i]
        reader = self._reader(str(row["slide"]))
        if reader.mpp is None:
            raise ValueError(
                f"slide {row['slide']} has no mpp metadata; benchmark {d.name} needs it to read "
                f"tiles at {d.mpp} um/px"
            )
        size0 = d.tile_px * float(d.mpp) / float(reader.mpp)  # type: ignore[arg-type]
        downs = list(reader.level_downsamples)
        level = max((lv for lv, ds in enumerate(downs) if ds <= size0 / d.tile_px + 1e-6), default=0)
        read_px = int(round(size0 / downs[level]))
        with self.lock:  # slide readers are not all thread-safe
            region = reader.read_region((int(row["x"]), int(row["y"])), level, (read_px, read_px))
        if read_px != d.tile_px:
            region = np.asarray(
                Image.fromarray(region).resize((d.tile_px, d.tile_px), Image.Resampling.BILINEAR)
            )
        return region


def _pattern_regex(pattern: str) -> tuple[str, re.Pattern[str]]:
    """Glob for a folder pattern, and a regex capturing its placeholders from a relative path."""
    glob = re.sub(r"\{[^}]*\}", "*", pattern)
    parts = re.split(r"(\{[^}]*\}|\*\*|\*|\?)", pattern)
    rx = ""
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            rx += f"(?P<{name}>[^/]+)" if f"(?P<{name}>" not in rx else f"(?P={name})"
        elif part == "**":
            rx += ".*"
        elif part == "*":
            rx += "[^/]*"
        elif part == "?":
            rx += "[^/]"
        else:
            rx += re.escape(part)
    return glob, re.compile(rx + "$")


def _scan_folders(root: Path, source: FolderSource) -> pd.DataFrame:
    glob, rx = _pattern_regex(source.pattern)
    rows = []
    for p in sorted(root.glob(glob)):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        m = rx.match(rel)
        if m:
            rows.append({"path": rel, **m.groupdict()})
    if not rows:
        raise FileNotFoundError(
            f"no files under {root} match pattern {source.pattern!r}; check `root` and the "
            f"layout documented in the benchmark file"
        )
    return pd.DataFrame(rows)


def _read_table(root: Path, source: TableSource, name: str) -> pd.DataFrame:
    csv = Path(source.csv) if Path(source.csv).is_absolute() else root / source.csv
    if not csv.exists():
        raise FileNotFoundError(
            f"benchmark {name}: table {csv} does not exist; put the data under {root} as "
            f"the benchmark file documents, or pass another root"
        )
    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rename = {
        source.path_column: "path",
        source.slide_column: "slide",
        source.x_column: "x",
        source.y_column: "y",
        source.label_column: "label",
        source.site_column: "site",
        source.group_column: "group",
        source.split_column: "split",
    }
    df = raw.rename(columns={k: v for k, v in rename.items() if k in raw.columns})
    has_path = "path" in df.columns
    has_coords = {"slide", "x", "y"} <= set(df.columns)
    if not (has_path or has_coords):
        raise ValueError(
            f"benchmark {name}: {csv} needs a `{source.path_column}` column, or "
            f"`{source.slide_column}`, `{source.x_column}`, `{source.y_column}` columns"
        )
    if "label" not in df.columns:
        raise ValueError(f"benchmark {name}: {csv} has no `{source.label_column}` column")
    if has_path:
        return df[[c for c in ("path", "label", "site", "group", "split") if c in df.columns]]
    for c in ("x", "y"):
        bad = ~df[c].str.fullmatch(r"\d+")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"benchmark {name}: {csv} row {row + 2}: {c}={df[c].iloc[row]!r} is not a "
                f"non-negative integer level-0 pixel"
            )
        df[c] = df[c].astype(np.int64)
    return df[[c for c in ("slide", "x", "y", "label", "site", "group", "split") if c in df.columns]]


def _apply_derive(df: pd.DataFrame, d: BenchmarkDef) -> pd.DataFrame:
    for rule in d.derive:
        if rule.source not in df.columns:
            raise ValueError(
                f"benchmark {d.name}: derive {rule.target} from {rule.source}, but there is no "
                f"{rule.source} column"
            )
        extracted = df[rule.source].astype(str).str.extract(rule.regex, expand=False)
        if isinstance(extracted, pd.DataFrame):
            extracted = extracted.iloc[:, 0]
        missing = extracted.isna()
        if missing.any():
            row = int(np.flatnonzero(missing.to_numpy())[0])
            raise ValueError(
                f"benchmark {d.name}: derive {rule.target}: regex {rule.regex!r} does not match "
                f"{rule.source}={df[rule.source].iloc[row]!r} (row {row})"
            )
        if rule.target in df.columns:
            df[rule.target] = df[rule.target].where(df[rule.target] != "", extracted)
        else:
            df[rule.target] = extracted
    return df


def _fill_fields(df: pd.DataFrame, d: BenchmarkDef) -> pd.DataFrame:
    df = df.copy()
    df = _apply_derive(df, d)
    for field in ("site", "group", "split"):
        default = d.defaults.get(field)
        if field not in df.columns:
            if field == "group":
                # Without groups every tile is its own group: nothing is excluded beyond the tile itself.
                source = "path" if "path" in df.columns else "slide"
                df["group"] = df[source].astype(str)
            elif default is not None:
                df[field] = default
            elif field == "site":
                df["site"] = "unknown"
            else:
                df["split"] = ""
        elif default is not None:
            df[field] = df[field].replace("", default)
    if d.label_map:
        df["label"] = df["label"].map(lambda v: d.label_map.get(v, v))
    df["label"] = df["label"].astype(str)
    empty = df["label"] == ""
    if empty.any():
        raise ValueError(
            f"benchmark {d.name}: row {int(np.flatnonzero(empty.to_numpy())[0])} has an empty label"
        )
    if d.labels:
        unknown = sorted(set(df["label"]) - set(d.labels))
        if unknown:
            # `labels` restricts the benchmark to those classes (e.g. drop an "ignore" class).
            df = df[df["label"].isin(d.labels)].reset_index(drop=True)
    return df.reset_index(drop=True)


def _group_folds(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row: groups shuffled with `seed` and dealt round-robin, so folds never share a group."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(uniq.size)
    fold_of = {uniq[j]: i % n_folds for i, j in enumerate(perm)}
    return np.array([fold_of[g] for g in groups])


def make_splits(df: pd.DataFrame, spec: SplitSpec, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) pairs: one for `column`/`holdout`, k for `folds`."""
    groups = df["group"].astype(str).to_numpy()
    if spec.kind == "column":
        split = df["split"].astype(str).str.lower().to_numpy()
        bad = sorted(set(split) - {"train", "val", "test"})
        if bad:
            raise ValueError(
                f"benchmark {name}: split column has {bad}; use train/val/test, or set "
                f"split.kind: holdout (or folds) to split by group"
            )
        test = split == "test"
        pairs = [(np.flatnonzero(~test), np.flatnonzero(test))]
    elif spec.kind == "holdout":
        uniq = np.unique(groups)
        rng = np.random.default_rng(spec.seed)
        n_test = max(1, int(round(spec.test_fraction * uniq.size)))
        if uniq.size < 2:
            raise ValueError(f"benchmark {name}: a hold-out split needs at least 2 groups, got {uniq.size}")
        test_groups = set(rng.choice(uniq, size=min(n_test, uniq.size - 1), replace=False).tolist())
        test = np.array([g in test_groups for g in groups])
        pairs = [(np.flatnonzero(~test), np.flatnonzero(test))]
    else:
        if np.unique(groups).size < spec.folds:
            raise ValueError(f"benchmark {name}: {spec.folds} folds need at least {spec.folds} groups")
        fold = _group_folds(groups, spec.folds, spec.seed)
        pairs = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(spec.folds)]
    for tr, te in pairs:
        if tr.size == 0 or te.size == 0:
            raise ValueError(
                f"benchmark {name}: a split has an empty train or test side "
                f"({tr.size} train, {te.size} test tiles)"
            )
    return pairs


def _benchmark_hash(d: BenchmarkDef, root: Path, df: pd.DataFrame) -> str:
    """sha256 over what changes embeddings or metrics: definition (not root), table rows, file bytes."""
    h = hashlib.sha256()
    spec = dataclasses.asdict(d)
    for k in ("root", "description", "generate"):
        spec.pop(k)
    h.update(json.dumps(spec, sort_keys=True, default=str).encode())
    h.update(df.to_csv(index=False, lineterminator="\n").encode())
    files = df["path"] if "path" in df.columns else pd.Series(sorted(set(df["slide"])))
    for rel in files:
        p = Path(rel) if Path(rel).is_absolute() else root / rel
        if d.hash_files and "path" in df.columns:
            h.update(hashlib.sha256(p.read_bytes()).digest())
        else:
            # Slides are large: identify them by size (content hashes belong to the manifest's checksums).
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()


def load_benchmark(path: str | Path, root: str | None = None) -> Benchmark:
    """Load a benchmark YAML: resolve root, generate synthetic data if asked, read the table, make splits."""
    d = load_definition(path, root=root)
    root_path = Path(expand_env(d.root)).expanduser()
    if d.generate is not None:
        from g2l.synth.benchmark import SyntheticBenchmarkSpec, write_synthetic_benchmark

        spec = from_dict(SyntheticBenchmarkSpec, d.generate, where=f"{path}:generate")
        write_synthetic_benchmark(root_path, spec)
    if not root_path.is_dir():
        raise FileNotFoundError(
            f"benchmark {d.name}: root {root_path} is not a directory; put the data there as "
            f"{path} documents (or set the environment variable it names)"
        )
    raw = _read_table(root_path, d.table, d.name) if d.table else _scan_folders(root_path, d.folders)  # type: ignore[arg-type]
    df = _fill_fields(raw, d)
    classes = list(d.labels) if d.labels else sorted(set(df["label"]))
    classes = sorted(classes)  # integer codes follow sorted order, so `labels` only filters
    if len(classes) < 2:
        raise ValueError(f"benchmark {d.name}: needs at least two labels, found {classes}")
    splits = make_splits(df, d.split, d.name)
    digest = _benchmark_hash(d, root_path, df)
    return Benchmark(
        definition=d,
        root=root_path,
        table=df,
        classes=classes,
        splits=splits,
        sha256=digest,
        source_file=str(path),
    )
