"""The synthetic slide generator writes real pyramidal JPEG TIFFs whose pixels match their ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy.ndimage import binary_erosion
from skimage.filters import threshold_otsu

from g2l.synth.slides import MASK_DOWNSAMPLE, Blob


def _level(path, index: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].levels[index].asarray()


def _saturation(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1), 0)


def test_writes_svs_like_tiled_jpeg_pyramid_with_mpp(slide_025):
    assert slide_025.level_dimensions == ((4096, 3072), (1024, 768), (256, 192))
    assert slide_025.level_downsamples == (1.0, 4.0, 16.0)
    with tifffile.TiffFile(slide_025.path) as tif:
        assert tif.is_svs
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(3072, 4096, 3), (768, 1024, 3), (192, 256, 3)]
        for lv in levels:
            page = lv.keyframe
            assert page.is_tiled and (page.tilewidth, page.tilelength) == (256, 256)
            assert page.compression == tifffile.COMPRESSION.JPEG
        page0 = levels[0].keyframe
        assert "MPP = 0.2500" in page0.description
        assert page0.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert page0.resolution[0] == pytest.approx(1e4 / 0.25)


def test_no_mpp_slide_carries_no_mpp_anywhere(slide_nompp):
    with tifffile.TiffFile(slide_nompp.path) as tif:
        page0 = tif.pages[0]
        assert "MPP" not in page0.description
        assert page0.resolutionunit == tifffile.RESUNIT.NONE


def test_tissue_mask_matches_pixels(slide_025):
    # Level 2 has the masks' downsample (16), so mask pixel (i, j) is level-2 pixel (i, j).
    assert slide_025.level_downsamples[2] == MASK_DOWNSAMPLE
    img = _level(slide_025.path, 2)
    sat = _saturation(img)
    tissue = slide_025.tissue_mask[: img.shape[0], : img.shape[1]]
    pen = slide_025.pen_mask[: img.shape[0], : img.shape[1]]
    assert 0.05 < tissue.mean() < 0.7 and pen.any()
    # Away from edges (where a level-2 pixel mixes tissue and glass), tissue is saturated and glass is not.
    core_tissue = binary_erosion(tissue, np.ones((3, 3))) & ~pen
    core_glass = binary_erosion(~tissue & ~pen, np.ones((5, 5)))
    assert np.median(sat[core_tissue]) > 0.25
    assert np.percentile(sat[core_glass], 99) < 0.08
    # Otsu on saturation agrees with the ground truth almost everywhere off the pen stroke.
    found = sat > threshold_otsu(sat[~pen])
    assert (found == tissue)[~pen].mean() > 0.97


def test_pen_mark_is_saturated_green_not_tissue(slide_025):
    img = _level(slide_025.path, 2).astype(int)
    pen_only = binary_erosion(slide_025.pen_mask, np.ones((3, 1))) & ~slide_025.tissue_mask
    pen_only = pen_only[: img.shape[0], : img.shape[1]]
    assert pen_only.sum() > 10
    r, g, b = img[pen_only].T
    assert (g > r + 40).mean() > 0.9 and np.median(_saturation(img[pen_only])) > 0.4
    # Tissue is pink/purple: red above green, unlike the pen.
    core_tissue = binary_erosion(slide_025.tissue_mask, np.ones((3, 3)))[: img.shape[0], : img.shape[1]]
    r, g, b = img[core_tissue & ~slide_025.pen_mask[: img.shape[0], : img.shape[1]]].T
    assert (r > g).mean() > 0.95


def test_blob_hole_is_glass_inside_tissue(make_slide):
    blob = Blob(cx=512, cy=384, rx=300, ry=250, angle=0.0, hole=(512, 384, 80, 60))
    s = make_slide(blobs=[blob])
    ds = s.mask_downsample
    assert not s.tissue_mask[384 // ds, 512 // ds]  # hole centre
    assert s.tissue_mask[384 // ds, (512 + 150) // ds]  # tissue ring around the hole
    assert not s.tissue_mask[10 // ds, 10 // ds]  # corner glass
    img = _level(s.path, 0)
    assert _saturation(img[380:388, 508:516]).mean() < 0.08
    assert _saturation(img[380:388, 660:668]).mean() > 0.15


def test_lower_levels_are_area_averages_of_level0(slide_050):
    lvl0 = _level(slide_050.path, 0).astype(np.float32)
    lvl1 = _level(slide_050.path, 1).astype(np.float32)
    h, w = lvl1.shape[:2]
    pooled = lvl0[: h * 4, : w * 4].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
    assert np.abs(pooled - lvl1).mean() < 2.0  # only JPEG loss separates them


def test_seed_determines_the_slide(make_slide):
    a = make_slide(name="a.svs", seed=7)
    b = make_slide(name="b.svs", seed=7)
    c = make_slide(name="c.svs", seed=8)
    assert a.blobs == b.blobs and a.blobs != c.blobs
    assert np.array_equal(_level(a.path, 1), _level(b.path, 1))
    assert not np.array_equal(a.tissue_mask, c.tissue_mask)


def test_ragged_size_and_options(make_slide):
    s = make_slide(
        width=1000, height=700, tile_px=128, levels=2, mpp=0.5, stain=((200, 120, 160), (60, 40, 100))
    )
    with tifffile.TiffFile(s.path) as tif:
        assert [lv.shape[:2] for lv in tif.series[0].levels] == [(700, 1000), (175, 250)]
        assert tif.pages[0].tilewidth == 128
    assert s.tissue_mask.shape == (-(-700 // 16), -(-1000 // 16))
    with pytest.raises(ValueError, match="mpp"):
        make_slide(mpp=0)
