"""A loaded benchmark: its tile table, classes, leak-free splits, resampling units and pixel pipeline.

Definitions (what the YAML holds) live in `definition.py`, table reading in `tables.py`, splits in
`splits.py` and pixels in `tiles.py`; this module ties them together (`load_benchmark`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from g2l.config import from_dict
from g2l.evaluate.definition import (
    FIELDS,
    BenchmarkDef,
    DeriveRule,
    FolderSource,
    SplitSpec,
    TableSource,
    expand_env,
    load_definition,
)
from g2l.evaluate.splits import Split, make_splits
from g2l.evaluate.tables import apply_split_list, fill_fields, read_table, scan_folders
from g2l.evaluate.tiles import InputSpec, SlideTileReader, prepare, read_image

DEFAULT_INPUT_MPP = 0.5


@dataclasses.dataclass
class Benchmark:
    """A loaded benchmark: the resolved tile table (path|slide,x,y,label,site,group,split) and its splits."""

    definition: BenchmarkDef
    root: Path
    table: pd.DataFrame
    classes: list[str]
    split_list: list[Split]
    sha256: str
    content_sha256: str
    input: InputSpec
    source_file: str = ""

    @property
    def name(self) -> str:
        """The benchmark's name."""
        return self.definition.name

    @property
    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train, test) row indices per split (train includes an official validation set)."""
        return [(s.train, s.test) for s in self.split_list]

    def folds(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(train, test, val_mask over train) per split; val_mask marks an official validation set, if any."""
        return [(s.train, s.test, s.val_mask) for s in self.split_list]

    @property
    def labels(self) -> np.ndarray:
        """Integer label per tile (index into `classes`)."""
        return np.searchsorted(np.array(self.classes), self.table["label"].to_numpy())

    def unit_column(self) -> str:
        """The patient column when the table has one, else `group` (the patient, or the slide)."""
        return "patient" if "patient" in self.table.columns else "group"

    def resampling_units(self) -> tuple[str, list[str], np.ndarray]:
        """(kind, sorted unit ids, unit index per tile): what the bootstrap resamples."""
        if self.definition.resample_by == "tile":
            return "tile", [str(i) for i in range(len(self))], np.arange(len(self), dtype=np.int64)
        column = self.unit_column()
        ids, index = np.unique(self.column(column), return_inverse=True)
        kind = "patient" if column == "patient" else "group"
        return kind, [str(i) for i in ids], index.astype(np.int64)

    def groups_shared_across_split(self) -> int:
        """Patients/groups with tiles on both sides of a split (0 by construction; kept for the report)."""
        groups = self.column(self.unit_column())
        return sum(len(set(groups[tr]) & set(groups[te])) for tr, te in self.splits)

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
        """Yield `(row_indices, [crops [n, tile_px, tile_px, 3] per row])` in table order (threaded decode).

        Each row's crops are its pixels at the input mpp (`InputSpec`); one crop per row except for
        `fit: grid`. Slide + coords tables read through `open_slide(path)` (default `g2l.slides`).
        """
        n = len(self.table)
        d = self.definition
        reader: SlideTileReader | None = None
        if "path" in self.table.columns:
            paths = [self._abs(p) for p in self.table["path"]]

            def raw(i: int) -> np.ndarray:
                return read_image(paths[i])
        else:
            reader = SlideTileReader(
                self._abs, d.tile_px, float(d.mpp or DEFAULT_INPUT_MPP), d.name, open_slide
            )
            slides = self.table["slide"].astype(str).tolist()
            xs, ys = self.table["x"].tolist(), self.table["y"].tolist()

            def raw(i: int) -> np.ndarray:
                return reader.read(slides[i], xs[i], ys[i])  # type: ignore[union-attr]

        def load(i: int) -> np.ndarray:
            return prepare(raw(i), self.input)

        try:
            with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
                for lo in range(0, n, batch_size):
                    idx = np.arange(lo, min(n, lo + batch_size))
                    yield idx, list(pool.map(load, idx.tolist()))
        finally:
            if reader is not None:
                reader.close()

    def _abs(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.root / q


def _content_hash(d: BenchmarkDef, root: Path, df: pd.DataFrame, spec: InputSpec) -> str:
    """sha256 of what the models see: each row's source (in order), the files' bytes, the input spec.

    Labels, sites and splits are not in it: relabelling or re-splitting reuses stored embeddings.
    """
    h = hashlib.sha256()
    h.update(
        json.dumps({"input": spec.to_dict(), "tile_px": d.tile_px, "mpp": d.mpp}, sort_keys=True).encode()
    )
    source_cols = [c for c in ("path", "slide", "x", "y") if c in df.columns]
    h.update(df[source_cols].to_csv(index=False, lineterminator="\n").encode())
    files = df["path"] if "path" in df.columns else pd.Series(sorted(set(df["slide"])))
    for rel in files:
        p = Path(rel) if Path(rel).is_absolute() else root / rel
        if d.hash_files and "path" in df.columns:
            h.update(hashlib.sha256(p.read_bytes()).digest())
        else:
            # Slides are large: identify them by size (content hashes belong to the manifest's checksums).
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()


def _benchmark_hash(d: BenchmarkDef, df: pd.DataFrame, content: str, here: Path) -> str:
    """sha256 over everything that changes metrics: definition (not root), table rows, split list, pixels."""
    h = hashlib.sha256()
    spec = dataclasses.asdict(d)
    for k in ("root", "description", "generate"):
        spec.pop(k)
    h.update(json.dumps(spec, sort_keys=True, default=str).encode())
    h.update(df.to_csv(index=False, lineterminator="\n").encode())
    if d.split.kind == "list":
        list_path = Path(d.split.file) if Path(d.split.file).is_absolute() else here / d.split.file
        h.update(list_path.read_bytes())
    h.update(content.encode())
    return h.hexdigest()


def load_benchmark(
    path: str | Path, root: str | None = None, input_mpp: float = DEFAULT_INPUT_MPP
) -> Benchmark:
    """Load a benchmark YAML: resolve root, generate synthetic data if asked, read the table, make splits."""
    d = load_definition(path, root=root)
    root_path = Path(expand_env(d.root)).expanduser()
    if d.generate is not None:
        from g2l.synth.benchmark import SyntheticBenchmarkSpec, write_synthetic_benchmark

        write_synthetic_benchmark(
            root_path, from_dict(SyntheticBenchmarkSpec, d.generate, where=f"{path}:generate")
        )
    if not root_path.is_dir():
        raise FileNotFoundError(
            f"benchmark {d.name}: root {root_path} is not a directory; put the data there as "
            f"{path} documents (or set the environment variable it names)"
        )
    raw = read_table(root_path, d.table, d.name) if d.table else scan_folders(root_path, d.folders)  # type: ignore[arg-type]
    df = fill_fields(raw, d)
    if d.split.kind == "list":
        df = apply_split_list(df, d, Path(path).parent)
    classes = sorted(list(d.labels) if d.labels else set(df["label"]))  # codes follow sorted order
    if len(classes) < 2:
        raise ValueError(f"benchmark {d.name}: needs at least two labels, found {classes}")
    units = df["patient" if "patient" in df.columns else "group"].astype(str).to_numpy()
    splits = make_splits(df, d.split, d.name, units)
    spec = InputSpec(
        native_mpp=d.mpp, input_mpp=float(input_mpp), tile_px=d.tile_px, fit=d.fit, max_crops=d.max_crops
    )
    content = _content_hash(d, root_path, df, spec)
    return Benchmark(
        definition=d,
        root=root_path,
        table=df,
        classes=classes,
        split_list=splits,
        sha256=_benchmark_hash(d, df, content, Path(path).parent),
        content_sha256=content,
        input=spec,
        source_file=str(path),
    )


__all__ = [
    "FIELDS",
    "Benchmark",
    "BenchmarkDef",
    "DeriveRule",
    "FolderSource",
    "SplitSpec",
    "TableSource",
    "expand_env",
    "load_benchmark",
    "load_definition",
]
