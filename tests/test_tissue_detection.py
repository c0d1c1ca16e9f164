"""Tissue detection on low-resolution images: blobs found, small holes filled, pen marks ignored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from g2l.tiling.tissue import detect_tissue, otsu_threshold, tile_tissue_fractions

MPP = 16.0  # a 0.25 um/px scan seen at 1/64


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, tissue truth, pen-on-glass truth) of a 400x400 H&E-like thumbnail."""
    rng = np.random.default_rng(seed)
    h = w = 400
    canvas = Image.new("RGB", (w, h), (238, 236, 240))
    truth_img = Image.new("L", (w, h), 0)
    draw, truth = ImageDraw.Draw(canvas), ImageDraw.Draw(truth_img)
    blobs = [
        ((40, 40, 190, 170), (222, 150, 190)),
        ((220, 60, 370, 230), (170, 110, 190)),
        ((60, 240, 250, 370), (205, 120, 170)),
    ]
    for box, colour in blobs:
        draw.ellipse(box, fill=colour)
        truth.ellipse(box, fill=255)
    # A large hole (real background inside tissue) stays background; a lumen of ~0.02 mm2 is filled.
    draw.ellipse((120, 270, 190, 340), fill=(238, 236, 240))
    truth.ellipse((120, 270, 190, 340), fill=0)
    draw.ellipse((100, 95, 108, 103), fill=(236, 234, 238))
    rgb = np.asarray(canvas).astype(np.int16)
    rgb = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)
    pen_img = Image.new("L", (w, h), 0)
    pen_draw = ImageDraw.Draw(pen_img)
    strokes = [
        ((10, 385, 390, 385), (20, 40, 200)),
        ((385, 10, 385, 390), (30, 160, 60)),
        ((270, 250, 390, 300), (15, 15, 20)),
    ]
    for line, colour in strokes:
        rgb_img = Image.fromarray(rgb)
        ImageDraw.Draw(rgb_img).line(line, fill=colour, width=6)
        rgb = np.asarray(rgb_img)
        pen_draw.line(line, fill=255, width=6)
    tissue = np.asarray(truth_img) > 0
    pen_on_glass = (np.asarray(pen_img) > 0) & ~tissue
    return rgb, tissue, pen_on_glass


def test_blobs_are_found_with_small_holes_filled_and_large_holes_kept() -> None:
    rgb, truth, _ = _scene()
    result = detect_tissue(rgb, mpp=MPP)
    mask = result.mask
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.93, iou
    assert mask[99, 104], "a lumen of ~0.02 mm2 inside tissue is filled"
    assert not mask[300:310, 150:160].any(), "a ~1 mm2 hole is background, not tissue"


def test_pen_marks_on_glass_are_not_tissue() -> None:
    rgb, _, pen_on_glass = _scene()
    mask = detect_tissue(rgb, mpp=MPP).mask
    assert pen_on_glass.sum() > 1000
    assert (mask & pen_on_glass).sum() / pen_on_glass.sum() < 0.02


def test_without_pen_filter_pen_strokes_become_tissue() -> None:
    """The filter is what removes the strokes (so the test above can fail)."""
    rgb, _, pen_on_glass = _scene()
    mask = detect_tissue(rgb, mpp=MPP, pen_filter=False).mask
    assert (mask & pen_on_glass).sum() / pen_on_glass.sum() > 0.5


def test_blank_glass_has_no_tissue() -> None:
    rng = np.random.default_rng(1)
    glass = np.clip(rng.normal(236, 4, (300, 300, 3)), 0, 255).astype(np.uint8)
    assert detect_tissue(glass, mpp=MPP).mask.sum() == 0


def test_explicit_threshold_overrides_otsu() -> None:
    rgb, truth, _ = _scene()
    strict = detect_tissue(rgb, mpp=MPP, threshold=250.0)
    assert strict.threshold == 250.0 and strict.mask.sum() == 0


@pytest.mark.parametrize("scale", [1.0, 4.0, 0.5])
def test_tile_fractions_follow_the_mask(scale: float) -> None:
    mask = np.zeros((100, 100), dtype=bool)
    mask[:, :50] = True  # left half tissue
    size0 = int(20 * scale)
    xs = np.array([0, int(40 * scale), int(60 * scale)])
    ys = np.zeros(3, dtype=np.int64)
    fractions = tile_tissue_fractions(mask, xs, ys, size0, scale, scale)
    np.testing.assert_allclose(fractions, [1.0, 0.5, 0.0], atol=0.06)


def test_dense_haematoxylin_is_tissue_not_pen() -> None:
    """Bluish-purple nuclei-rich tissue (hue ~247 deg) is kept while a blue marker stroke is not."""
    rng = np.random.default_rng(2)
    canvas = Image.new("RGB", (300, 300), (238, 236, 240))
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((30, 30, 170, 170), fill=(95, 85, 170))  # haematoxylin-dense section
    draw.line((200, 20, 200, 280), fill=(30, 60, 190), width=8)  # blue pen on glass
    rgb = np.clip(np.asarray(canvas).astype(np.int16) + rng.normal(0, 4, (300, 300, 3)), 0, 255).astype(
        np.uint8
    )
    mask = detect_tissue(rgb, mpp=MPP).mask
    assert mask[60:140, 60:140].mean() > 0.99
    assert not mask[:, 190:211].any()


def _otsu_by_numpy_histogram(values: np.ndarray) -> float:
    """Otsu's threshold as the textbook computes it from np.histogram (the definition we keep)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 256.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = hist.sum() - w0
    m0 = np.cumsum(hist * centers)
    between = w0 * w1 * (m0 / np.maximum(w0, 1e-12) - (m0[-1] - m0) / np.maximum(w1, 1e-12)) ** 2
    return float(edges[int(np.argmax(between)) + 1])


@pytest.mark.parametrize("seed", range(6))
def test_otsu_threshold_equals_the_histogram_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    background = rng.normal(225, 8, 4000)
    tissue = rng.normal(140 + 10 * seed, 25, 2500)
    values = np.concatenate([background, tissue, [-3.0, 256.0, 300.0, 255.999]])  # a few out of range
    for v in (values, np.clip(np.round(values), 0, 255).astype(np.uint8)):
        assert otsu_threshold(v) == _otsu_by_numpy_histogram(v)


@pytest.mark.parametrize("scale", [1.0, 3.7, 0.5])
def test_tile_fractions_equal_the_mean_of_the_mask_under_each_tile(scale: float) -> None:
    rng = np.random.default_rng(7)
    mask = rng.random((173, 251)) > 0.45
    size0 = 48
    xs, ys = (g.ravel() for g in np.meshgrid(np.arange(0, 240 * scale, 17), np.arange(0, 160 * scale, 23)))
    fractions = tile_tissue_fractions(mask, xs, ys, size0, scale, scale)
    for x, y, got in zip(xs, ys, fractions, strict=True):
        x0, x1 = int(np.floor(x / scale + 0.5)), int(np.floor((x + size0) / scale + 0.5))
        y0, y1 = int(np.floor(y / scale + 0.5)), int(np.floor((y + size0) / scale + 0.5))
        x0, x1, y0, y1 = min(x0, 251), min(max(x1, x0 + 1), 251), min(y0, 173), min(max(y1, y0 + 1), 173)
        x0, y0 = min(x0, x1 - 1), min(y0, y1 - 1)
        assert got == pytest.approx(mask[y0:y1, x0:x1].mean(), abs=1e-6)
