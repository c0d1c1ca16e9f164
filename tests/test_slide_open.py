"""`open_slide`: auto order and its reason, explicit backends without fallback, mpp precedence, errors."""

from __future__ import annotations

import math

import pytest

from g2l.slides import AUTO_ORDER, SlideReadError, open_slide
from g2l.synth.slides import write_corrupt_slide

pytest.importorskip("cucim")  # the auto-order tests below assume the full backend set is installed


@pytest.fixture(scope="module")
def zstd_slide(tmp_path_factory):
    """Tiles only openslide and tiffslide decode (cuCIM's libtiff has no zstd)."""
    from g2l.synth.slides import write_synthetic_slide

    path = tmp_path_factory.mktemp("zstd") / "zstd.tiff"
    return write_synthetic_slide(path, width=512, height=512, mpp=0.5, flavor="generic", compression="zstd")


@pytest.fixture(scope="module")
def jpegxl_slide(tmp_path_factory):
    """Tiles only tiffslide (imagecodecs) decodes."""
    from g2l.synth.slides import write_synthetic_slide

    path = tmp_path_factory.mktemp("jxl") / "jxl.tiff"
    return write_synthetic_slide(path, width=512, height=512, mpp=0.5, flavor="generic", compression="jpegxl")


def test_auto_order_is_cucim_openslide_tiffslide():
    assert AUTO_ORDER == ("cucim", "openslide", "tiffslide")


def test_auto_takes_cucim_first_and_says_so(slide_025):
    with open_slide(slide_025.path) as r:
        assert r.backend == "cucim"
        assert r.backend_reason == "auto: cucim read it"


def test_auto_falls_through_to_openslide_and_records_why(zstd_slide):
    with open_slide(zstd_slide.path, backend="auto") as r:
        assert r.backend == "openslide"
        assert r.backend_reason.startswith("auto: cucim failed (")
        assert r.backend_reason.endswith("; openslide read it")
        assert r.mpp == pytest.approx(0.5)


def test_auto_falls_through_to_tiffslide_and_records_both_failures(jpegxl_slide):
    with open_slide(jpegxl_slide.path) as r:
        assert r.backend == "tiffslide"
        reason = r.backend_reason
        order = [reason.index(s) for s in ("cucim failed", "openslide failed", "tiffslide read it")]
        assert order == sorted(order)
        assert r.read_region((0, 0), 0, (16, 16)).shape == (16, 16, 3)


@pytest.mark.parametrize(("fixture", "backend"), [("zstd_slide", "cucim"), ("jpegxl_slide", "openslide")])
def test_explicit_backend_failure_is_an_error_not_a_fallback(fixture, backend, request):
    slide = request.getfixturevalue(fixture)
    with pytest.raises(SlideReadError) as info:
        open_slide(slide.path, backend=backend)
    err = info.value
    assert [name for name, _ in err.attempts] == [backend]  # nothing else was tried
    assert str(slide.path) in str(err) and "no other was tried" in str(err)


def test_explicit_backend_is_used_and_recorded(slide_025):
    with open_slide(slide_025.path, backend="tiffslide") as r:
        assert r.backend == "tiffslide"
        assert r.backend_reason == "explicit: backend='tiffslide'"


def test_unknown_backend_names_the_choices(slide_025):
    with pytest.raises(ValueError, match="unknown slide backend 'pillow'.*openslide"):
        open_slide(slide_025.path, backend="pillow")


@pytest.mark.parametrize("backend", ["auto", "cucim", "openslide", "tiffslide", "tifffile-jpeg"])
def test_manifest_mpp_overrides_metadata(backend, slide_025):
    with open_slide(slide_025.path, backend=backend, mpp_override=0.3) as r:
        assert (r.mpp, r.mpp_source) == (0.3, "manifest")
    with open_slide(slide_025.path, backend=backend, mpp_override=math.nan) as r:  # an empty manifest cell
        assert (r.mpp, r.mpp_source) == (pytest.approx(0.25), "metadata")


@pytest.mark.parametrize("backend", ["auto", "cucim", "openslide", "tiffslide", "tifffile-jpeg"])
def test_slide_without_mpp_reports_none_until_the_manifest_gives_one(backend, slide_nompp):
    with open_slide(slide_nompp.path, backend=backend) as r:
        assert r.mpp is None and r.mpp_source is None
    with open_slide(slide_nompp.path, backend=backend, mpp_override=0.5) as r:
        assert (r.mpp, r.mpp_source) == (0.5, "manifest")


@pytest.mark.parametrize("bad", [0, -0.25, math.inf])
def test_bad_mpp_override_names_the_slide_and_the_fix(bad, slide_025):
    with pytest.raises(ValueError, match=rf"{slide_025.path.name}.*manifest row"):
        open_slide(slide_025.path, mpp_override=bad)


def test_corrupt_slide_error_names_file_and_every_backend_tried(corrupt_slide):
    with pytest.raises(SlideReadError) as info:
        open_slide(corrupt_slide)
    assert str(corrupt_slide) in str(info.value)
    assert [name for name, _ in info.value.attempts] == list(AUTO_ORDER)


def test_truncated_slide_fails_at_open_not_mid_run(tmp_path):
    path = write_corrupt_slide(tmp_path / "cut.svs", kind="truncated")
    with pytest.raises(SlideReadError, match="cut.svs"):
        open_slide(path)
    with pytest.raises(SlideReadError, match="cut.svs"):
        open_slide(path, backend="tifffile-jpeg")


def test_missing_file_is_a_slide_read_error(tmp_path):
    with pytest.raises(SlideReadError, match="does not exist"):
        open_slide(tmp_path / "nope.svs")
