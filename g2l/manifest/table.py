"""A manifest read without pandas: plain CSVs parsed by hand, anything else through pandas' parser.

`g2l tile` reads its manifest here, so a run does not pay pandas' import (~0.3 s of a call's start-up,
with one core idle). The plain parser takes only CSVs whose reading is unambiguous: UTF-8 without a BOM,
no quote characters, one line per row (\\n or \\r\\n), unique non-empty header names, every row as many
fields as the header. There it gives exactly what `parse_table` (pandas, every cell a string) gives
(`tests/test_manifest_table.py` holds the two equal on generated CSVs); any other file goes to pandas.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from g2l import storage
from g2l.manifest.canonical import canonical_sha256
from g2l.manifest.schema import ManifestError, is_parquet, validate_records


@dataclasses.dataclass(frozen=True)
class ManifestTable:
    """A manifest's columns and its rows (each a column -> value dict), in file order."""

    columns: tuple[str, ...]
    records: tuple[dict[str, Any], ...]

    @classmethod
    def from_frame(cls, df: Any) -> ManifestTable:
        """The table of a pandas DataFrame (values as `DataFrame.to_dict("records")` gives them)."""
        return cls(tuple(str(c) for c in df.columns), tuple(df.to_dict("records")))

    def content_hash(self) -> str:
        """sha256 of the canonical CSV (the same as `g2l.manifest.content_hash` of the frame)."""
        return canonical_sha256(self.columns, {c: [r.get(c) for r in self.records] for c in self.columns})


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableManifest:
    """A loaded, validated manifest as a table: what tiling needs, with no DataFrame."""

    table: ManifestTable
    content_hash: str
    source: str
    uri: str


def parse_plain_csv(data: bytes) -> ManifestTable | None:
    """The table of a plain CSV (see the module docstring), or None when it needs pandas' parser."""
    if data.startswith(b"\xef\xbb\xbf") or b'"' in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\r" in text:
        if text.count("\r") != text.count("\r\n"):
            return None
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    header = lines[0].split(",")
    if any(not name or name.strip() != name for name in header) or len(set(header)) != len(header):
        return None  # pandas renames blank and repeated names ("Unnamed: 0", "a.1")
    records = []
    for line in lines[1:]:
        if not line:
            continue  # pandas skips blank lines
        if not line.strip():
            return None
        fields = line.split(",")
        if len(fields) != len(header):
            return None  # pandas pads short rows with NaN and shifts long ones into an index
        records.append(dict(zip(header, fields, strict=True)))
    return ManifestTable(tuple(header), tuple(records))


def parse_manifest_table(data: bytes, name: str) -> ManifestTable:
    """The table of manifest bytes: plain CSVs without pandas, Parquet and other CSVs with it."""
    plain = None if is_parquet(name) else parse_plain_csv(data)
    if plain is not None:
        return plain
    from g2l.manifest.io import parse_table

    return ManifestTable.from_frame(parse_table(data, name))


def load_table(path_or_uri: str | os.PathLike[str]) -> TableManifest:
    """Read and validate a manifest from a local path or gs:// URI as a table (ManifestError if invalid)."""
    path = str(path_or_uri)
    table = parse_manifest_table(storage.read_bytes(path), path)
    errors = validate_records(table.columns, table.records, first_row=1 if is_parquet(path) else 2)
    if errors:
        raise ManifestError(path, errors)
    return TableManifest(table=table, content_hash=table.content_hash(), source=path, uri=path)
