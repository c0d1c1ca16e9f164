"""The slide pipeline: neighbouring slides overlap, a suspect slide runs alone, memory stays bounded."""

from __future__ import annotations

import io
import json
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from g2l.slides import open_slide
from g2l.synth.slides import Blob, write_synthetic_slide
from g2l.tiling import TilingConfig, tile_slides
from g2l.tiling.manifest_io import resolve_manifest, slide_rows
from g2l.tiling.outputs import OutputRoot
from g2l.tiling.pipeline import LOOKAHEAD, MAX_FINISHING, SlidePipeline
from g2l.tiling.reader import bounded_thumbnail
from g2l.tiling.slide import output_config_hash, prepare_slide, slide_identity
from g2l.tiling.thumbnail import CONTOUR_RGB, TILE_RGB, qc_image, render_thumbnail, tissue_and_qc_images
from g2l.tiling.tissue import binary_morph
from tests.fixtures.tiling import write_manifest


class Steps:
    """Records (step, slide_id) events from every thread, in the order they happen."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, step: str, slide_id: str) -> None:
        with self._lock:
            self.events.append((step, slide_id))

    def index(self, step: str, slide_id: str) -> int:
        return self.events.index((step, slide_id))


@pytest.fixture(scope="module")
def two_slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small 40x slides; manifests below list them many times under different slide ids."""
    folder = tmp_path_factory.mktemp("pipeline-slides")
    return [
        write_synthetic_slide(folder / f"p{i}.svs", width=2048, height=1536, mpp=0.25, seed=40 + i).path
        for i in range(2)
    ]


def _rows(slides: list[Path], n: int) -> list[dict[str, str]]:
    return [{"slide_id": f"s{i}", "uri": str(slides[i % len(slides)])} for i in range(n)]


def test_next_slide_is_set_up_while_the_current_one_is_tiled(tmp_path: Path, two_slides) -> None:
    rows = _rows(two_slides, 4)
    steps = Steps()
    outcomes = tile_slides(
        write_manifest(tmp_path / "m.csv", rows), tmp_path / "out", TilingConfig(workers=2), quiet=True,
        observer=steps,
    )  # fmt: skip
    assert [o.slide_id for o in outcomes] == ["s0", "s1", "s2", "s3"] and all(o.n_tiles for o in outcomes)
    for i in range(3):
        # Slide i+1 was prepared before slide i was finished: set-up overlapped with tiles.
        assert steps.index("prepared", f"s{i + 1}") < steps.index("done", f"s{i}"), steps.events


def test_a_slide_an_earlier_run_died_on_is_tiled_alone(tmp_path: Path, two_slides) -> None:
    """A crash while it is in flight must count against that slide only, so nothing else is in flight."""
    rows = _rows(two_slides, 5)
    manifest = write_manifest(tmp_path / "m.csv", rows)
    config = TilingConfig(workers=2)
    [suspect] = [r for r in slide_rows(resolve_manifest(manifest)[0]) if r.slide_id == "s2"]
    meta = tmp_path / "out/tiles/s2/meta.json"
    meta.parent.mkdir(parents=True)
    record = {
        "slide_id": "s2",
        "source": slide_identity(suspect),
        "config_sha256": output_config_hash(config),
        "status": "running",
        "attempts": 1,
    }
    meta.write_text(json.dumps(record))
    steps = Steps()
    outcomes = tile_slides(manifest, tmp_path / "out", config, quiet=True, observer=steps)
    assert [o.status for o in outcomes] == ["ok"] * 5
    # Its set-up is first asked for beside the others and declines (touching nothing); the real one is last.
    begin = max(i for i, e in enumerate(steps.events) if e == ("prepare", "s2"))
    end = steps.index("done", "s2")
    alone = [e for e in steps.events[begin : end + 1] if e[1] != "s2"]
    assert not alone, f"steps of other slides while s2 was in flight: {alone}"
    # Everything before it was done when it started; nothing after it started before it was done.
    assert steps.index("done", "s1") < begin < end < steps.index("prepare", "s3")
    assert json.loads(meta.read_text())["status"] == "ok"


def test_slides_held_open_at_once_are_bounded(tmp_path: Path, two_slides) -> None:
    """Set-up runs ahead and finishing lags behind, but only a few slides (readers, masks) are open."""
    steps = Steps()
    manifest = write_manifest(tmp_path / "m.csv", _rows(two_slides, 12))
    outcomes = tile_slides(manifest, tmp_path / "out", TilingConfig(workers=2), quiet=True, observer=steps)
    assert len(outcomes) == 12 and all(o.n_tiles for o in outcomes)
    open_now, most = set(), 0
    for step, slide_id in steps.events:
        if step == "prepared":
            open_now.add(slide_id)
        elif step == "done":
            open_now.discard(slide_id)
        most = max(most, len(open_now))
    # Set up ahead (LOOKAHEAD 2), the one being tiled, those being finished (MAX_FINISHING 2).
    assert (LOOKAHEAD, MAX_FINISHING) == (2, 2)
    assert 2 <= most <= 5, most


def test_qc_picture_from_stored_tiles_matches_the_readers(slide_025) -> None:
    with open_slide(slide_025.path) as reader:
        fast = qc_image(reader, slide_025.path, 1024)
        slow = bounded_thumbnail(reader, 1024)
    assert fast.shape == slow.shape == (768, 1024, 3)
    assert np.abs(fast.astype(np.int16) - slow).mean() < 3.0


def test_qc_picture_of_a_slide_without_jpeg_tiles_comes_from_the_reader(make_slide) -> None:
    slide = make_slide(width=2048, height=1536, mpp=0.5, compression="zstd", seed=9)
    with open_slide(slide.path, backend="tiffslide") as reader:
        assert np.array_equal(qc_image(reader, slide.path, 512), bounded_thumbnail(reader, 512))


def test_thumbnail_png_shows_slide_contour_and_tiles(tmp_path: Path, slide_025) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "s", "uri": str(slide_025.path)}])
    tile_slides(manifest, tmp_path / "out", TilingConfig(), quiet=True)
    png = np.asarray(Image.open(tmp_path / "out/tiles/s/thumbnail.png").convert("RGB"))
    assert png.shape == (768, 1024, 3)
    colours = {tuple(c) for c in png.reshape(-1, 3)[::7]}
    assert tuple(CONTOUR_RGB) in colours and tuple(TILE_RGB) in colours
    with open_slide(slide_025.path) as reader:
        slide = bounded_thumbnail(reader, 1024).astype(np.int16)
    plain = np.all(png == png, axis=-1)
    for colour in (CONTOUR_RGB, TILE_RGB):
        plain &= ~np.all(png == colour, axis=-1)
    assert np.abs(png.astype(np.int16) - slide)[plain].mean() < 3.0  # the picture is the slide itself


class BulkyTiles:
    """A slide's real tile maker whose every tile comes out 2 MiB larger (a stand-in for big tiles)."""

    def __init__(self, maker) -> None:
        self._maker = maker
        self.read_path, self.method, self.stored_path = maker.read_path, maker.method, True
        self.decoder = maker.decoder

    def __len__(self) -> int:
        return len(self._maker)

    def tile(self, i: int) -> bytes:
        return self._maker.tile(i) + bytes(2 * 2**20)

    def close(self) -> None:
        self._maker.close()


def test_written_tiles_are_let_go(tmp_path: Path, make_slide) -> None:
    """Memory is bounded by the tiles in flight (the window), not by the number of tiles in a slide."""
    section = Blob(cx=1024.0, cy=1024.0, rx=960.0, ry=960.0, angle=0.0)  # ~45 tiles of tissue
    slide = make_slide(width=2048, height=2048, mpp=0.5, blobs=[section], seed=21)
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "big", "uri": str(slide.path)}])
    rows = slide_rows(resolve_manifest(manifest)[0])
    config = TilingConfig(workers=2, batch_tiles=8)

    def bulky(*args, **kwargs):
        prepared = prepare_slide(*args, **kwargs)
        prepared.maker = BulkyTiles(prepared.maker)
        return prepared

    pipeline = SlidePipeline(OutputRoot(tmp_path / "out"), config, threads=2, prepare=bulky)
    tracemalloc.start()
    try:
        [outcome] = list(pipeline.run(rows))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.status == "ok" and outcome.n_tiles >= 40, outcome
    # Holding every written tile would take 2 x n_tiles MiB; the window is max(4 x 2 workers, 8) tiles.
    assert peak < 40 * 2**20 < outcome.n_tiles * 2**20, peak


def test_one_read_gives_the_tissue_image_and_the_qc_picture(slide_025) -> None:
    # slide_025's 1024 x 768 level is both what a 512 px tissue image is shrunk from and what a 1024 px QC
    # picture shows as it is: it is read once, and the picture is that level's pixels.
    with open_slide(slide_025.path) as reader:
        reads: list[tuple[int, tuple[int, int]]] = []
        real = reader.read_region

        def counting(location, level, size):
            reads.append((level, tuple(size)))
            return real(location, level, size)

        reader.read_region = counting  # on the instance: the class's own thumbnail still applies
        thumb, qc = tissue_and_qc_images(reader, 512, 1024)
        assert reads == [(1, (1024, 768))]
        reader.read_region = real
        assert qc is not None and np.array_equal(qc, np.asarray(real((0, 0), 1, (1024, 768)))[..., :3])
        assert np.array_equal(thumb, bounded_thumbnail(reader, 512))
        made_later = qc_image(reader, slide_025.path, 1024)  # what finishing the slide made before
        assert made_later.shape == qc.shape
        assert np.abs(made_later.astype(np.int16) - qc).mean() < 3.0
        _, no_shared_level = tissue_and_qc_images(reader, 128, 1024)  # shrunk from the 256 px level
        assert no_shared_level is None


def test_qc_picture_is_drawn_where_pil_draws_it(slide_025) -> None:
    # The QC picture is drawn with OpenCV (it releases the GIL; tiles decode meanwhile). PIL drew it before:
    # its NEAREST mask resize and ImageDraw's 1 px rectangles (float corners) are the reference here.
    from PIL import ImageDraw

    rng = np.random.default_rng(5)
    with open_slide(slide_025.path) as reader:
        image = bounded_thumbnail(reader, 1024)
        mask = bounded_thumbnail(reader, 300).mean(axis=-1) < 215
    width0, height0 = 4096, 3072
    for max_px, size0 in ((1024, 512), (700, 333), (1024, 97)):
        xs, ys = rng.integers(0, width0 - size0, 60), rng.integers(0, height0 - size0, 60)
        png = render_thumbnail(image, mask, xs, ys, size0, width0, height0, max_px)
        drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        out_h, out_w = drawn.shape[:2]
        canvas = Image.fromarray(image)
        if canvas.size != (out_w, out_h):
            canvas = canvas.resize((out_w, out_h), Image.Resampling.BOX)
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize((out_w, out_h), Image.Resampling.NEAREST)
        small = np.asarray(small) > 127
        edge = small & ~binary_morph(small, "erode", 1)
        edge = binary_morph(edge, "dilate", 1) if max(out_w, out_h) >= 512 else edge
        expected = np.array(canvas)
        expected[edge] = CONTOUR_RGB
        reference = Image.fromarray(expected)
        pen = ImageDraw.Draw(reference)
        fx, fy = out_w / width0, out_h / height0
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            box = [x * fx, y * fy, (x + size0) * fx - 1, (y + size0) * fy - 1]
            pen.rectangle(box, outline=TILE_RGB, width=1)
        assert np.array_equal(drawn, np.asarray(reference)), (max_px, size0)
