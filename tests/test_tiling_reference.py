"""The pipelined tiler makes the same tiles, byte for byte, as the serial reference of issue 15's start.

tests/fixtures/tiling_reference.py is the tile-making code as it was before the throughput work. Every
read path is compared: stored tiles copied (20x), stored tiles decoded and area-averaged (40x), and the
backend's own reads (shortcuts off); and a run of many slides with a failing and a blank one among them,
where slides overlap in the pipeline, must still put each slide's own tiles in its own tar.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import ndimage

from g2l.tiling import TilingConfig, run_tiling, tile_slides
from g2l.tiling.shards import iter_tar
from g2l.tiling.tissue import _remove_small, _small_holes
from tests.fixtures.tiling import TiledRun, write_manifest
from tests.fixtures.tiling_reference import ReferenceTiles, reference_tiles, remove_small, small_holes


def _written(root: Path, slide_id: str) -> tuple[list[int], list[int], list[tuple[str, bytes]]]:
    coords = pq.read_table(root / "tiles" / slide_id / "coords.parquet").to_pydict()
    return coords["x"], coords["y"], list(iter_tar(root / "tiles" / slide_id / "tiles.tar"))


def _assert_same_tiles(root: Path, slide_id: str, ref: ReferenceTiles) -> None:
    xs, ys, members = _written(root, slide_id)
    assert (xs, ys) == (ref.xs, ref.ys), f"{slide_id}: kept tiles differ from the reference"
    assert [name for name, _ in members] == [f"{slide_id}_{x}_{y}.jpg" for x, y in zip(xs, ys, strict=True)]
    differing = [name for (name, data), want in zip(members, ref.jpegs, strict=True) if data != want]
    assert not differing, f"{slide_id}: {len(differing)} of {len(members)} tiles differ, e.g. {differing[:3]}"


@pytest.mark.parametrize(
    "slide_id, read_path, mpp",
    [("s025", "jpeg-tiles", None), ("s050", "jpeg-copy", None), ("nompp", "jpeg-copy", 0.5)],
)
def test_tiles_are_byte_identical_to_the_reference(
    tiled_run: TiledRun, slide_id: str, read_path: str, mpp: float | None
) -> None:
    meta = json.loads((tiled_run.root / "tiles" / slide_id / "meta.json").read_text())
    assert meta["read_path"] == read_path and meta["n_tiles"] >= 4
    path = str(tiled_run.slides[slide_id].path)
    ref = reference_tiles(path, TilingConfig(), read_path=read_path, mpp_override=mpp)
    _assert_same_tiles(tiled_run.root, slide_id, ref)


def test_backend_read_path_is_byte_identical_to_the_reference(tmp_path: Path, tiled_run: TiledRun) -> None:
    config = TilingConfig(jpeg_passthrough=False, fast_jpeg=False, workers=2)
    tile_slides(tiled_run.manifest, tmp_path, config, slide_ids=["s025"], quiet=True)
    assert json.loads((tmp_path / "tiles/s025/meta.json").read_text())["read_path"] == "reader"
    ref = reference_tiles(str(tiled_run.slides["s025"].path), config, read_path="reader")
    _assert_same_tiles(tmp_path, "s025", ref)


def test_many_slides_in_flight_keep_their_own_tiles(tmp_path: Path, make_slide, corrupt_slide) -> None:
    """Slides of different sizes and read paths overlap in the pipeline; each tar holds its own tiles."""
    slides = {
        "a40": make_slide(width=3072, height=2048, mpp=0.25, seed=11),
        "b20": make_slide(width=1536, height=1024, mpp=0.5, seed=12),
        "blank": make_slide(width=1024, height=768, mpp=0.5, blobs=[], seed=13),
        "c40": make_slide(width=2048, height=2048, mpp=0.25, seed=14, pen_mark=True),
        "d20": make_slide(width=2048, height=1024, mpp=0.5, seed=15),
    }
    rows = [{"slide_id": sid, "uri": str(s.path)} for sid, s in slides.items()]
    rows.insert(2, {"slide_id": "broken", "uri": str(corrupt_slide)})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    config = TilingConfig(workers=2, batch_tiles=8)  # small batches: many hand-overs between slides
    result = run_tiling(manifest, tmp_path / "out", config, quiet=True)
    assert result.slides_ok == ["a40", "b20", "blank", "c40", "d20"]
    assert [f["slide_id"] for f in result.slides_failed] == ["broken"]
    for sid, slide in slides.items():
        meta = json.loads((tmp_path / "out/tiles" / sid / "meta.json").read_text())
        read_path = meta["read_path"] if meta["n_tiles"] else "jpeg-copy"
        ref = reference_tiles(str(slide.path), config, read_path=read_path)
        _assert_same_tiles(tmp_path / "out", sid, ref)
    assert json.loads((tmp_path / "out/tiles/blank/meta.json").read_text())["n_tiles"] == 0


@pytest.mark.parametrize("density", [0.3, 0.5, 0.7])
def test_tissue_clean_up_equals_scipy_labelling(density: float) -> None:
    """Specks and holes found by OpenCV's 4-connected labelling are scipy.ndimage's, pixel for pixel."""
    rng = np.random.default_rng(int(density * 10))
    for _ in range(20):
        shape = tuple(int(v) for v in rng.integers(1, 120, size=2))
        noise = rng.random(shape)
        mask = ndimage.uniform_filter(noise, size=3) < density  # blobs, holes and specks of all sizes
        for max_px in (0, 1, 3, 10, 50):
            assert np.array_equal(_remove_small(mask, max_px), remove_small(mask, max_px))
            assert np.array_equal(_small_holes(mask, max_px), small_holes(mask, max_px))
