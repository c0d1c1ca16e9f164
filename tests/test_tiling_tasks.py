"""Tile tasks of several tiles, framed tar members, the RGB decode and the garbage collector of a run."""

from __future__ import annotations

import gc
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

import g2l.tiling.pipeline as pipeline_mod
from g2l.synth.slides import Blob, write_synthetic_slide
from g2l.tiling import TilingConfig
from g2l.tiling.manifest_io import resolve_manifest, slide_rows
from g2l.tiling.outputs import OutputRoot
from g2l.tiling.pipeline import SlidePipeline
from g2l.tiling.shards import DeterministicTar, HashingWriter, iter_tar, iter_tar_members, tar_member
from g2l.tiling.slide import prepare_slide
from g2l.tiling.stored_tiles import StoredTiles
from g2l.tiling.tissue import opencv
from tests.fixtures.tiling import write_manifest


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 40x slides of ~25 tissue tiles (made by DCT-scaled decoding of their stored JPEG tiles)."""
    folder = tmp_path_factory.mktemp("task-slides")
    section = Blob(cx=2048.0, cy=1536.0, rx=1700.0, ry=1300.0, angle=0.3)
    return [
        write_synthetic_slide(
            folder / f"t{i}.svs", width=4096, height=3072, mpp=0.25, blobs=[section], seed=60 + i
        ).path
        for i in range(2)
    ]


def _run(tmp: Path, slides: list[Path], *, threads: int, batch_tiles: int = 64, prepare=prepare_slide):
    tmp.mkdir(parents=True, exist_ok=True)
    rows = [{"slide_id": f"s{i}", "uri": str(p)} for i, p in enumerate(slides)]
    manifest = write_manifest(tmp / "m.csv", rows)
    pipeline = SlidePipeline(
        OutputRoot(tmp / "out"),
        TilingConfig(workers=threads, batch_tiles=batch_tiles),
        threads=threads,
        prepare=prepare,
    )
    outcomes = list(pipeline.run(slide_rows(resolve_manifest(manifest)[0])))
    return pipeline, outcomes


def _tar_digests(out: Path) -> dict[str, str]:
    return {
        p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.glob("tiles/*/tiles.tar"))
    }


def test_tiles_tar_bytes_do_not_depend_on_the_task_size(tmp_path: Path, slides, monkeypatch) -> None:
    """One tile per task (the old way) and eight per task write byte-identical tiles.tar files."""
    monkeypatch.setattr(pipeline_mod, "TILES_PER_TASK", 1)
    one, outcomes_one = _run(tmp_path / "one", slides, threads=1)
    monkeypatch.setattr(pipeline_mod, "TILES_PER_TASK", 8)
    many, outcomes_many = _run(tmp_path / "many", slides, threads=2)
    assert (one.chunk, many.chunk) == (1, 8)
    assert [o.n_tiles for o in outcomes_one] == [o.n_tiles for o in outcomes_many]
    assert all(o.status == "ok" and o.n_tiles > 8 for o in outcomes_many), outcomes_many
    assert _tar_digests(tmp_path / "one/out") == _tar_digests(tmp_path / "many/out")
    names = [name for name, _ in iter_tar(tmp_path / "many/out/tiles/s0/tiles.tar")]
    assert len(names) == outcomes_many[0].n_tiles == len(set(names))


def test_the_window_bounds_the_task_size(tmp_path: Path, slides) -> None:
    """Small windows (batch_tiles) get small tasks: two tasks per worker always fit in flight."""
    pipeline, outcomes = _run(tmp_path, slides[:1], threads=2, batch_tiles=8)
    assert pipeline.window == 8 and pipeline.chunk == 2
    assert outcomes[0].status == "ok"


class FailingTile:
    """A slide's real tile maker whose tile `bad` raises (in the middle of a task)."""

    def __init__(self, maker, bad: int) -> None:
        self._maker, self._bad = maker, bad
        self.read_path, self.method, self.stored_path = maker.read_path, maker.method, True

    def __len__(self) -> int:
        return len(self._maker)

    def tile(self, i: int) -> bytes:
        if i == self._bad:
            raise ValueError(f"tile {i} is unreadable")
        return self._maker.tile(i)

    def close(self) -> None:
        self._maker.close()


def test_a_tile_that_fails_inside_a_task_fails_its_slide_only(tmp_path: Path, slides) -> None:
    def prepare(row, *args, **kwargs):
        prepared = prepare_slide(row, *args, **kwargs)
        if row.slide_id == "s0":
            prepared.maker = FailingTile(prepared.maker, bad=11)  # task 2 of 8-tile tasks, not its first
        return prepared

    _, outcomes = _run(tmp_path, slides, threads=2, prepare=prepare)
    assert [o.status for o in outcomes] == ["failed", "ok"], outcomes
    assert "tile 11 is unreadable" in str(outcomes[0].error)
    assert not (tmp_path / "out/tiles/s0/tiles.tar").exists()
    assert (tmp_path / "out/tiles/s1/tiles.tar").exists()


def test_the_collector_is_unfrozen_after_a_run_even_a_failed_one(tmp_path: Path, slides) -> None:
    """The run sets the libraries aside from the cyclic GC (gc.freeze) and gives them back at the end."""
    frozen_during: list[int] = []

    def prepare(row, *args, **kwargs):
        frozen_during.append(gc.get_freeze_count())
        if row.slide_id == "s1":
            raise KeyboardInterrupt  # the run stops with an exception
        return prepare_slide(row, *args, **kwargs)

    before = gc.get_freeze_count()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, slides, threads=2, prepare=prepare)
    assert frozen_during and min(frozen_during) > 0
    assert gc.get_freeze_count() == before == 0


@pytest.mark.parametrize("name", ["s0_1024_2048.jpg", "a-very-long-slide-id-" * 6 + "_1024_2048.jpg"])
def test_framed_members_are_the_members_as_written(tmp_path: Path, name: str) -> None:
    """Shards copy tiles.tar members as framed; that equals framing the tile anew, long (PAX) names too."""
    data = [bytes(range(256)) * 7, b"x" * 512, b""]
    with open(tmp_path / "t.tar", "wb") as handle:
        tar = DeterministicTar(handle)
        for k, blob in enumerate(data):
            tar.add(f"{k}{name}", blob)
        tar.close()
    framed = list(iter_tar_members(tmp_path / "t.tar"))
    assert [n for n, _, _ in framed] == [f"{k}{name}" for k in range(3)]
    for (member_name, member, offset), blob in zip(framed, data, strict=True):
        assert member == tar_member(member_name, blob)
        assert member[offset : offset + len(blob)] == blob
    assert [blob for _, blob in iter_tar(tmp_path / "t.tar")] == data
    assert [n for n, _, _ in iter_tar_members(tmp_path / "t.tar", start=2)] == [f"2{name}"]


def test_rgb_decode_equals_bgr_decode_and_swap(slides, monkeypatch) -> None:
    """libjpeg-turbo's RGB output (cv2.IMREAD_COLOR_RGB) gives the pixels of BGR output swapped to RGB.

    The real OpenCV decodes both ways here; the flag is opencv/opencv imgcodecs.hpp's ImreadModes (4.11+).
    """
    cv2 = opencv()
    if not hasattr(cv2, "IMREAD_COLOR_RGB"):
        pytest.skip("OpenCV < 4.11 has no IMREAD_COLOR_RGB; the BGR path is the one in use")
    stored = StoredTiles(slides[0], width=4096, height=3072)
    stored.scaled = True
    try:
        corners = [(1024, 1024), (2048, 1536), (3072, 2048)]
        rgb = [stored.read_resized(x, y, 512, 256) for x, y in corners]
        monkeypatch.delattr(cv2, "IMREAD_COLOR_RGB")
        swapped = [stored.read_resized(x, y, 512, 256) for x, y in corners]
    finally:
        stored.close()
    for a, b in zip(rgb, swapped, strict=True):
        assert a.shape == (256, 256, 3) and np.array_equal(a, b)
    assert len({a.tobytes() for a in rgb}) == 3  # three different places, three different tiles


class Trickle(io.RawIOBase):
    """An unbuffered file that takes at most 1000 bytes a call, as a raw write may (io.RawIOBase.write)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # noqa: ANN001 - any buffer
        chunk = bytes(b[:1000])
        self.data += chunk
        return len(chunk)


def test_tar_writes_survive_partial_raw_writes() -> None:
    # Tars are written unbuffered; a raw write may take only part of what it is given.
    trickle = Trickle()
    hashing = HashingWriter(trickle)  # type: ignore[arg-type]
    payload = bytes(range(256)) * 50
    assert hashing.write(payload) == len(payload)
    assert bytes(trickle.data) == payload
    assert hashing.sha256.hexdigest() == hashlib.sha256(payload).hexdigest()
