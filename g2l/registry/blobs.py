"""Byte access and hashing of local paths and gs:// URIs for lineage, all through g2l.storage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from g2l import storage

_CHUNK = 8 * 1024 * 1024


def local_path(uri: str) -> Path:
    """A local path holding `uri`'s bytes (gs:// objects are staged and crc32c-verified by g2l.storage)."""
    return Path(storage.stage(uri))


def read_bytes(uri: str) -> bytes:
    """The bytes of a local file or remote object."""
    return storage.read_bytes(uri)


def read_json(uri: str) -> Any:
    """Parse a JSON file or object."""
    return json.loads(read_bytes(uri))


def exists(uri: str) -> bool:
    """Whether a local file or remote object exists."""
    return bool(storage.exists(uri))


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    return storage.join(uri, *parts)


def parent(uri: str) -> str:
    """The directory (prefix) holding a file or object."""
    return uri.rstrip("/").rsplit("/", 1)[0] if storage.is_remote(uri) else str(Path(uri).parent)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_uri(uri: str) -> str:
    """Hex sha256 of a file's bytes, streamed (large shards and weights never sit in memory whole)."""
    digest = hashlib.sha256()
    with open(local_path(uri), "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def split_checksum(value: str) -> tuple[str, str]:
    """('crc32c'|'md5', value) of a manifest checksum such as `crc32c:AAAAAA==` (ValueError otherwise)."""
    return storage.parse_checksum(value)


def checksum_uri(uri: str, kind: str) -> str:
    """The file's checksum now, in manifest form (`crc32c:<base64>` / `md5:<hex>`).

    Buckets answer from object metadata (no download); local files are hashed.
    """
    info = storage.stat(uri, checksum=True)
    if kind == "crc32c" and info.crc32c:
        return f"crc32c:{info.crc32c}"
    if kind == "md5":
        if info.md5:
            return f"md5:{info.md5}"
        if not storage.is_remote(uri):
            return f"md5:{storage.md5_of_file(local_path(uri))}"
    raise ValueError(f"{uri}: its storage reports no {kind} checksum")
