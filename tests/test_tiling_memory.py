"""Bounded memory: whole-slide images of slides without a pyramid are read in bands, never whole."""

from __future__ import annotations

import numpy as np

from g2l.slides import open_slide
from g2l.tiling.reader import bounded_thumbnail


class RecordingReader:
    """Forwards to a real reader and records the pixel count of every region read."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.reads: list[int] = []

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def read_region(self, location, level, size):
        self.reads.append(int(size[0]) * int(size[1]))
        return self._reader.read_region(location, level, size)

    def thumbnail(self, max_px):
        w, h = self._reader.level_dimensions[-1]
        self.reads.append(int(w) * int(h))  # worst case: the reader reads a whole level
        return self._reader.thumbnail(max_px)


def test_single_level_slide_thumbnail_is_read_in_bands(make_slide) -> None:
    slide = make_slide(width=2048, height=1536, mpp=0.5, levels=1, seed=7)
    budget = 2048 * 100
    with open_slide(slide.path, backend="openslide") as reader:
        recording = RecordingReader(reader)
        banded = bounded_thumbnail(recording, 256, max_read_pixels=budget)
        whole = reader.thumbnail(256)
    assert recording.reads and max(recording.reads) <= budget and len(recording.reads) >= 15
    assert banded.shape == whole.shape == (192, 256, 3)
    assert np.abs(banded.astype(np.int16) - whole).mean() < 2.0


def test_pyramidal_slide_uses_the_readers_own_thumbnail(make_slide) -> None:
    slide = make_slide(width=2048, height=1536, mpp=0.5, seed=8)
    with open_slide(slide.path, backend="openslide") as reader:
        recording = RecordingReader(reader)
        image = bounded_thumbnail(recording, 128, max_read_pixels=512 * 512)
    assert image.shape == (96, 128, 3) and max(recording.reads) <= 512 * 512
