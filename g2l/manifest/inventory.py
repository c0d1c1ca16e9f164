"""Inventory: list slide files under a gs:// prefix or directory, with checksums, joined to metadata."""

from __future__ import annotations

import dataclasses
import os

import pandas as pd

from g2l import storage
from g2l.manifest.io import canonical_columns, read_table
from g2l.manifest.schema import is_missing
from g2l.manifest.tcga import parse_tcga_barcode, slide_id_from_name

# Whole-slide image formats openslide / cuCIM / tiffslide read. MIRAX (.mrxs) keeps its tiles in a
# sibling directory, which tiling must stage too.
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".svslide")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inventory:
    """An inventory table plus the problems met while building it (duplicates, unmatched metadata)."""

    df: pd.DataFrame
    problems: list[str]


def _metadata_key(meta: pd.DataFrame, source: str) -> str:
    for key in ("slide_id", "patient_id"):
        if key in meta.columns:
            return key
    raise ValueError(f"{source}: metadata needs a 'slide_id' (or 'patient_id') column to join on; it has "
                     f"{', '.join(map(str, meta.columns))}")


def build_inventory(
    source: str | os.PathLike[str],
    metadata: str | os.PathLike[str] | pd.DataFrame | None = None,
    *,
    cancer_type: str | None = None,
    suffixes: tuple[str, ...] = SLIDE_SUFFIXES,
) -> Inventory:
    """List slides under `source` (gs:// prefix or directory) into an inventory table.

    Checksums come from the bucket's metadata (crc32c) or are computed for local files. Metadata
    columns are joined on slide id (or patient id); TCGA barcodes fill in `site` (tissue source
    site) and `patient_id` where the metadata has none; `cancer_type` fills empty cells.
    """
    problems: list[str] = []
    files = storage.list_files(source, suffixes=suffixes)
    rows: dict[str, dict[str, object]] = {}
    for f in files:
        sid = slide_id_from_name(f.uri.rsplit("/", 1)[-1])
        if sid in rows:
            problems.append(f"slide id {sid}: {f.uri} duplicates {rows[sid]['uri']}; kept the first, "
                            "rename one file if both are distinct slides")
            continue
        rows[sid] = {"slide_id": sid, "uri": f.uri, "checksum": f.checksum or "", "size_bytes": f.size}
    df = pd.DataFrame(list(rows.values()), columns=["slide_id", "uri", "checksum", "size_bytes"])
    df["size_bytes"] = df["size_bytes"].astype("int64")
    if not len(df):
        problems.append(f"{source}: no slide files ({', '.join(suffixes)}) found")

    if metadata is not None:
        meta_name = "metadata" if isinstance(metadata, pd.DataFrame) else str(metadata)
        meta = metadata.copy() if isinstance(metadata, pd.DataFrame) else read_table(metadata)
        meta = meta.astype(object).where(meta.notna(), "")
        key = _metadata_key(meta, meta_name)
        if key == "slide_id":
            meta["slide_id"] = [slide_id_from_name(str(v)) for v in meta["slide_id"]]
        else:
            df["patient_id"] = [_patient_of(s) for s in df["slide_id"]]
        dups = meta[meta[key].duplicated()][key].tolist()
        if dups:
            problems.append(f"{meta_name}: {len(dups)} duplicate {key}(s) (first: {dups[0]}); "
                            "the first row wins")
            meta = meta.drop_duplicates(subset=[key], keep="first")
        unmatched = sorted(set(meta[key]) - set(df[key]))
        if unmatched:
            problems.append(f"{meta_name}: {len(unmatched)} row(s) match no slide file "
                            f"(first: {unmatched[0]})")
        meta_cols = [c for c in meta.columns if c != key]
        overlap = [c for c in meta_cols if c in df.columns]
        merged = df.merge(meta, on=key, how="left", suffixes=("", "__meta"))
        for col in overlap:  # the metadata wins where it has a value
            m = merged[f"{col}__meta"]
            merged[col] = [o if is_missing(v) else v for o, v in zip(merged[col], m, strict=True)]
            merged = merged.drop(columns=[f"{col}__meta"])
        df = merged

    for col, fill in (("site", _site_of), ("patient_id", _patient_of)):
        if col not in df.columns:
            df[col] = ""
        df[col] = [fill(s) if is_missing(v) else v for s, v in zip(df["slide_id"], df[col], strict=True)]
    if "cancer_type" not in df.columns:
        df["cancer_type"] = ""
    if cancer_type:
        df["cancer_type"] = [cancer_type if is_missing(v) else v for v in df["cancer_type"]]
    df = df.astype({c: object for c in df.columns if c != "size_bytes"})
    df = df.where(df.notna(), "")
    return Inventory(df=df[canonical_columns(list(df.columns))].reset_index(drop=True), problems=problems)


def _site_of(slide_id: str) -> str:
    bc = parse_tcga_barcode(slide_id)
    return bc.site if bc else ""


def _patient_of(slide_id: str) -> str:
    bc = parse_tcga_barcode(slide_id)
    return bc.patient_id if bc else ""
