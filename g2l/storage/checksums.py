"""Checksums as GCS reports them: crc32c (base64) and md5 (hex), computed in bounded memory."""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import IO

from g2l.storage.base import CHUNK


class Hasher:
    """crc32c (GCS's own checksum, hardware accelerated by google-crc32c) plus md5, fed in chunks."""

    def __init__(self, md5: bool = False) -> None:
        import google_crc32c

        self._crc = google_crc32c.Checksum()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next chunk."""
        self._crc.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    @property
    def crc32c(self) -> str:
        """Base64 crc32c of what was fed so far."""
        return base64.b64encode(self._crc.digest()).decode()

    @property
    def md5(self) -> str | None:
        """Hex md5 of what was fed so far (None unless asked for)."""
        return self._md5.hexdigest() if self._md5 is not None else None


class HashingWriter:
    """A binary file wrapper that hashes what is written through it (one pass over a download)."""

    def __init__(self, fh: IO[bytes], hasher: Hasher) -> None:
        self._fh = fh
        self._hasher = hasher

    def write(self, data: bytes) -> int:
        """Hash, then write."""
        self._hasher.update(data)
        return self._fh.write(data)

    def flush(self) -> None:
        """Flush the wrapped file."""
        self._fh.flush()


def hash_file(path: Path, md5: bool = False) -> Hasher:
    """crc32c (and md5 when asked) of a local file, read in chunks."""
    hasher = Hasher(md5=md5)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher


def crc32c_of_bytes(data: bytes) -> str:
    """Base64 crc32c of `data`, in the form GCS reports."""
    hasher = Hasher()
    hasher.update(data)
    return hasher.crc32c


def crc32c_of_file(path: str | Path) -> str:
    """Base64 crc32c of a local file, read in chunks."""
    return hash_file(Path(path)).crc32c


def md5_of_file(path: str | Path) -> str:
    """Hex md5 of a local file, read in chunks."""
    md5 = hash_file(Path(path), md5=True).md5
    return md5 or ""


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split `crc32c:<base64>` / `md5:<hex>` into (algorithm, value); anything else is a ValueError."""
    algo, sep, value = checksum.strip().partition(":")
    algo = algo.lower()
    if not sep or algo not in ("crc32c", "md5") or not value:
        raise ValueError(f"checksum {checksum!r} is not 'crc32c:<base64>' or 'md5:<hex>'")
    if algo == "crc32c":
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"checksum {checksum!r}: the crc32c value is not base64") from exc
        if len(raw) != 4:
            raise ValueError(f"checksum {checksum!r}: a crc32c is 4 bytes (8 base64 characters)")
        return algo, value
    value = value.lower()
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"checksum {checksum!r}: an md5 is 32 hex digits")
    return algo, value


def md5_b64_to_hex(value: str | None) -> str | None:
    """GCS reports md5 as base64; manifests and FileInfo use hex."""
    return base64.b64decode(value).hex() if value else None
