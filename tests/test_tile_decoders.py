"""Stored-tile decoders: simplejpeg and OpenCV give the same pixels; the first that imports is used.

Both are libjpeg-turbo. What the tests rely on, read in their sources: simplejpeg 1.9.0
`simplejpeg/_jpeg.pyi` (decode_jpeg: `min_factor` is original/decoded size, `min_height`/`min_width` the
smallest output kept, `strict=False` decodes through recoverable errors) and opencv/opencv
`modules/imgcodecs/include/opencv2/imgcodecs.hpp` (IMREAD_REDUCED_COLOR_2/_4/_8 = libjpeg scale_denom).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import g2l.tiling.stored_tiles as stored_mod
from g2l.tiling import TilingConfig, tile_slides
from g2l.tiling.jpeg_decoders import SCALES, make_decoder, tile_decoder
from g2l.tiling.stored_tiles import StoredTiles, assemble_jpeg
from tests.fixtures.tiling import write_manifest


def test_simplejpeg_and_opencv_decode_the_same_pixels(slide_025) -> None:
    simple, cv = make_decoder("simplejpeg"), make_decoder("opencv")
    stored = StoredTiles(slide_025.path, width=4096, height=3072)
    try:
        seen = set()
        busiest = np.argsort(stored.counts)[-4:]  # the four stored tiles with the most detail (tissue)
        places = [
            (int(i % stored.tiles_across) * stored.tile, int(i // stored.tiles_across) * stored.tile)
            for i in busiest
        ]
        for x, y in places:
            raw = stored.raw(x, y)
            for adobe in (False, True):  # YCbCr as stored, and the same bytes declared RGB
                data = assemble_jpeg(raw, stored.tables, adobe_rgb=adobe)
                for scale in SCALES:
                    a = simple.decode(data, scale, stored.tile)
                    b = cv.decode(data, scale, stored.tile)
                    side = stored.tile // scale
                    assert a.shape == b.shape == (side, side, 3)
                    assert np.array_equal(a, b), (x, y, adobe, scale)
                    seen.add(a.tobytes())
    finally:
        stored.close()
    # Every place and scale gave its own pixels (the synthetic tiles decode alike under both framings).
    assert len(seen) == 4 * len(SCALES)


def test_a_tile_that_does_not_decode_is_named(slide_025, monkeypatch) -> None:
    stored = StoredTiles(slide_025.path, width=4096, height=3072)
    # A stored tile that starts like a JPEG and then is not one (a damaged file).
    monkeypatch.setattr(stored, "raw", lambda x, y: b"\xff\xd8" + bytes(range(256)) * 4)
    try:
        for name in ("simplejpeg", "opencv"):
            stored.decoder = make_decoder(name)
            with pytest.raises(
                ValueError, match=r"stored tile at level px \(512, 256\) could not be decoded"
            ):
                stored.decode_at_scale(512, 256, 2)
    finally:
        stored.close()


def test_opencv_is_used_when_simplejpeg_is_missing(monkeypatch) -> None:
    tile_decoder.cache_clear()
    try:
        assert tile_decoder().name == "simplejpeg"
        tile_decoder.cache_clear()
        monkeypatch.setitem(sys.modules, "simplejpeg", None)  # `import simplejpeg` raises ImportError
        assert tile_decoder().name == "opencv"
    finally:
        tile_decoder.cache_clear()


def test_tiles_are_byte_identical_whichever_decoder_made_them(tmp_path: Path, slide_025, monkeypatch) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "s", "uri": str(slide_025.path)}])
    metas = {}
    for name in ("simplejpeg", "opencv"):
        monkeypatch.setattr(stored_mod, "tile_decoder", lambda name=name: make_decoder(name))
        tile_slides(manifest, tmp_path / name, TilingConfig(), quiet=True)
        metas[name] = json.loads((tmp_path / name / "tiles/s/meta.json").read_text())
    assert metas["simplejpeg"]["tile_pixels"] == "stored-dct-scaled"
    assert metas["simplejpeg"]["tile_decoder"].startswith("simplejpeg ")
    assert metas["opencv"]["tile_decoder"].startswith("opencv ")
    assert metas["simplejpeg"]["n_tiles"] >= 8
    assert metas["simplejpeg"]["tiles_sha256"] == metas["opencv"]["tiles_sha256"]
    tars = [(tmp_path / name / "tiles/s/tiles.tar").read_bytes() for name in ("simplejpeg", "opencv")]
    assert tars[0] == tars[1]
