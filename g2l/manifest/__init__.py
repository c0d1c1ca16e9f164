"""Slide manifests: schema and validation, inventory, stratified sampling, DVC revisions and content hash."""

from g2l.manifest.check import check_files
from g2l.manifest.config import ManifestConfig
from g2l.manifest.inventory import SLIDE_SUFFIXES, Inventory, build_inventory
from g2l.manifest.io import (
    Manifest,
    ManifestError,
    canonical_csv_bytes,
    content_hash,
    is_parquet,
    load,
    parse_table,
    read_at_rev,
    read_table,
    write_table,
)
from g2l.manifest.sample import Sample, SampleConfig, largest_remainder, sample_manifest
from g2l.manifest.schema import REQUIRED_COLUMNS, SCHEMA_COLUMNS, SPLITS, RowError, validate
from g2l.manifest.tcga import TcgaBarcode, parse_tcga_barcode, slide_id_from_name

__all__ = [
    "REQUIRED_COLUMNS",
    "SCHEMA_COLUMNS",
    "SLIDE_SUFFIXES",
    "SPLITS",
    "Inventory",
    "Manifest",
    "ManifestConfig",
    "ManifestError",
    "RowError",
    "Sample",
    "SampleConfig",
    "TcgaBarcode",
    "build_inventory",
    "check_files",
    "canonical_csv_bytes",
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
