"""Byte access and hashing for local paths and gs:// URIs (through g2l.storage when it is installed)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import google_crc32c

_CHUNK = 8 * 1024 * 1024


def _remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _strip_file(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def local_path(uri: str) -> Path:
    """A local path holding `uri`'s bytes (gs:// objects are staged by g2l.storage)."""
    if _remote(uri):
        from g2l import storage

        return Path(storage.stage(uri))
    return Path(_strip_file(uri))


def read_bytes(uri: str) -> bytes:
    """The bytes of a local file or remote object."""
    if _remote(uri):
        from g2l import storage

        return storage.read_bytes(uri)
    return Path(_strip_file(uri)).read_bytes()


def read_json(uri: str) -> Any:
    """Parse a JSON file or object."""
    return json.loads(read_bytes(uri))


def exists(uri: str) -> bool:
    """Whether a local file or remote object exists."""
    if _remote(uri):
        from g2l import storage

        return bool(storage.exists(uri))
    return Path(_strip_file(uri)).exists()


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    if _remote(uri):
        return "/".join([uri.rstrip("/"), *parts])
    return str(Path(_strip_file(uri)).joinpath(*parts))


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


def checksum_uri(uri: str, kind: str) -> str:
    """The file's checksum in manifest form: `crc32c:<base64>` or `md5:<hex>`.

    Remote objects use the bucket's own metadata (no download); local files are hashed.
    """
    if kind not in ("crc32c", "md5"):
        raise ValueError(f"unknown checksum kind {kind!r}; use crc32c or md5")
    if _remote(uri):
        from g2l import storage

        info = storage.stat(uri)
        value = getattr(info, kind)
        if value:
            return f"{kind}:{_normalise(kind, str(value))}"
    path = local_path(uri)
    if kind == "md5":
        md5 = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                md5.update(chunk)
        return f"md5:{md5.hexdigest()}"
    crc = google_crc32c.Checksum()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc.update(chunk)
    return f"crc32c:{base64.b64encode(crc.digest()).decode()}"


def _normalise(kind: str, value: str) -> str:
    """Bucket metadata gives crc32c as base64 and md5 as base64 too; manifests use base64 / hex."""
    value = value.split(":", 1)[1] if value.startswith(f"{kind}:") else value
    if kind == "md5" and len(value) != 32:
        try:
            return base64.b64decode(value).hex()
        except ValueError:
            return value
    return value


def split_checksum(value: str) -> tuple[str, str]:
    """('crc32c'|'md5', normalised value) of a manifest checksum such as `crc32c:AAAAAA==`."""
    kind, sep, rest = value.partition(":")
    if not sep or kind not in ("crc32c", "md5"):
        raise ValueError(f"checksum {value!r} is not `crc32c:<base64>` or `md5:<hex>`")
    return kind, _normalise(kind, rest)
