"""Storage types: errors, FileInfo, StageResult and the Storage protocol every backend implements."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

# Files are hashed and copied in 8 MiB chunks so memory stays bounded whatever the slide size.
CHUNK = 8 << 20
INSTALL_HINT = "install it with `pip install google-cloud-storage google-crc32c` (g2l dependencies)"


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI and the fix."""


class ChecksumMismatchError(StorageError):
    """Downloaded or cached bytes do not match the checksum the bucket or the manifest records."""


class StorageUnreachableError(StorageError):
    """The storage endpoint cannot be reached (refused, unresolvable, timed out) after a short retry budget.

    Not a problem of one file: a stage that meets it stops instead of failing every item in turn.
    """


class StorageAccessError(StorageError):
    """No usable credentials for the storage endpoint (none found, expired, rejected with 401)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileInfo:
    """One stored file: `crc32c` is base64 (as GCS reports it), `md5` is hex; either may be None."""

    uri: str
    size: int
    crc32c: str | None = None
    md5: str | None = None
    generation: int | None = None

    @property
    def checksum(self) -> str | None:
        """The manifest form of the strongest checksum known: `crc32c:<base64>` or `md5:<hex>`."""
        if self.crc32c:
            return f"crc32c:{self.crc32c}"
        if self.md5:
            return f"md5:{self.md5}"
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageResult:
    """What `stage_file` did: the local path, the source's FileInfo and whether bytes were downloaded."""

    path: Path
    info: FileInfo
    downloaded: bool



@runtime_checkable
class Storage(Protocol):
    """One storage backend; `backend_for(uri)` picks it by URI scheme."""

    scheme: str

    def stat(self, uri: str, *, checksum: bool = True) -> FileInfo:
        """Size, checksums and generation of one file; FileNotFoundError when absent."""
        ...

    def exists(self, uri: str) -> bool:
        """Whether a file (or a directory / prefix with files under it) exists."""
        ...

    def list_files(self, prefix: str, suffixes: tuple[str, ...] | None, *, checksum: bool) -> list[FileInfo]:
        """Every file under a directory / prefix, recursively, sorted by URI."""
        ...

    def read_bytes(self, uri: str) -> bytes:
        """The whole content of one (small) file."""
        ...

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write a file atomically: readers see the old content or the new, never a part."""
        ...

    def put_file(self, local_path: Path, uri: str) -> None:
        """Copy a local file to `uri` atomically."""
        ...

    def download(self, info: FileInfo, dest: IO[bytes]) -> None:
        """Write the bytes of the file `info` describes (that generation where supported) to `dest`."""
        ...
