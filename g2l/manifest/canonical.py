"""The canonical CSV form of a manifest, whose sha256 is its identity in lineage (pandas-free)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

from g2l.manifest.schema import NUMERIC_COLUMNS, SCHEMA_COLUMNS, is_missing


def canonical_value(value: Any, numeric: bool = False) -> str:
    """One cell as canonical text: '' when missing, true/false, repr of floats (mpp "0.50" -> "0.5")."""
    if is_missing(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if numeric and not isinstance(value, float):
        try:  # "0.50" in a CSV and 0.5 in a typed frame are the same mpp
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def canonical_columns(columns: list[str]) -> list[str]:
    """Schema columns in schema order, then the other (label) columns sorted by name."""
    return [c for c in SCHEMA_COLUMNS if c in columns] + sorted(c for c in columns if c not in SCHEMA_COLUMNS)


def canonical_csv(columns: Sequence[str], values: Mapping[str, Sequence[Any]]) -> bytes:
    """Canonical CSV of a table given by column: canonical column order, file row order, '\\n' ends.

    Written by the csv module with minimal quoting: the bytes pandas' `to_csv(index=False,
    lineterminator="\\n")` writes for the same strings (it drives the same writer), which is what the
    content hash was defined on (`tests/test_manifest_table.py` holds them equal).
    """
    cols = canonical_columns([str(c) for c in columns])
    cells = [[canonical_value(v, numeric=c in NUMERIC_COLUMNS) for v in values[c]] for c in cols]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows(zip(*cells, strict=True))
    return out.getvalue().encode("utf-8")


def canonical_sha256(columns: Sequence[str], values: Mapping[str, Sequence[Any]]) -> str:
    """sha256 of `canonical_csv`: the manifest's content hash."""
    return hashlib.sha256(canonical_csv(columns, values)).hexdigest()
