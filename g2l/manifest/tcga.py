"""TCGA barcode parsing: tissue source site and patient from slide names like TCGA-A1-A0SB-01Z-00-DX1."""

from __future__ import annotations

import dataclasses
import re

# TCGA-<TSS>-<participant>[-<sample><vial>[-<portion><analyte>[-<plate or slide>]]]
_BARCODE_RE = re.compile(
    r"^TCGA-(?P<tss>[A-Z0-9]{2})-(?P<participant>[A-Z0-9]{4})"
    r"(?:-(?P<sample>\d{2})(?P<vial>[A-Z])?(?:-(?P<portion>\d{2})(?P<analyte>[A-Z])?"
    r"(?:-(?P<slide>[A-Z0-9]+))?)?)?(?=$|[.\-_])",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TcgaBarcode:
    """The parts of a TCGA barcode that matter for sampling: site (TSS), patient, sample type, slide."""

    barcode: str
    site: str
    participant: str
    sample_type: str | None
    slide: str | None

    @property
    def patient_id(self) -> str:
        """TCGA-<TSS>-<participant>, the case every slide of one person shares."""
        return f"TCGA-{self.site}-{self.participant}"


def parse_tcga_barcode(name: str) -> TcgaBarcode | None:
    """Parse a TCGA barcode at the start of `name` (a slide id or file name); None if it is not one."""
    m = _BARCODE_RE.match(name.strip())
    if m is None:
        return None
    return TcgaBarcode(
        barcode=m.group(0).upper(),
        site=m.group("tss").upper(),
        participant=m.group("participant").upper(),
        sample_type=m.group("sample"),
        slide=m.group("slide").upper() if m.group("slide") else None,
    )


def slide_id_from_name(file_name: str) -> str:
    """A valid slide id from a file name: the part before the first dot, other odd characters -> '-'.

    TCGA file names (`TCGA-A1-A0SB-01Z-00-DX1.<uuid>.svs`) give the barcode.
    """
    base = file_name.rsplit("/", 1)[-1]
    stem = base.split(".", 1)[0] or base
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")
    return cleaned or "slide"
