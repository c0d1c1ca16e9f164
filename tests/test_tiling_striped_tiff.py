"""A plain striped (untiled) TIFF with resolution tags tiles under `auto`: the backend is chosen on a real
read, not on opening (issue 14, item 1). cuCIM opens such a file but its batched reader fails with
"Invalid dimension name: N" (cuCIM 26.06); openslide refuses it; tiffslide reads it."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from g2l.slides import SlideReadError, open_slide
from tests.fixtures.tiling import run_g2l, write_manifest


def _cucim_installed() -> bool:
    try:
        import cucim  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def striped(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 1024x768 RGB striped TIFF at 0.5 um/px (resolution tags in pixels per centimetre) and its pixels."""
    import tifffile

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:768, 0:1024]
    tissue = ((xx - 500) / 380.0) ** 2 + ((yy - 380) / 280.0) ** 2 < 1
    img = np.full((768, 1024, 3), 238, np.int16)
    # Stain intensity varies over ~10 px, so a tile read at the wrong place is clearly different.
    shade = (25 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.int16)[tissue]
    img[tissue] = np.stack([205 + shade, 120 + shade, 175 + shade], axis=-1)
    img += rng.integers(-3, 4, img.shape, dtype=np.int16)
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("striped") / "striped.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", rowsperstrip=64, resolution=(2e4, 2e4),
                     resolutionunit="CENTIMETER", metadata=None)
    assert not tifffile.TiffFile(path).pages[0].is_tiled
    return path, pixels


def test_auto_chooses_the_backend_that_reads_it(striped) -> None:
    path, pixels = striped
    with open_slide(path) as reader:
        assert reader.backend == "tiffslide" and reader.backend_reason.endswith("tiffslide read it")
        if _cucim_installed():
            assert "cucim failed" in reader.backend_reason
            assert "Invalid dimension name" in reader.backend_reason
        assert reader.mpp == pytest.approx(0.5)
        assert np.array_equal(reader.read_region((100, 50), 0, (64, 32)), pixels[50:82, 100:164])


@pytest.mark.skipif(not _cucim_installed(), reason="cuCIM is not installed")
def test_explicit_cucim_fails_at_open_on_its_first_real_read(striped) -> None:
    with pytest.raises(SlideReadError, match="Invalid dimension name.*no other was tried"):
        open_slide(striped[0], backend="cucim")


def test_striped_tiff_tiles_under_auto_through_the_cli(tmp_path, striped) -> None:
    path, pixels = striped
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "striped", "uri": str(path)}])
    proc = run_g2l("tile", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["slides_ok"] == 1
    meta = json.loads((tmp_path / "out/tiles/striped/meta.json").read_text())
    assert meta["backend"] == "tiffslide" and meta["backend_reason"].endswith("tiffslide read it")
    coords = pq.read_table(tmp_path / "out/tiles/striped/coords.parquet").to_pydict()
    assert meta["n_tiles"] == len(coords["x"]) >= 4
    with tarfile.open(tmp_path / "out/tiles/striped/tiles.tar") as tar:
        for member, x, y in zip(tar.getmembers(), coords["x"], coords["y"], strict=True):
            assert member.name == f"striped_{x}_{y}.jpg"
            tile = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
            want = pixels[y : y + 256, x : x + 256].astype(np.int16)
            error = np.abs(tile - want).mean()
            assert error < 4.0  # JPEG at quality 90
            assert np.abs(tile - np.roll(want, 5, axis=1)).mean() > error + 2  # 5 px off is clearly worse
