"""Every slide backend reads the generated slides the same way: geometry, mpp and pixels."""

from __future__ import annotations

import numpy as np
import pytest

from g2l.slides import BACKENDS, SlideReader, SlideReadError, open_slide
from g2l.slides.protocol import BackendUnavailableError

ALL = ["cucim", "openslide", "tiffslide", "tifffile-jpeg"]


def _open(path, backend, **kw) -> SlideReader:
    try:
        return open_slide(path, backend=backend, **kw)
    except SlideReadError as e:
        if isinstance(e.__cause__, BackendUnavailableError):
            pytest.skip(f"{backend} not installed here")
        raise


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_registry_lists_every_backend():
    assert set(ALL) <= set(BACKENDS)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("which", ["slide_025", "slide_050"])
def test_backend_reports_geometry_and_mpp(backend, which, request):
    truth = request.getfixturevalue(which)
    with _open(truth.path, backend) as r:
        assert isinstance(r, SlideReader)
        assert r.backend == backend
        assert r.dimensions == truth.dimensions
        assert r.level_count == len(truth.level_dimensions)
        assert r.level_dimensions == truth.level_dimensions
        assert r.level_downsamples == pytest.approx(truth.level_downsamples)
        assert r.mpp == pytest.approx(truth.mpp, rel=1e-3)
        assert r.mpp_source == "metadata"


# (location at level 0, level, size): inside, unaligned, across the right/bottom edge, before the origin.
REGIONS = [
    ((1000, 700), 0, (300, 200)),
    ((1024, 512), 1, (256, 256)),
    ((3900, 2900), 0, (300, 300)),
    ((-96, -48), 0, (200, 160)),
    ((0, 0), 2, (256, 192)),
]


@pytest.mark.parametrize("backend", ["cucim", "tiffslide", "tifffile-jpeg"])
@pytest.mark.parametrize("which", ["slide_025", "slide_050"])
def test_read_region_matches_openslide(backend, which, request):
    slide = request.getfixturevalue(which)
    ref = _open(slide.path, "openslide")
    with _open(slide.path, backend) as r:
        for loc, level, size in REGIONS:
            a, b = r.read_region(loc, level, size), ref.read_region(loc, level, size)
            assert a.shape == (size[1], size[0], 3)
            assert _diff(a, b) < 2.0, (backend, loc, level)
    ref.close()


@pytest.mark.parametrize("backend", ALL)
def test_outside_the_slide_is_white(backend, slide_050):
    w, h = slide_050.dimensions
    with _open(slide_050.path, backend) as r:
        img = r.read_region((w - 50, h - 20), 0, (100, 60))
        assert (img[:, 50:] == 255).all() and (img[20:] == 255).all()
        assert not (img[:20, :50] == 255).all()  # the part inside is real slide pixels
        before = r.read_region((-64, 0), 0, (128, 16))
        assert (before[:, :64] == 255).all()


@pytest.mark.parametrize("backend", ALL)
def test_read_regions_batched_equals_one_by_one(backend, slide_025):
    # Unaligned, overlapping, repeated and edge locations, more than one batch/window.
    locs = [(x * 300 + 37, y * 260 + 11) for y in range(5) for x in range(6)] + [(3900, 2950), (37, 11)]
    with _open(slide_025.path, backend) as r:
        single = [r.read_region(loc, 0, (256, 256)) for loc in locs]
        for workers in (1, 2):
            batched = list(r.read_regions(iter(locs), 0, (256, 256), num_workers=workers))
            assert len(batched) == len(locs)
            for a, b in zip(batched, single, strict=True):
                assert np.array_equal(a, b)
        lvl1 = list(r.read_regions(locs[:6], 1, (64, 48), num_workers=2))
        assert all(
            np.array_equal(a, r.read_region(loc, 1, (64, 48))) for a, loc in zip(lvl1, locs[:6], strict=True)
        )


@pytest.mark.parametrize("backend", ALL)
def test_thumbnail_fits_and_agrees(backend, slide_025):
    ref = _open(slide_025.path, "openslide").thumbnail(300)
    with _open(slide_025.path, backend) as r:
        thumb = r.thumbnail(300)
    assert thumb.shape == (225, 300, 3)
    assert _diff(thumb, ref) < 2.0


def test_fast_path_decodes_each_stored_tile_once(slide_025):
    # 512 px regions offset by 100 px overlap 3x3 stored tiles each; neighbours share tiles.
    locs = [(100 + x * 512, 100 + y * 512) for y in range(5) for x in range(7)]
    with _open(slide_025.path, "tifffile-jpeg") as r:
        before = r.tiles_decoded  # the open-time probe decoded a tile of level 2 and level 0's last tile
        out = list(r.read_regions(locs, 0, (512, 512), num_workers=2))
        touched = {
            (ty, tx)
            for x, y in locs
            for ty in range(y // 256, min(y + 511, 3071) // 256 + 1)
            for tx in range(x // 256, min(x + 511, 4095) // 256 + 1)
        }
        assert r.tiles_decoded - before == len(touched) < 5 * len(locs)  # 9 * len(locs) without sharing
    ref = _open(slide_025.path, "openslide")
    assert max(_diff(a, ref.read_region(loc, 0, (512, 512))) for a, loc in zip(out, locs, strict=True)) < 2.0


def test_fast_path_refuses_non_jpeg_tiles(make_slide):
    s = make_slide(compression="zstd", flavor="generic", width=512, height=512)
    with pytest.raises(SlideReadError, match="tifffile-jpeg.*not a JPEG-compressed tiled image"):
        open_slide(s.path, backend="tifffile-jpeg")


@pytest.mark.parametrize("backend", ALL)
def test_closed_reader_refuses_reads(backend, slide_050):
    with _open(slide_050.path, backend) as r:
        r.read_region((0, 0), 0, (8, 8))
    with pytest.raises(SlideReadError, match="closed"):
        r.read_region((0, 0), 0, (8, 8))
    with pytest.raises(ValueError, match="level 9 out of range"):
        _open(slide_050.path, backend).read_region((0, 0), 9, (8, 8))
