"""Embedding cache on disk: atomic part writes, sha256-checked part records, sealing, reader.

A cache is *sealed* once `_COMPLETE` exists: from then on nothing in it is ever rewritten (readers on
other nodes may hold its files open). `index.json` and `_COMPLETE` are created exclusively, a rerun
that finds the seal only verifies, and a damaged sealed cache is repaired only on request (`unseal`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from g2l.views import ViewSpec

INDEX = "index.json"
COMPLETE = "_COMPLETE"
MATERIAL = "cache.json"


class CacheError(ValueError):
    """A cache directory is incomplete, corrupt or belongs to other inputs; the message names the file."""


def part_file(i: int) -> str:
    """File name of part i (one part per input shard)."""
    return f"part-{i:06d}.npy"


def keys_file(i: int) -> str:
    """File name of part i's record: tile keys, shard, and the part's sha256."""
    return f"part-{i:06d}.keys.json"


def _tmp_name(final: Path, rank: int) -> Path:
    # rank in the name: a restarting rank removes only its own leftovers, never another rank's live file
    return final.with_name(f".{final.name}.tmp-r{rank}-{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes, rank: int = 0) -> None:
    """Write to a temporary name in the same directory, fsync, then rename over `path`."""
    tmp = _tmp_name(path, rank)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def create_exclusive(path: Path, data: bytes, rank: int = 0) -> bool:
    """Create `path` with `data` only if it does not exist (atomically); returns whether this call made it.

    A hard link of a fsynced temporary file publishes the whole content at once and fails when the
    name exists, so two sealers racing never replace each other's file. Filesystems without hard
    links (GCS FUSE) fall back to an exclusive create, which is atomic for the name.
    """
    tmp = _tmp_name(path, rank)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here
        try:
            with open(path, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_tmp(cache_dir: Path, rank: int) -> int:
    """Delete temporary files an interrupted run of this rank left behind; returns how many."""
    n = 0
    for p in cache_dir.glob(f".*.tmp-r{rank}-*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def canonical_json(obj: Any) -> bytes:
    """Stable JSON bytes (sorted keys, fixed indent) so equal content means equal files."""
    return (json.dumps(obj, sort_keys=True, indent=1) + "\n").encode()


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy serialisation of an array (deterministic for equal arrays)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def crc32c_b64(data: bytes) -> str:
    """Base64 crc32c of bytes, as GCS reports it (lets a gs:// part be checked without downloading it)."""
    import base64

    import google_crc32c

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def part_record(i: int, data: bytes, keys: list[str], shard: dict[str, Any]) -> dict[str, Any]:
    """The record that marks part i done: its shard, tile keys and the .npy's size, sha256 and crc32c."""
    return {"part": part_file(i), "shard": shard["name"], "shard_sha256": shard["sha256"],
            "n_tiles": int(shard["n_tiles"]), "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "crc32c": crc32c_b64(data), "keys": list(keys)}


def write_part(cache_dir: Path, i: int, array: np.ndarray, keys: list[str], shard: dict[str, Any],
               rank: int = 0) -> dict[str, Any]:
    """Write part i atomically: the .npy first, then its record (whose presence marks the part done)."""
    data = npy_bytes(array)
    record = part_record(i, data, keys, shard)
    atomic_write_bytes(cache_dir / part_file(i), data, rank)
    atomic_write_bytes(cache_dir / keys_file(i), canonical_json(record), rank)
    return record


def record_matches(record: dict[str, Any] | None, shard: dict[str, Any]) -> bool:
    """Whether a part record belongs to this shard (name and sha256)."""
    if record is None:
        return False
    return record.get("shard") == shard["name"] and record.get("shard_sha256") == shard["sha256"]


def read_record(cache_dir: Path, i: int) -> dict[str, Any] | None:
    """Part i's record, or None when absent or unreadable."""
    try:
        record = json.loads((cache_dir / keys_file(i)).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def sha256_file(path: Path) -> str:
    """sha256 of a file."""
    from g2l.embed.shards import file_sha256

    return file_sha256(path)


def part_done(cache_dir: Path, i: int, shard: dict[str, Any]) -> bool:
    """True when part i exists for this shard and its bytes match the recorded sha256."""
    record = read_record(cache_dir, i)
    if record is None or not record_matches(record, shard):
        return False
    path = cache_dir / part_file(i)
    return path.is_file() and sha256_file(path) == record.get("sha256")


def compare_material(where: str, existing_bytes: bytes | None, material: dict[str, Any]) -> bool:
    """True when `where` already records this material, False when it records none; CacheError otherwise."""
    if existing_bytes is None:
        return False
    try:
        existing = json.loads(existing_bytes)
    except ValueError as exc:
        raise CacheError(f"{where}/{MATERIAL} is unreadable; remove {where} and rerun") from exc
    if existing != material:
        diff = sorted(k for k in set(existing) | set(material) if existing.get(k) != material.get(k))
        raise CacheError(
            f"{where} holds a cache for other inputs (differs in: {', '.join(diff)}; it was written "
            f"by teacher {existing.get('teacher')!r}, "
            f"weights {str(existing.get('weights_sha256'))[:12]}); "
            f"refusing to mix. Use another --out or remove that directory."
        )
    return True


def check_material(cache_dir: Path, material: dict[str, Any], rank: int = 0) -> None:
    """Record the key material in a new cache dir; refuse one holding another teacher's cache."""
    path = cache_dir / MATERIAL
    if compare_material(str(cache_dir), path.read_bytes() if path.is_file() else None, material):
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, canonical_json(material), rank)


def build_index(key: str, material: dict[str, Any], records: list[dict[str, Any]],
                dim: int, origin: dict[str, Any] | None = None) -> dict[str, Any]:
    """index.json content from the key material and every part's record (same bytes local or gs://).

    `origin` says where the teacher was loaded from (`teacher_spec`, `teacher_weights`): not part of the
    key, it lets `g2l audit` rebuild the teacher and recompute its weight digest.
    """
    # size and crc32c let a gs:// reader check every part from one listing, without downloads
    parts = [{"file": part_file(i), "keys": keys_file(i), "shard": r["shard"], "n_tiles": int(r["n_tiles"]),
              "sha256": r["sha256"], "size": int(r["size"]), "crc32c": r["crc32c"]}
             for i, r in enumerate(records)]
    return {
        "key": key,
        "teacher": material["teacher"],
        "weights_sha256": material["weights_sha256"],
        "dim": int(dim),
        "views": int(material["view_spec"]["views"]),
        "view_spec": material["view_spec"],
        "preprocess": material["preprocess"],
        "embedding": material["embedding"],
        "shards_sha256": material["shards_sha256"],
        "n_tiles": sum(p["n_tiles"] for p in parts),
        "dtype": "float16",
        "format": material["format"],
        "parts": parts,
        **{k: v for k, v in (origin or {}).items() if v is not None},
    }


def is_sealed(cache_dir: Path) -> bool:
    """Whether the cache carries `_COMPLETE` (and is therefore immutable)."""
    return (cache_dir / COMPLETE).is_file()


def sealed_problems(cache_dir: Path, parts: list[int] | None = None) -> list[str]:
    """What no longer matches the seal among `parts` (default all): each part missing or not matching
    index.json; empty when intact."""
    try:
        index = json.loads((cache_dir / INDEX).read_text())
    except (OSError, ValueError) as exc:
        return [f"{INDEX} is unreadable ({exc})"]
    problems = []
    entries = index.get("parts") or []
    for part in entries if parts is None else [entries[i] for i in parts if i < len(entries)]:
        path = cache_dir / part["file"]
        if not path.is_file():
            problems.append(f"{part['file']} is missing")
        elif sha256_file(path) != part["sha256"]:
            problems.append(f"{part['file']} does not match its sha256 in {INDEX}")
    return problems


def unseal(cache_dir: Path) -> None:
    """Remove the seal (`_COMPLETE` first, so no reader trusts the cache, then index.json) for a repair."""
    (cache_dir / COMPLETE).unlink(missing_ok=True)
    (cache_dir / INDEX).unlink(missing_ok=True)


def finalize(cache_dir: Path, material: dict[str, Any], shard_index: dict[str, Any], dim: int,
             rank: int = 0, origin: dict[str, Any] | None = None) -> bool:
    """Seal the cache (index.json, then _COMPLETE) when every part is present and intact; returns whether
    it is sealed.

    Every rank calls this after writing its own parts, so the last rank to finish always sees all
    parts and seals; earlier ranks return False on the cheap record check, without hashing. A sealed
    cache is left untouched; concurrent sealers build equal bytes and only the first creates each file.
    """
    if is_sealed(cache_dir):
        return True
    shards = shard_index["shards"]
    records = [read_record(cache_dir, i) for i in range(len(shards))]
    if not all(record_matches(r, s) for r, s in zip(records, shards, strict=True)):
        return False
    if not all(part_done(cache_dir, i, s) for i, s in enumerate(shards)):
        return False
    data = canonical_json(build_index(cache_dir.name, material, records, dim, origin))  # type: ignore[arg-type]
    if not create_exclusive(cache_dir / INDEX, data, rank) and (cache_dir / INDEX).read_bytes() != data:
        if is_sealed(cache_dir):  # another sealer won with other bytes: never overwrite a sealed index
            raise CacheError(f"{cache_dir}/{INDEX} was sealed by another writer with other content; "
                             f"run `g2l embed --repair` to check it")
        atomic_write_bytes(cache_dir / INDEX, data, rank)  # a stale index an interrupted seal left behind
    create_exclusive(cache_dir / COMPLETE, b"", rank)
    return True


@dataclasses.dataclass(frozen=True)
class CachePart:
    """One part of a cache: its shard, tile keys, embeddings (float16 [n_tiles, views, dim], mmap)."""

    file: str
    shard: str
    keys: list[str]
    embeddings: np.ndarray


class EmbeddingCache:
    """Read side of a finished cache: look up a tile's K views by key, iterate parts, verify."""

    def __init__(self, path: str | Path, index: dict[str, Any]) -> None:
        self.path = Path(path)
        self.index = index
        self.key: str = index["key"]
        self.teacher: str = index["teacher"]
        self.weights_sha256: str = index["weights_sha256"]
        self.views: int = int(index["views"])
        self.dim: int = int(index["dim"])
        self._where: dict[str, tuple[int, int]] | None = None
        self._arrays: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"EmbeddingCache({str(self.path)!r}, teacher={self.teacher!r}, views={self.views}, "
                f"dim={self.dim})")

    def _part_keys(self, i: int) -> list[str]:
        part = self.index["parts"][i]
        record = json.loads((self.path / part.get("keys", keys_file(i))).read_text())
        return list(record["keys"])

    def _array(self, i: int) -> np.ndarray:
        if i not in self._arrays:
            self._arrays[i] = np.load(self.path / self.index["parts"][i]["file"], mmap_mode="r")
        return self._arrays[i]

    def _locations(self) -> dict[str, tuple[int, int]]:
        if self._where is None:
            self._where = {k: (i, row) for i in range(len(self.index["parts"]))
                           for row, k in enumerate(self._part_keys(i))}
        return self._where

    @property
    def view_spec(self) -> ViewSpec:
        """The ViewSpec the cached views were drawn with: the student's dataset regenerates them with it."""
        from g2l.config import from_dict

        return from_dict(ViewSpec, self.index["view_spec"], where=f"{self.path}/{INDEX}:view_spec")

    def __len__(self) -> int:
        return int(self.index["n_tiles"])

    def __contains__(self, tile_key: object) -> bool:
        return tile_key in self._locations()

    def tile_keys(self) -> list[str]:
        """All tile keys, in part then row order."""
        return list(self._locations())

    def get(self, tile_key: str) -> np.ndarray:
        """float16 [views, dim] for one tile; KeyError naming the tile when it is not cached."""
        try:
            i, row = self._locations()[tile_key]
        except KeyError:
            raise KeyError(f"tile {tile_key!r} is not in cache {self.path}") from None
        return np.array(self._array(i)[row])

    def iter_parts(self) -> Iterator[CachePart]:
        """Each part in shard order, embeddings memory-mapped."""
        for i, part in enumerate(self.index["parts"]):
            yield CachePart(file=part["file"], shard=part["shard"], keys=self._part_keys(i),
                            embeddings=self._array(i))

    def verify(self) -> None:
        """Check every part's bytes and shape against index.json; CacheError names the first bad part."""
        for part in self.index["parts"]:
            path = self.path / part["file"]
            if not path.is_file():
                raise CacheError(f"{path} is missing; rerun `g2l embed` to recompute it")
            if sha256_file(path) != part["sha256"]:
                raise CacheError(f"{path} does not match its sha256 in index.json (corrupt); "
                                 f"rerun `g2l embed` to recompute it")
            shape = np.load(path, mmap_mode="r").shape
            expected = (part["n_tiles"], self.views, self.dim)
            if shape != expected:
                raise CacheError(f"{path} has shape {shape}, expected {expected}")


def open_cache(path: str | Path, require_complete: bool = True) -> EmbeddingCache:
    """Open a cache ROOT/embeddings/<key>; it must carry _COMPLETE unless require_complete=False.

    A gs:// cache is first downloaded (crc32c- and sha256-checked, reused when already local) into
    `$G2L_CACHE_DIR/../embeddings/<key>`; the returned cache reads that local copy.
    """
    if str(path).startswith("gs://"):
        from g2l.embed.locations import stage_cache

        path = stage_cache(str(path))
    p = Path(path)
    if not (p / INDEX).is_file():
        raise CacheError(f"{p} has no {INDEX}: it is not a finished embedding cache (run `g2l embed`)")
    if require_complete and not (p / COMPLETE).is_file():
        raise CacheError(f"{p} lacks {COMPLETE}: the embedding run did not finish; rerun `g2l embed`")
    return EmbeddingCache(p, json.loads((p / INDEX).read_text()))
