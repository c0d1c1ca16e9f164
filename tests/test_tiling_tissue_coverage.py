"""On generated slides with known tissue blobs, kept tiles cover the tissue and not the background."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from g2l.synth.slides import Blob
from g2l.tiling import TilingConfig, tile_slides
from tests.fixtures.tiling import write_manifest

STEP = 8  # truth is sampled every 8 level-0 px

BLOBS = [
    Blob(
        cx=1700,
        cy=1700,
        rx=1200,
        ry=900,
        angle=0.4,
        wave=((0.06, 3, 0.5), (0.04, 5, 1.0)),
        hole=(1800, 1600, 400, 300),
    ),  # a 0.09 mm2 hole: real background inside the section
    Blob(cx=4300, cy=2300, rx=1100, ry=1000, angle=1.2, wave=((0.08, 2, 2.0), (0.05, 5, 0.3))),
]


def _coverage(slide, coords) -> tuple[float, float, np.ndarray]:
    """(tissue covered by kept tiles, fraction of kept tiles on background, per-tile true tissue fraction)."""
    w, h = slide.dimensions
    yy, xx = np.mgrid[0:h:STEP, 0:w:STEP].astype(np.float32) + STEP / 2
    truth = slide.tissue_mask_at(xx, yy)
    covered = np.zeros_like(truth)
    true_fraction = []
    for row in coords.itertuples():
        window = (
            slice(row.y // STEP, (row.y + row.size0) // STEP),
            slice(row.x // STEP, (row.x + row.size0) // STEP),
        )
        covered[window] = True
        true_fraction.append(truth[window].mean())
    true_fraction = np.array(true_fraction)
    return float((truth & covered).sum() / truth.sum()), float((true_fraction < 0.05).mean()), true_fraction


@pytest.fixture(scope="module")
def blob_slide(tmp_path_factory):
    from g2l.synth.slides import write_synthetic_slide

    path = tmp_path_factory.mktemp("blobs") / "blobs.svs"
    return write_synthetic_slide(path, width=6144, height=4096, mpp=0.5, seed=4, pen_mark=True, blobs=BLOBS)


def test_kept_tiles_cover_the_tissue_and_not_the_background(tmp_path, blob_slide) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "blobs", "uri": str(blob_slide.path)}])
    tile_slides(manifest, tmp_path / "out", TilingConfig(), quiet=True)
    coords = pq.read_table(tmp_path / "out/tiles/blobs/coords.parquet").to_pandas()
    covered, on_background, true_fraction = _coverage(blob_slide, coords)
    assert covered >= 0.95, covered
    assert on_background <= 0.05, on_background
    # The recorded tissue fraction tracks the truth tile by tile.
    assert np.abs(coords["tissue"].to_numpy() - true_fraction).mean() < 0.05
    meta = json.loads((tmp_path / "out/tiles/blobs/meta.json").read_text())
    assert meta["pen_fraction"] > 0  # the pen stroke was seen and masked out


def test_a_stricter_tissue_threshold_keeps_fewer_tiles(tmp_path, blob_slide) -> None:
    """min_tissue_fraction is honoured: every kept tile has at least that much tissue under it."""
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "blobs", "uri": str(blob_slide.path)}])
    tile_slides(manifest, tmp_path / "strict", TilingConfig(min_tissue_fraction=0.9), quiet=True)
    tile_slides(manifest, tmp_path / "loose", TilingConfig(min_tissue_fraction=0.25), quiet=True)
    strict = pq.read_table(tmp_path / "strict/tiles/blobs/coords.parquet").to_pandas()
    loose = pq.read_table(tmp_path / "loose/tiles/blobs/coords.parquet").to_pandas()
    assert (strict["tissue"] >= 0.9).all() and (loose["tissue"] >= 0.25).all()
    assert 0 < len(strict) < len(loose)
    _, _, true_fraction = _coverage(blob_slide, strict)
    assert true_fraction.min() > 0.75
