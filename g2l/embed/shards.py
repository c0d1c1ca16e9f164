"""Read tile shards (ROOT/shards, docs/contracts.md): the index, tar members, and the one JPEG decoder."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class ShardError(ValueError):
    """A shard or the shard index is missing or does not match; the message names it."""


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_shard_index(shards_dir: str | Path) -> dict[str, Any]:
    """Read and check ROOT/shards/index.json (`shards: [{name, n_tiles, sha256}]`, `sha256`)."""
    path = Path(shards_dir) / "index.json"
    if not path.is_file():
        raise ShardError(f"{path} not found: point --shards at the tiling stage's shards directory")
    return parse_shard_index(path.read_bytes(), str(path))


def parse_shard_index(data: bytes, path: str) -> dict[str, Any]:
    """Parse and check the bytes of a shard index.json read from `path` (named in errors)."""
    try:
        index = json.loads(data)
    except ValueError as exc:
        raise ShardError(f"{path} is not valid JSON ({exc}); rerun tiling's shard step") from exc
    if not isinstance(index, dict) or not isinstance(index.get("shards"), list) or "sha256" not in index:
        raise ShardError(f"{path}: expected {{'shards': [{{'name', 'n_tiles', 'sha256'}}], 'sha256': ...}}")
    for i, entry in enumerate(index["shards"]):
        if not all(k in entry for k in ("name", "n_tiles", "sha256")):
            raise ShardError(f"{path}: shards[{i}] lacks name, n_tiles or sha256: {entry}")
    return index


def check_shard(shards_dir: str | Path, entry: dict[str, Any]) -> str | None:
    """None when the shard exists with the indexed sha256; else a message naming it and the fix."""
    path = Path(shards_dir) / entry["name"]
    if not path.is_file():
        return f"shard {entry['name']} is missing from {shards_dir} (rerun tiling or restore the file)"
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        return (f"shard {entry['name']} has sha256 {digest[:12]}... but index.json says "
                f"{entry['sha256'][:12]}...: the file changed after tiling; "
                f"rerun tiling so shards and index agree")
    return None


def decode_tile(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 HxWx3 RGB. Cache and distillation both decode with this, so pixels match."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def iter_shard(path: str | Path) -> Iterator[tuple[str, bytes, dict[str, Any] | None]]:
    """(tile key, JPEG bytes, metadata or None) per tile in tar order (key: name before the dot)."""
    pending: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = member.name.rsplit("/", 1)[-1]
            key, _, ext = base.partition(".")
            f = tar.extractfile(member)
            if f is None:
                continue
            if key not in pending:
                pending[key] = {}
                order.append(key)
            pending[key][ext] = f.read()
            # members of one key are adjacent; emit earlier keys as soon as a new key starts
            while len(order) > 1:
                yield _emit(order.pop(0), pending, path)
    while order:
        yield _emit(order.pop(0), pending, path)


def _emit(key: str, pending: dict[str, dict[str, bytes]], path: str | Path) -> tuple[str, bytes, dict | None]:
    parts = pending.pop(key)
    if "jpg" not in parts:
        raise ShardError(f"shard {Path(path).name}: tile {key} has no .jpg member")
    meta = json.loads(parts["json"]) if "json" in parts else None
    return key, parts["jpg"], meta
