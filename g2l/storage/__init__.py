"""Local paths and gs:// URIs behind one small interface: list, stat, verified staging cache, atomic put."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from g2l.storage.backends import BACKENDS, backend_for
from g2l.storage.base import (
    ChecksumMismatchError,
    FileInfo,
    StageResult,
    Storage,
    StorageAccessError,
    StorageError,
    StorageUnreachableError,
)
from g2l.storage.checksums import crc32c_of_bytes, crc32c_of_file, md5_of_file, parse_checksum
from g2l.storage.gcs import GCSStorage
from g2l.storage.local import LocalStorage
from g2l.storage.staging import default_cache_dir, stage, stage_file
from g2l.storage.uris import is_remote, join, normalise_suffixes, split_gs

# --------------------------------------------------------------------------------------------- public API


def stat(uri: str | os.PathLike[str], *, checksum: bool = True) -> FileInfo:
    """FileInfo of one file; local crc32c is computed unless `checksum=False`."""
    return backend_for(uri).stat(str(uri), checksum=checksum)


def exists(uri: str | os.PathLike[str]) -> bool:
    """Whether a file or directory (a prefix with objects under it, for gs://) exists."""
    return backend_for(uri).exists(str(uri))


def list_files(
    prefix: str | os.PathLike[str], suffixes: Iterable[str] | None = None, *, checksum: bool = True
) -> list[FileInfo]:
    """Every file under a directory or gs:// prefix, recursively, filtered by (case-insensitive) suffixes."""
    return backend_for(prefix).list_files(str(prefix), normalise_suffixes(suffixes), checksum=checksum)


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    """The whole content of a (small) file."""
    return backend_for(uri).read_bytes(str(uri))


def read_text(uri: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """The whole content of a (small) text file."""
    return read_bytes(uri).decode(encoding)


def put_bytes(uri: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes atomically (temp + os.replace locally, one upload on GCS)."""
    backend_for(uri).put_bytes(str(uri), bytes(data))


def put_text(uri: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write text atomically."""
    put_bytes(uri, text.encode(encoding))


def put_file(local_path: str | os.PathLike[str], uri: str | os.PathLike[str]) -> None:
    """Copy a local file to a path or gs:// URI atomically."""
    backend_for(uri).put_file(Path(local_path), str(uri))


def sync_dir(local_dir: str | os.PathLike[str], uri: str | os.PathLike[str]) -> int:
    """Upload a finished local directory; files already there with the same crc32c are skipped (resumable).

    Returns the number of files written.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{local_dir}: not a directory")
    backend = backend_for(uri)
    present: dict[str, FileInfo] = {}
    if backend.exists(str(uri)):
        with contextlib.suppress(FileNotFoundError):
            present = {f.uri: f for f in backend.list_files(str(uri), None, checksum=False)}
    written = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        dest = join(uri, *path.relative_to(root).parts)
        have = present.get(dest)
        if have is not None and have.size == path.stat().st_size:
            remote_crc = have.crc32c or backend.stat(dest).crc32c
            if remote_crc == crc32c_of_file(path):
                continue
        backend.put_file(path, dest)
        written += 1
    return written


__all__ = [
    "BACKENDS",
    "ChecksumMismatchError",
    "FileInfo",
    "GCSStorage",
    "LocalStorage",
    "StageResult",
    "Storage",
    "StorageAccessError",
    "StorageError",
    "StorageUnreachableError",
    "backend_for",
    "crc32c_of_bytes",
    "crc32c_of_file",
    "default_cache_dir",
    "exists",
    "is_remote",
    "join",
    "list_files",
    "md5_of_file",
    "parse_checksum",
    "put_bytes",
    "put_file",
    "put_text",
    "read_bytes",
    "read_text",
    "split_gs",
    "stage",
    "stage_file",
    "stat",
    "sync_dir",
]
