"""One pyramid geometry in every backend: on levels whose size is not level 0's over a power of two, a
level-0 location maps to the same level pixel whichever library reads it (issue 14, item 6)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from g2l.slides import SlideReadError, open_slide
from g2l.slides.geometry import axis_downsample, bilinear_offset, to_level
from g2l.slides.protocol import BackendUnavailableError
from g2l.synth.slides import write_synthetic_slide

BACKENDS = ["cucim", "openslide", "tiffslide", "tifffile-jpeg"]


@pytest.mark.parametrize(
    ("full", "level", "want"),
    [
        (46000, 11500, 4.0),  # an exact Aperio level
        (32914, 8228, 4.0),  # 32914 / 4 = 8228.5, rounded down (the same Aperio slide's height)
        (2967, 1484, 2.0),  # rounded up
        (4099, 256, 16.0),
        (2967, 1480, 2967 / 1480),  # no integer factor gives this size: the plain ratio
        (2220, 2220, 1.0),
    ],
)
def test_true_downsample_of_an_axis(full: int, level: int, want: float) -> None:
    assert axis_downsample(full, level) == want


def test_level_pixel_is_the_nearest_one() -> None:
    assert [to_level(x, 4.0) for x in (0, 4, 5, 6, 7, -4)] == [0, 1, 1, 2, 2, -1]
    assert to_level(3000, 2967 / 1480) == round(3000 / (2967 / 1480))


def test_openslide_offset_matches_its_division() -> None:
    ds = (4099 / 1024 + 3077 / 769) / 2  # openslide's mean-of-axes downsample for that level
    for level_px in (0, 1, 250, 749, 1023):
        x, a = bilinear_offset(level_px, ds)
        fraction = x / ds - level_px
        assert 0 <= fraction < 1 / ds and a == pytest.approx(fraction * ds, abs=1e-6)


@pytest.fixture(scope="module")
def non_exact(tmp_path_factory):
    """Aperio-like 4099x3077 slide: levels 1024x769 and 256x192 (4x and 16x, rounded down)."""
    return write_synthetic_slide(
        tmp_path_factory.mktemp("nonexact") / "nonexact.svs", width=4099, height=3077, mpp=0.25, seed=4
    )


def _open(path, backend):
    try:
        return open_slide(path, backend=backend)
    except SlideReadError as e:
        if isinstance(e.__cause__, BackendUnavailableError):
            pytest.skip(f"{backend} not installed here")
        raise


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_reads_the_same_level_pixels(backend, non_exact) -> None:
    with tifffile.TiffFile(non_exact.path) as tif:
        stored = [lvl.asarray() for lvl in tif.series[0].levels]
    rng = np.random.default_rng(0)
    with _open(non_exact.path, backend) as reader:
        assert reader.level_downsamples == (1.0, 4.0, 16.0)  # not openslide's 4.0021 / 16.0189
        for level in (1, 2):
            k = 4**level
            lh, lw = stored[level].shape[:2]
            checked = 0
            while checked < 8:  # regions on tissue, where a misplaced read shows
                lx, ly = int(rng.integers(1, lw - 64)), int(rng.integers(0, lh - 48))
                if stored[level][ly : ly + 48, lx : lx + 64].std() < 20:
                    continue
                checked += 1
                got = reader.read_region((lx * k, ly * k), level, (64, 48)).astype(np.int16)
                want = stored[level][ly : ly + 48, lx : lx + 64]
                error = np.abs(got - want).mean()
                assert error < 2.0, (backend, level, lx, ly)
                if backend != "openslide":  # the others decode exactly the stored pixels
                    assert error == 0.0, (backend, level, lx, ly)
                # The old floor(x / 4.0021) read one level pixel to the left far from the origin.
                assert np.abs(got - stored[level][ly : ly + 48, lx - 1 : lx + 63]).mean() > error + 0.5
