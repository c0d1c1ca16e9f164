"""Area averaging that runs where the pixels are (the GPU with cuCIM device="cuda") gives OpenCV's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from g2l.slides.base import AREA_EXACT_FACTORS, area_downsample
from g2l.tiling.tissue import opencv


@pytest.mark.parametrize("factor", AREA_EXACT_FACTORS)
def test_area_downsample_equals_opencv_inter_area(factor: int) -> None:
    """A GPU run makes the CPU run's tiles: same averages, same rounding (half up at 2x, even at 4x/8x)."""
    cv2 = opencv()
    rng = np.random.default_rng(factor)
    batch = rng.integers(0, 256, size=(3, 64 * factor, 64 * factor, 3), dtype=np.uint8)
    batch[0] = np.repeat(np.arange(64 * factor, dtype=np.uint8)[:, None, None], 3, axis=2)  # many .5 ties
    want = np.stack([cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA) for img in batch])
    assert np.array_equal(area_downsample(np, batch, factor), want)


def test_area_downsample_refuses_what_does_not_divide() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        area_downsample(np, np.zeros((1, 10, 10, 3), np.uint8), 4)


@pytest.mark.gpu
def test_gpu_resampled_regions_equal_host_resampled_ones(slide_025) -> None:
    """cuCIM device="cuda": nvJPEG decodes, the GPU averages; the host's average of the same read agrees."""
    from g2l.slides.cucim_backend import CuCIMReader, gpu_available

    if not gpu_available():
        pytest.skip("no CUDA device")
    cv2 = opencv()
    reader = CuCIMReader(str(slide_025.path), device="cuda")
    try:
        locations = [(x, y) for y in range(0, 2048, 512) for x in range(0, 2048, 512)]
        small = list(reader.read_regions_resized(locations, 0, (512, 512), 256))
        full = list(reader.read_regions(locations, 0, (512, 512)))
    finally:
        reader.close()
    assert len(small) == len(full) == len(locations)
    for tile, region in zip(small, full, strict=True):
        assert np.array_equal(tile, cv2.resize(region, (256, 256), interpolation=cv2.INTER_AREA))
