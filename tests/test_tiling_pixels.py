"""Tile pixels equal an independent read of the same region: openslide at level 0, area-averaged."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import openslide
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.fixtures.tiling import TiledRun


def _tiles(root, slide_id: str) -> dict[str, np.ndarray]:
    out = {}
    with tarfile.open(root / "tiles" / slide_id / "tiles.tar") as tar:
        for member in tar:
            out[member.name] = np.asarray(
                Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
            )
    return out


def _reference(path, x: int, y: int, size0: int, tile_px: int) -> np.ndarray:
    """openslide level-0 read of the tile's square, resampled to tile_px with area averaging."""
    with openslide.OpenSlide(str(path)) as slide:
        region = slide.read_region((x, y), 0, (size0, size0)).convert("RGB")
    return np.asarray(region.resize((tile_px, tile_px), Image.Resampling.BOX)).astype(np.int16)


@pytest.mark.parametrize("slide_id, expected_size0", [("s025", 512), ("s050", 256), ("nompp", 256)])
def test_tiles_match_openslide_region_resampled(
    tiled_run: TiledRun, slide_id: str, expected_size0: int
) -> None:
    root = tiled_run.root
    coords = pq.read_table(root / "tiles" / slide_id / "coords.parquet").to_pandas()
    meta = json.loads((root / "tiles" / slide_id / "meta.json").read_text())
    assert len(coords) >= 4 and (coords["size0"] == expected_size0).all()
    tiles = _tiles(root, slide_id)
    path = tiled_run.slides[slide_id].path
    sample = coords.iloc[np.linspace(0, len(coords) - 1, 4).astype(int)]
    for row in sample.itertuples():
        tile = tiles[f"{slide_id}_{row.x}_{row.y}.jpg"].astype(np.int16)
        assert tile.shape == (256, 256, 3)
        ref = _reference(path, row.x, row.y, row.size0, 256)
        assert np.abs(tile - ref).mean() < 3.0, (slide_id, row.x, row.y, meta["jpeg_passthrough"])
        # The comparison can fail: the same reference a quarter tile away is clearly different.
        shifted = _reference(path, row.x + row.size0 // 4, row.y, row.size0, 256)
        assert np.abs(tile - shifted).mean() > 2 * np.abs(tile - ref).mean() + 1.0


def test_resampled_and_passthrough_paths_are_both_exercised(tiled_run: TiledRun) -> None:
    meta = {s: json.loads((tiled_run.root / "tiles" / s / "meta.json").read_text()) for s in ("s025", "s050")}
    assert meta["s025"]["read_px"] == 512 and meta["s025"]["tile_mpp"] == pytest.approx(0.5)
    assert meta["s050"]["read_px"] == 256 and meta["s050"]["jpeg_passthrough"] is True


def test_passthrough_off_gives_the_same_pixels(tmp_path, tiled_run: TiledRun) -> None:
    """Decode + re-encode and stored-JPEG copy agree (the copy is not a shortcut that changes pixels)."""
    from g2l.tiling import TilingConfig, tile_slides

    tile_slides(
        tiled_run.manifest, tmp_path, TilingConfig(jpeg_passthrough=False), slide_ids=["s050"], quiet=True
    )
    decoded = _tiles(tmp_path, "s050")
    copied = _tiles(tiled_run.root, "s050")
    assert decoded.keys() == copied.keys()
    for key in decoded:
        assert np.abs(decoded[key].astype(np.int16) - copied[key]).mean() < 1.5


@pytest.mark.gpu
def test_cucim_on_gpu_reads_through_nvjpeg_and_matches(tmp_path, tiled_run: TiledRun) -> None:
    from g2l.slides.cucim_backend import gpu_available
    from g2l.tiling import TilingConfig, tile_slides

    if not gpu_available():
        pytest.skip("no CUDA device")
    tile_slides(tiled_run.manifest, tmp_path, TilingConfig(backend="cucim"), slide_ids=["s025"], quiet=True)
    meta = json.loads((tmp_path / "tiles/s025/meta.json").read_text())
    assert meta["backend"] == "cucim" and meta["read_path"] == "reader"
    gpu, cpu = _tiles(tmp_path, "s025"), _tiles(tiled_run.root, "s025")
    assert gpu.keys() == cpu.keys()
    for key in gpu:
        assert np.abs(gpu[key].astype(np.int16) - cpu[key]).mean() < 3.0


def test_default_subsampling_keeps_finished_slides_finished() -> None:
    """The key is left out of the done-hash at 4:2:0, so roots tiled before it existed are not re-tiled.

    (So is jpeg_scaled_decode at false, the setting that gives the old bytes; its default, true, changes
    40x tiles within the resample tolerance and so gives another hash.)
    """
    from g2l.tiling import TilingConfig
    from g2l.tiling.slide import output_config_hash

    # output_config_hash(TilingConfig()) at commit 85fb676, before tiling.jpeg_subsampling existed.
    before = "96fab2a2cfe6376ab54b0547ad578091a709e571badb7b28903539907fe0a710"
    old_bytes = TilingConfig(jpeg_scaled_decode=False)
    assert output_config_hash(old_bytes) == before
    assert output_config_hash(TilingConfig(jpeg_scaled_decode=False, jpeg_subsampling="4:4:4")) != before
    assert output_config_hash(TilingConfig()) != before
