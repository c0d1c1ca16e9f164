"""Manifest access for tiling: accepts a loaded manifest, a DataFrame, or a path/URI to load.

Pandas-free unless the caller hands over a DataFrame (or a manifest that needs pandas' CSV parser).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from typing import Any

from g2l.manifest.table import ManifestTable, load_table

SLIDE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclasses.dataclass(frozen=True)
class SlideRow:
    """What tiling needs from one manifest row."""

    slide_id: str
    uri: str
    site: str
    mpp: float | None
    checksum: str | None
    mpp_source: str | None = None  # "manifest" | "metadata" | None (they must agree)


@dataclasses.dataclass(frozen=True)
class LoadedManifest:
    """A manifest already read: its table, content hash and where it came from."""

    table: ManifestTable
    content_hash: str
    origin: dict[str, str] | None = None


def manifest_origin(manifest: Any) -> dict[str, str] | None:
    """Where a manifest was read from, `{uri[, rev, repo]}` (recorded in shards/index.json for lineage).

    Local paths are made absolute (a repo-relative path stays relative to its repo); None for a frame.
    """
    explicit = getattr(manifest, "origin", None)
    if explicit:
        return dict(explicit)
    if isinstance(manifest, str | os.PathLike):
        return {"uri": _absolute(str(manifest))}
    uri, rev = getattr(manifest, "uri", ""), getattr(manifest, "rev", None)
    repo = getattr(manifest, "repo", None)
    if not uri:
        return None
    if rev is None and repo is None:
        return {"uri": _absolute(str(uri))}
    out = {"uri": str(uri), "rev": str(rev or "")}
    if repo:
        out["repo"] = _absolute(str(repo))
    return {k: v for k, v in out.items() if v}


def _absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def resolve_manifest(manifest: Any) -> tuple[ManifestTable, str]:
    """(table, content hash) of a loaded manifest, a DataFrame, or a manifest path/URI (validated).

    A path is read by `g2l.manifest.table.load_table` (no pandas for a plain CSV); a frame or a
    `g2l.manifest.Manifest` comes with pandas already imported.
    """
    table = getattr(manifest, "table", None)
    if isinstance(table, ManifestTable):
        return table, str(manifest.content_hash)
    pandas = sys.modules.get("pandas")  # a DataFrame exists only once pandas is imported
    frame = getattr(manifest, "df", None)
    if frame is None and pandas is not None and isinstance(manifest, pandas.DataFrame):
        frame = manifest
    if frame is not None:
        from g2l import manifest as manifest_mod

        known = getattr(manifest, "content_hash", None)
        return ManifestTable.from_frame(frame), str(known or manifest_mod.content_hash(frame))
    loaded = load_table(str(manifest))
    return loaded.table, loaded.content_hash


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _optional_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def slide_rows(table: ManifestTable) -> list[SlideRow]:
    """The manifest's slides in manifest order; a bad id or missing uri is an error naming the row."""
    for column in ("slide_id", "uri"):
        if column not in table.columns:
            raise ValueError(
                f"manifest has no `{column}` column; columns are: {', '.join(map(str, table.columns))}"
            )
    rows = []
    for number, rec in enumerate(table.records, start=1):
        slide_id = str(rec["slide_id"])
        if not SLIDE_ID_RE.match(slide_id):
            raise ValueError(f"manifest row {number}: slide_id {slide_id!r} must match {SLIDE_ID_RE.pattern}")
        uri = _optional_str(rec.get("uri"))
        if uri is None:
            raise ValueError(
                f"manifest row {number} (slide {slide_id}): `uri` is empty; give the slide's path"
            )
        rows.append(
            SlideRow(
                slide_id=slide_id,
                uri=uri,
                site=_optional_str(rec.get("site")) or "",
                mpp=_optional_float(rec.get("mpp")),
                checksum=_optional_str(rec.get("checksum")),
                mpp_source=(_optional_str(rec.get("mpp_source")) or "").lower() or None,
            )
        )
    return rows
