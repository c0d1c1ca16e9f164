"""Reading a benchmark's tile table: folder scans or CSVs, derived fields, defaults, shipped split lists."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from g2l.evaluate.definition import BenchmarkDef, FolderSource, TableSource


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


def scan_folders(root: Path, source: FolderSource) -> pd.DataFrame:
    """One row per file matching the pattern: its relative `path` and the placeholders parsed from it."""
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


def read_table(root: Path, source: TableSource, name: str) -> pd.DataFrame:
    """The benchmark's CSV with its columns renamed to g2l's names, coordinates checked."""
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
        source.patient_column: "patient",
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
        return df[[c for c in ("path", "label", "site", "group", "patient", "split") if c in df.columns]]
    for c in ("x", "y"):
        bad = ~df[c].str.fullmatch(r"\d+")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"benchmark {name}: {csv} row {row + 2}: {c}={df[c].iloc[row]!r} is not a "
                f"non-negative integer level-0 pixel"
            )
        df[c] = df[c].astype(np.int64)
    keep = ("slide", "x", "y", "label", "site", "group", "patient", "split")
    return df[[c for c in keep if c in df.columns]]


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


def fill_fields(df: pd.DataFrame, d: BenchmarkDef) -> pd.DataFrame:
    """Derived and default fields, mapped and filtered labels: every row has label, site, group, split."""
    df = df.copy()
    df = _apply_derive(df, d)
    for field in ("site", "group", "split"):
        default = d.defaults.get(field)
        if field == "group" and field not in df.columns and "patient" in df.columns:
            df["group"] = df["patient"]  # a patient column is the natural group
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


def apply_split_list(df: pd.DataFrame, d: BenchmarkDef, definition_dir: Path) -> pd.DataFrame:
    """Set `split` (and `group` when listed) from the definition's shipped list, matched on path endings.

    Every tile must be listed: a file the list does not know is an error naming it (a different
    release of the data set, or files added by hand), not a silent guess.
    """
    list_path = Path(d.split.file)
    if not list_path.is_absolute():
        list_path = definition_dir / list_path
    if not list_path.is_file():
        raise FileNotFoundError(f"benchmark {d.name}: split list {list_path} does not exist")
    listed = pd.read_csv(list_path, dtype=str, keep_default_na=False)
    if not {"file", "split"} <= set(listed.columns):
        raise ValueError(f"benchmark {d.name}: split list {list_path} needs `file` and `split` columns")
    depth = {len(f.split("/")) for f in listed["file"]}
    if len(depth) != 1:
        raise ValueError(f"benchmark {d.name}: split list {list_path}: every `file` needs as many path parts")
    n = depth.pop()
    key = df["path"].astype(str).map(lambda p: "/".join(p.split("/")[-n:]))
    table = listed.set_index("file")
    missing = sorted(set(key) - set(table.index))
    if missing:
        raise ValueError(
            f"benchmark {d.name}: {len(missing)} file(s) are not in the split list {list_path}, e.g. "
            f"{missing[0]!r}; is this the release the benchmark file documents?"
        )
    df = df.copy()
    df["split"] = key.map(table["split"]).to_numpy()
    if "group" in table.columns:
        df["group"] = key.map(table["group"]).to_numpy()
    return df
