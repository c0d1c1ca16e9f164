"""Slide manifests: schema and validation, inventory, stratified sampling, DVC revisions and content hash.

Names are imported from their submodules on first use (PEP 562), so that `g2l.manifest.table`, which
`g2l tile` reads manifests with, can be imported without pandas, which most of the others need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from g2l.manifest.check import check_files
    from g2l.manifest.config import ManifestConfig
    from g2l.manifest.inventory import SLIDE_SUFFIXES, Inventory, build_inventory
    from g2l.manifest.io import (
        Manifest,
        canonical_csv_bytes,
        content_hash,
        load,
        parse_table,
        read_at_rev,
        read_table,
        write_table,
    )
    from g2l.manifest.sample import Sample, SampleConfig, largest_remainder, sample_manifest
    from g2l.manifest.schema import (
        REQUIRED_COLUMNS,
        SCHEMA_COLUMNS,
        SPLITS,
        ManifestError,
        RowError,
        is_parquet,
        validate,
    )
    from g2l.manifest.tcga import TcgaBarcode, parse_tcga_barcode, slide_id_from_name

# Public name -> the submodule that defines it.
_WHERE = {
    "check_files": "check",
    "ManifestConfig": "config",
    "SLIDE_SUFFIXES": "inventory",
    "Inventory": "inventory",
    "build_inventory": "inventory",
    "Manifest": "io",
    "canonical_csv_bytes": "io",
    "content_hash": "io",
    "load": "io",
    "parse_table": "io",
    "read_at_rev": "io",
    "read_table": "io",
    "write_table": "io",
    "Sample": "sample",
    "SampleConfig": "sample",
    "largest_remainder": "sample",
    "sample_manifest": "sample",
    "REQUIRED_COLUMNS": "schema",
    "SCHEMA_COLUMNS": "schema",
    "SPLITS": "schema",
    "ManifestError": "schema",
    "RowError": "schema",
    "is_parquet": "schema",
    "validate": "schema",
    "TcgaBarcode": "tcga",
    "parse_tcga_barcode": "tcga",
    "slide_id_from_name": "tcga",
}

__all__ = [
    "Inventory",
    "Manifest",
    "ManifestConfig",
    "ManifestError",
    "REQUIRED_COLUMNS",
    "RowError",
    "SCHEMA_COLUMNS",
    "SLIDE_SUFFIXES",
    "SPLITS",
    "Sample",
    "SampleConfig",
    "TcgaBarcode",
    "build_inventory",
    "canonical_csv_bytes",
    "check_files",
    "content_hash",
    "is_parquet",
    "largest_remainder",
    "load",
    "parse_table",
    "parse_tcga_barcode",
    "read_at_rev",
    "read_table",
    "sample_manifest",
    "slide_id_from_name",
    "validate",
    "write_table",
]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use and cache the name here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
