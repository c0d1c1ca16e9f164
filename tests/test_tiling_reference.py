"""The pipelined tiler makes the tiles the serial reference of issue 15's start made.

tests/fixtures/tiling_reference.py is the tile-making code as it was before the throughput work. Byte for
byte: stored tiles copied (20x), stored tiles decoded at full size and area-averaged (40x with
`jpeg_scaled_decode: false`), the backend's own reads (shortcuts off). Within the resample path's
tolerance (`MATCH_TOLERANCE`, mean abs 1.5 per tile): 40x tiles decoded by DCT scaling, the default. And a
run of many slides with a failing and a blank one among them, where slides overlap in the pipeline, must
still put each slide's own tiles in its own tar.
"""

from __future__ import annotations

import json
from pathlib import Path

import imagecodecs
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import ndimage

from g2l.tiling import TilingConfig, run_tiling, tile_slides
from g2l.tiling.shards import TileRecords, _header, iter_tar
from g2l.tiling.stored_tiles import MATCH_TOLERANCE
from g2l.tiling.tissue import _remove_small, _small_holes
from tests.fixtures.tiling import TiledRun, write_manifest
from tests.fixtures.tiling_reference import (
    ReferenceTiles,
    reference_tiles,
    remove_small,
    small_holes,
    tar_header,
    tile_json,
)


def _written(root: Path, slide_id: str) -> tuple[list[int], list[int], list[tuple[str, bytes]]]:
    coords = pq.read_table(root / "tiles" / slide_id / "coords.parquet").to_pydict()
    return coords["x"], coords["y"], list(iter_tar(root / "tiles" / slide_id / "tiles.tar"))


def _assert_same_tiles(root: Path, slide_id: str, ref: ReferenceTiles, *, exact: bool = True) -> float:
    """Same kept tiles in the same order; bytes equal (`exact`) or pixels within MATCH_TOLERANCE per tile.

    Returns the largest per-tile mean abs difference.
    """
    xs, ys, members = _written(root, slide_id)
    assert (xs, ys) == (ref.xs, ref.ys), f"{slide_id}: kept tiles differ from the reference"
    assert [name for name, _ in members] == [f"{slide_id}_{x}_{y}.jpg" for x, y in zip(xs, ys, strict=True)]
    if exact:
        differing = [name for (name, data), want in zip(members, ref.jpegs, strict=True) if data != want]
        assert not differing, f"{slide_id}: {len(differing)}/{len(members)} tiles differ: {differing[:3]}"
        return 0.0
    worst = 0.0
    for (name, data), want in zip(members, ref.jpegs, strict=True):
        got = imagecodecs.jpeg8_decode(data).astype(np.int16)
        mad = float(np.abs(got - imagecodecs.jpeg8_decode(want)).mean())
        assert mad <= MATCH_TOLERANCE, f"{slide_id}: {name} differs by a mean of {mad:.2f}"
        worst = max(worst, mad)
    return worst


@pytest.mark.parametrize("slide_id, mpp", [("s050", None), ("nompp", 0.5)])
def test_copied_tiles_are_byte_identical_to_the_reference(
    tiled_run: TiledRun, slide_id: str, mpp: float | None
) -> None:
    meta = json.loads((tiled_run.root / "tiles" / slide_id / "meta.json").read_text())
    assert meta["read_path"] == "jpeg-copy" and meta["n_tiles"] >= 4
    path = str(tiled_run.slides[slide_id].path)
    ref = reference_tiles(path, TilingConfig(), read_path="jpeg-copy", mpp_override=mpp)
    _assert_same_tiles(tiled_run.root, slide_id, ref)


def test_scaled_decode_tiles_are_within_the_resample_tolerance(tiled_run: TiledRun) -> None:
    """40x tiles decoded at half size by libjpeg stay within the tolerance of full decode + area average."""
    meta = json.loads((tiled_run.root / "tiles/s025/meta.json").read_text())
    assert meta["read_path"] == "jpeg-tiles" and meta["tile_pixels"] == "stored-dct-scaled"
    ref = reference_tiles(str(tiled_run.slides["s025"].path), TilingConfig(), read_path="jpeg-tiles")
    worst = _assert_same_tiles(tiled_run.root, "s025", ref, exact=False)
    assert 0 < worst, "scaled decoding is a different computation: equal bytes would mean it never ran"


def test_exact_area_average_is_byte_identical_to_the_reference(tmp_path: Path, tiled_run: TiledRun) -> None:
    config = TilingConfig(jpeg_scaled_decode=False, workers=2)
    tile_slides(tiled_run.manifest, tmp_path, config, slide_ids=["s025"], quiet=True)
    meta = json.loads((tmp_path / "tiles/s025/meta.json").read_text())
    assert meta["read_path"] == "jpeg-tiles" and meta["tile_pixels"] == "stored-decode-area"
    ref = reference_tiles(str(tiled_run.slides["s025"].path), config, read_path="jpeg-tiles")
    _assert_same_tiles(tmp_path, "s025", ref)


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
        _assert_same_tiles(tmp_path / "out", sid, ref, exact=read_path == "jpeg-copy")
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


def test_shard_members_are_byte_identical_to_the_reference() -> None:
    """Tar headers from the prebuilt template and tile records formatted directly equal the old encoders."""
    rng = np.random.default_rng(0)
    for i in range(2000):
        x, y = (int(v) for v in rng.integers(0, 10**7, size=2))
        name = f"slide-{i}_{x}_{y}.{('jpg', 'json')[i % 2]}"
        size = int(rng.integers(0, 8**11 - 1)) if i % 3 else int(rng.integers(0, 10**5))
        assert _header(name, size) == tar_header(name, size)
    records = TileRecords('TCGA-"ü"\\1', "site ê")
    for i in range(2000):
        x, y = (int(v) for v in rng.integers(0, 10**6, size=2))
        tissue = float(np.float32(rng.random())) if i % 4 else (0.0, 1.0, 0.25, 1e-5)[i // 4 % 4]
        assert records.json(x, y, 512, tissue) == tile_json('TCGA-"ü"\\1', x, y, 512, "site ê", tissue)


def test_shards_written_side_by_side_equal_shards_written_one_by_one(
    tmp_path: Path, tiled_run: TiledRun
) -> None:
    """Shards are packed in parallel from a plan of tile runs; the bytes must equal a one-at-a-time pack."""
    import shutil

    from g2l.tiling import write_shards

    got = {}
    for workers in (1, 3):
        root = tmp_path / f"w{workers}"
        shutil.copytree(tiled_run.root / "tiles", root / "tiles")
        (root / "tiles/settings.json").unlink(missing_ok=True)
        config = TilingConfig(tiles_per_shard=5, workers=workers)
        summary = write_shards(root, tiled_run.manifest, config, replace=True)
        assert summary["n_shards"] >= 4  # runs start and end inside slides
        got[workers] = {p.name: p.read_bytes() for p in sorted((root / "shards").glob("shard-*.tar"))}
    assert got[1] == got[3]
    names = [name for data in got[1].values() for name in _tar_names(data)]
    expected = []
    for slide_id in ("s025", "s050", "nompp"):
        xs, ys, _ = _written(tiled_run.root, slide_id)
        expected += [
            f"{slide_id}_{x}_{y}.{ext}" for x, y in zip(xs, ys, strict=True) for ext in ("jpg", "json")
        ]
    assert names == expected


def _tar_names(data: bytes) -> list[str]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()
