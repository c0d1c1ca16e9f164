"""Benchmark images reach the model at the training mpp with their aspect ratio: resampled, never squashed.

Like eva's ResizeAndCrop (kaiko-ai/eva src/eva/vision/data/transforms/common/resize_and_crop.py:
Resize(shorter side) then CenterCrop) but scaled by native / input mpp first.
"""


import numpy as np
import pytest
import yaml
from PIL import Image

from g2l.evaluate.benchmark import load_benchmark
from g2l.evaluate.tiles import InputSpec, prepare


def coordinate_image(width, height):
    """R = x, G = y (mod 256): a crop tells where each of its pixels came from."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx % 256, yy % 256, np.zeros_like(xx)], axis=-1).astype(np.uint8)


def slopes(crop):
    """Source pixels per output pixel along x and along y (from the coordinate channels)."""
    r = crop[..., 0].astype(float)
    g = crop[..., 1].astype(float)
    mid = crop.shape[0] // 2
    return round(float(np.mean(np.diff(r[mid, 4:-4]))), 2), round(float(np.mean(np.diff(g[4:-4, mid]))), 2)


def test_a_non_square_image_keeps_its_aspect_ratio_at_the_input_mpp():
    img = coordinate_image(240, 160)  # 3:2, at 0.25 um/px
    (crop,) = prepare(img, InputSpec(native_mpp=0.25, input_mpp=0.5, tile_px=64))
    sx, sy = slopes(crop)
    assert crop.shape == (64, 64, 3)
    assert sx == sy == 2.0  # the same scale along both axes: 0.25 -> 0.5 um/px
    # The crop is the centre: 120 x 80 after resampling, offsets (28, 8) in it, i.e. (56, 16) in the source.
    assert (
        abs(float(crop[32, 32, 0]) - (56 + 64.5)) <= 1.5 and abs(float(crop[32, 32, 1]) - (16 + 64.5)) <= 1.5
    )
    # What the old squash did, for contrast: 240 x 160 into 64 x 64 distorts x by 3.75 and y by 2.5.
    squashed = np.asarray(Image.fromarray(img).resize((64, 64), Image.Resampling.BILINEAR))
    assert slopes(squashed)[0] > 1.4 * slopes(squashed)[1]


def test_fits_grid_whole_enlarge_and_identity():
    big = coordinate_image(2048, 1536)
    grid = prepare(big, InputSpec(native_mpp=0.42, input_mpp=0.5, tile_px=224, fit="grid", max_crops=16))
    assert grid.shape == (16, 224, 224, 3)  # 1720 x 1290 at 0.5 um/px: the central 4 x 4 of 7 x 5 crops
    assert all(slopes(c)[0] == slopes(c)[1] for c in grid[:3])
    small = coordinate_image(50, 50)
    (whole,) = prepare(small, InputSpec(native_mpp=4.0, input_mpp=0.5, tile_px=224, fit="whole"))
    assert whole.shape == (224, 224, 3)
    (enlarged,) = prepare(coordinate_image(100, 100), InputSpec(native_mpp=0.5, input_mpp=0.5, tile_px=224))
    assert enlarged.shape == (224, 224, 3)
    tile = coordinate_image(64, 64)
    assert np.array_equal(prepare(tile, InputSpec(native_mpp=0.5, input_mpp=0.5, tile_px=64))[0], tile)


def test_a_folder_benchmark_delivers_unsquashed_crops(tmp_path):
    root = tmp_path / "data"
    for label in ("a", "b"):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(coordinate_image(240, 160)).save(root / label / f"{i}.png")
    spec = {
        "name": "t",
        "root": str(root),
        "folders": {"pattern": "{label}/*.png"},
        "mpp": 0.25,
        "tile_px": 64,
        "split": {"kind": "holdout", "test_fraction": 0.5},
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
    bench = load_benchmark(tmp_path / "t.yaml")
    _, crops = next(bench.iter_batches(8, num_workers=1))
    assert {c.shape for c in crops} == {(1, 64, 64, 3)}
    assert slopes(crops[0][0]) == (2.0, 2.0)
    # At 1 um/px the image is 60 x 40, smaller than a tile: enlarged to 96 x 64, still unsquashed.
    other = load_benchmark(tmp_path / "t.yaml", input_mpp=1.0)
    assert other.content_sha256 != bench.content_sha256  # other pixels, other stored embeddings
    assert slopes(next(other.iter_batches(1))[1][0][0]) == pytest.approx((2.5, 2.5), abs=0.05)
