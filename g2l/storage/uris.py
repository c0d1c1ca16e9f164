"""URI helpers: gs:// versus local paths, bucket/object splitting, joining, suffix filters."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for a gs:// URI, False for a local path (or file:// URI)."""
    return str(uri).startswith("gs://")


def local_path(uri: str | os.PathLike[str]) -> Path:
    """The Path of a local path or file:// URI."""
    text = str(uri)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def split_gs(uri: str) -> tuple[str, str]:
    """Split `gs://bucket/object/name` into ('bucket', 'object/name')."""
    if not is_remote(uri):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket; write gs://<bucket>/<object>")
    return bucket, name


def join(uri: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or gs:// URI (always '/' inside buckets)."""
    if not is_remote(uri):
        return str(local_path(uri).joinpath(*parts))
    out = str(uri).rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def normalise_suffixes(suffixes: Iterable[str] | None) -> tuple[str, ...] | None:
    """('svs', '.TIF') -> ('.svs', '.tif'); None means every file."""
    if suffixes is None:
        return None
    return tuple("." + s.lower().lstrip(".") for s in suffixes)


def matches(name: str, suffixes: tuple[str, ...] | None) -> bool:
    """Whether a file name ends with one of the (normalised) suffixes."""
    return suffixes is None or name.lower().endswith(suffixes)
