"""Slide reading: the `SlideReader` protocol, pluggable backends and `open_slide` with an `auto` order."""

from g2l.slides.protocol import BackendUnavailableError, SlideReader, SlideReadError
from g2l.slides.registry import AUTO_ORDER, BACKENDS, open_slide

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BackendUnavailableError",
    "SlideReadError",
    "SlideReader",
    "open_slide",
]
