"""Which mpp a slide is tiled at: the manifest's and the slide metadata's must agree unless the row says which
one is wrong (a wrong scale silently changes every tile's field of view)."""

from __future__ import annotations

from g2l.tiling.manifest_io import SlideRow
from g2l.tiling.reader import SlideError


def resolve_slide_mpp(row: SlideRow, metadata_mpp: float | None, tolerance: float) -> tuple[float, str]:
    """(mpp, "manifest" | "metadata") for a slide, or `SlideError` naming the conflict and the fix.

    The row's `mpp_source` decides when set; otherwise a manifest mpp fills in a slide without one, and one
    that differs from the slide's metadata by more than `tolerance` (relative) is an error.
    """
    if row.mpp_source == "manifest":
        if row.mpp is None:  # the manifest schema refuses this row; a DataFrame passed in may not
            raise SlideError(f"slide {row.slide_id}: mpp_source is 'manifest' but its row has no mpp")
        return row.mpp, "manifest"
    if row.mpp_source == "metadata" or row.mpp is None:
        if metadata_mpp is None:
            raise SlideError(
                f"slide {row.slide_id} has no mpp in its metadata; add an `mpp` value to its manifest row"
                + (" and set its mpp_source to 'manifest'" if row.mpp_source == "metadata" else "")
            )
        return metadata_mpp, "metadata"
    if metadata_mpp is None:
        return row.mpp, "manifest"
    apart = abs(row.mpp - metadata_mpp) / metadata_mpp
    if apart > tolerance:
        raise SlideError(
            f"slide {row.slide_id}: the manifest's mpp {row.mpp:g} contradicts the slide's metadata "
            f"({metadata_mpp:g} um/px, {apart:.0%} apart, more than tiling.mpp_tolerance {tolerance:.0%}); "
            "fix the manifest's mpp, or set mpp_source to 'manifest' in its row if the slide's metadata "
            "is wrong (or to 'metadata' if the manifest's mpp is)"
        )
    return row.mpp, "manifest"
