"""Manifest schema and validation: every bad row is reported with its row, column, value and the fix.

Pandas-free (validation runs on plain records), so `g2l tile` can check a CSV manifest without importing it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from g2l.storage import parse_checksum

if TYPE_CHECKING:
    import pandas as pd

SLIDE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
REQUIRED_COLUMNS = ("slide_id", "uri", "cancer_type", "site")
OPTIONAL_COLUMNS = ("scanner", "patient_id", "mpp", "mpp_source", "checksum", "split")
# Canonical column order: schema columns first, then label / extra columns sorted by name.
SCHEMA_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
SPLITS = ("train", "val", "test")
NUMERIC_COLUMNS = ("mpp",)
#: `mpp_source` values: which mpp wins when the manifest's `mpp` and the slide's metadata disagree. Empty:
#: they must agree within tiling.mpp_tolerance (the manifest's fills in a slide without one).
MPP_SOURCES = ("manifest", "metadata")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RowError:
    """One problem in a manifest: `row` is the line in the CSV (header = line 1), None for the whole file."""

    row: int | None
    column: str
    value: Any
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "file"
        if self.column:
            where = f"{where}, column {self.column!r}, value {self.value!r}"
        return f"{where}: {self.message}; fix: {self.fix}"


class ManifestError(ValueError):
    """A manifest failed validation; `.errors` holds every RowError and the message lists them."""

    def __init__(self, source: str, errors: list[RowError]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} problem(s) in the manifest:\n{lines}")


def is_parquet(name: str) -> bool:
    """Whether a manifest name means Parquet (`.parquet`/`.pq`); anything else is CSV."""
    return name.lower().endswith((".parquet", ".pq"))


def is_missing(value: Any) -> bool:
    """True for None, NaN and blank strings."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _check_uri(value: str) -> str | None:
    if value.startswith("gs://"):
        bucket, _, name = value[len("gs://"):].partition("/")
        if not bucket or not name or name.endswith("/"):
            return "a gs:// URI must name a bucket and an object"
        return None
    if "://" in value and not value.startswith("file://"):
        return f"scheme {value.split('://', 1)[0]!r} is not supported (only gs:// and local paths)"
    return None


def validate(df: pd.DataFrame, *, first_row: int = 2) -> list[RowError]:
    """Every problem in a manifest frame, in file order; empty when it is valid (see `validate_records`)."""
    return validate_records([str(c) for c in df.columns], df.to_dict("records"), first_row=first_row)


def validate_records(
    columns: Sequence[str], records: Sequence[Mapping[str, Any]], *, first_row: int = 2
) -> list[RowError]:
    """Every problem in a manifest given as its columns and rows, in file order; empty when it is valid.

    Row numbers are `first_row + position` (2 = the first data line of a CSV with a header).
    """
    errors: list[RowError] = []
    missing_cols = [c for c in REQUIRED_COLUMNS if c not in columns]
    for col in missing_cols:
        errors.append(RowError(row=None, column=col, value=None, message="required column is missing",
                               fix=f"add a {col!r} column (required: {', '.join(REQUIRED_COLUMNS)})"))
    if not missing_cols and len(records) == 0:
        # An empty manifest would "succeed" at every stage and train on nothing.
        errors.append(RowError(row=None, column="", value=None, message="the manifest has no rows",
                               fix="add one row per slide (e.g. with `g2l manifest inventory` and "
                               "`g2l manifest sample`)"))
    seen_ids: dict[str, int] = {}
    patient_split: dict[str, tuple[str, int]] = {}
    for pos, rec in enumerate(records):
        row = first_row + pos

        def err(col: str, message: str, fix: str, row: int = row, rec: Mapping[str, Any] = rec) -> None:
            errors.append(RowError(row=row, column=col, value=rec.get(col), message=message, fix=fix))

        sid = rec.get("slide_id")
        if "slide_id" in columns:
            if is_missing(sid):
                err("slide_id", "slide_id is empty", "give every slide a unique id")
            else:
                sid = str(sid)
                if not SLIDE_ID_RE.match(sid):
                    err("slide_id", f"slide_id must match {SLIDE_ID_RE.pattern} (no dots, spaces or slashes)",
                        f"use {re.sub(r'[^A-Za-z0-9_-]', '-', sid).lstrip('_-') or 'an id'!r}-style ids: "
                        "letters, digits, '-' and '_'")
                if sid in seen_ids:
                    err("slide_id", f"duplicate slide_id (first seen on row {seen_ids[sid]})",
                        "keep one row per slide or give the other slide its own id")
                else:
                    seen_ids[sid] = row
        if "uri" in columns:
            uri = rec.get("uri")
            if is_missing(uri):
                err("uri", "uri is missing", "give the slide's gs://bucket/object URI or local path")
            elif (problem := _check_uri(str(uri))) is not None:
                err("uri", problem, "write gs://<bucket>/<object> or a local path")
        for col in ("cancer_type", "site"):
            if col in columns and is_missing(rec.get(col)):
                fix = ("add the tissue source site (for TCGA barcodes `g2l manifest inventory` derives it)"
                       if col == "site" else "add the cancer type, e.g. BRCA")
                err(col, f"{col} is empty", fix)
        if "mpp" in columns and not is_missing(rec.get("mpp")):
            try:
                mpp = float(rec["mpp"])
            except (TypeError, ValueError):
                err("mpp", "mpp is not a number", "write microns per pixel, e.g. 0.25, or leave it empty")
            else:
                if not (mpp > 0 and math.isfinite(mpp)):
                    err("mpp", "mpp must be a positive number (microns per pixel)",
                        "write e.g. 0.25 (40x) or 0.5 (20x), or leave it empty to use the slide's metadata")
        if "mpp_source" in columns and not is_missing(rec.get("mpp_source")):
            source = str(rec["mpp_source"]).strip().lower()
            if source not in MPP_SOURCES:
                err("mpp_source", f"unknown mpp_source (expected {' or '.join(MPP_SOURCES)}, or empty)",
                    "write 'manifest' when the slide's metadata is wrong, 'metadata' when the manifest's mpp "
                    "is, or leave it empty")
            elif source == "manifest" and ("mpp" not in columns or is_missing(rec.get("mpp"))):
                err("mpp_source", "mpp_source is 'manifest' but the row has no mpp",
                    "write the slide's microns per pixel in the mpp column")
        if "checksum" in columns and not is_missing(rec.get("checksum")):
            try:
                parse_checksum(str(rec["checksum"]))
            except ValueError as exc:
                err("checksum", str(exc), "write crc32c:<base64> or md5:<hex> as the bucket reports it, or "
                    "leave it empty")
        if "split" in columns:
            split = rec.get("split")
            if is_missing(split) or str(split) not in SPLITS:
                err("split", f"unknown split (expected one of {', '.join(SPLITS)})",
                    "set split to train, val or test")
            elif "patient_id" in columns and not is_missing(rec.get("patient_id")):
                pid = str(rec["patient_id"])
                first = patient_split.setdefault(pid, (str(split), row))
                if first[0] != str(split):
                    err("split", f"patient {pid} is in {first[0]!r} on row {first[1]} but {split!r} here; "
                        "slides of one patient must share a split (no leakage)",
                        f"set split to {first[0]!r} for every slide of patient {pid}")
    return errors
