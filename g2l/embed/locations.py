"""Where shards are read from and where a cache is written: local directories or gs:// prefixes.

Local caches are written in place (temporary name + rename). A gs:// cache is built part by part in a
local work directory and each finished part is uploaded (the .npy, then its record, each a single
atomic object upload); a part counts as done when its record is present and the object's crc32c and
size match the record, so a restart never downloads finished parts. gs:// shards are staged through
`g2l.storage.stage` (crc32c-verified, cached by generation) and then checked against the index's sha256.

Sealing is the same on both: `index.json`, then `_COMPLETE`, each created only if absent (a local hard
link; on GCS an upload with `ifGenerationMatch=0`), and a sealed cache is never written again.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from g2l.embed import cache as c
from g2l.embed.shards import ShardError, check_shard, file_sha256, load_shard_index, parse_shard_index


def is_remote(uri: str | Path) -> bool:
    """True for gs:// URIs."""
    return str(uri).startswith("gs://")


def _storage() -> Any:
    try:
        import g2l.storage as storage
    except ImportError as exc:  # pragma: no cover - g2l.storage ships with g2l
        raise RuntimeError("gs:// paths need g2l.storage (google-cloud-storage, google-crc32c): "
                           "pip install google-cloud-storage google-crc32c") from exc
    return storage


def join(uri: str, *parts: str) -> str:
    """Join onto a gs:// URI or local path."""
    if is_remote(uri):
        return "/".join([uri.rstrip("/"), *parts])
    return str(Path(uri).joinpath(*parts))


class ShardSource:
    """The tile shards of one tiling run (ROOT/shards), local or gs://; picklable for DataLoader workers."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)

    def index(self) -> dict[str, Any]:
        """The shard index (index.json)."""
        if not is_remote(self.root):
            return load_shard_index(self.root)
        st = _storage()
        uri = join(self.root, "index.json")
        if not st.exists(uri):
            raise ShardError(f"{uri} not found: point --shards at the tiling stage's shards prefix")
        return parse_shard_index(st.read_bytes(uri), uri)

    def problem(self, entry: dict[str, Any]) -> str | None:
        """A message naming the shard when it is missing (or, locally, changed); None when usable."""
        if not is_remote(self.root):
            return check_shard(self.root, entry)
        if not _storage().exists(join(self.root, entry["name"])):
            return f"shard {entry['name']} is missing from {self.root} (rerun tiling or restore the object)"
        return None  # its sha256 is checked once staged (`local_path`), without a second download

    def local_path(self, entry: dict[str, Any]) -> Path:
        """A local file with the shard's bytes (gs:// shards are staged and sha256-checked here)."""
        if not is_remote(self.root):
            return Path(self.root) / entry["name"]
        path = Path(_storage().stage(join(self.root, entry["name"])))
        if file_sha256(path) != entry["sha256"]:
            raise ShardError(f"shard {entry['name']} in {self.root} does not match its sha256 in index.json: "
                             f"the object changed after tiling; rerun tiling so shards and index agree")
        return path


class CacheDest(Protocol):
    """Where one cache (ROOT/embeddings/<key>) is written."""

    location: str

    def prepare(self, material: dict[str, Any]) -> None:
        """Record the key material (refusing another cache's directory) and clear this rank's leftovers."""
        ...

    def part_done(self, i: int, shard: dict[str, Any]) -> bool:
        """Whether part i is present and intact."""
        ...

    def write_part(self, i: int, array: np.ndarray, keys: list[str], shard: dict[str, Any]) -> None:
        """Write part i (atomically)."""
        ...

    def finalize(self, material: dict[str, Any], shard_index: dict[str, Any], dim: int,
                 origin: dict[str, Any] | None = None) -> bool:
        """Seal (index.json, then _COMPLETE) when every part is present; returns whether it is sealed."""
        ...

    def sealed(self) -> bool:
        """Whether _COMPLETE exists: the cache is then immutable."""
        ...

    def check_sealed(self, material: dict[str, Any], parts: list[int]) -> list[str]:
        """Read-only check of a sealed cache: CacheError for other inputs; which of `parts` are damaged."""
        ...

    def unseal(self) -> None:
        """Remove _COMPLETE, then index.json, so that a repair can recompute damaged parts and reseal."""
        ...


class LocalDest:
    """A cache directory on a local (or mounted) filesystem."""

    def __init__(self, cache_dir: Path, rank: int) -> None:
        self.cache_dir, self.rank, self.location = cache_dir, rank, str(cache_dir)

    def prepare(self, material: dict[str, Any]) -> None:
        """See CacheDest."""
        c.check_material(self.cache_dir, material, self.rank)
        c.remove_stale_tmp(self.cache_dir, self.rank)

    def part_done(self, i: int, shard: dict[str, Any]) -> bool:
        """See CacheDest."""
        return c.part_done(self.cache_dir, i, shard)

    def write_part(self, i: int, array: np.ndarray, keys: list[str], shard: dict[str, Any]) -> None:
        """See CacheDest."""
        c.write_part(self.cache_dir, i, array, keys, shard, self.rank)

    def finalize(self, material: dict[str, Any], shard_index: dict[str, Any], dim: int,
                 origin: dict[str, Any] | None = None) -> bool:
        """See CacheDest."""
        return c.finalize(self.cache_dir, material, shard_index, dim, self.rank, origin)

    def sealed(self) -> bool:
        """See CacheDest."""
        return c.is_sealed(self.cache_dir)

    def check_sealed(self, material: dict[str, Any], parts: list[int]) -> list[str]:
        """See CacheDest."""
        path = self.cache_dir / c.MATERIAL
        c.compare_material(str(self.cache_dir), path.read_bytes() if path.is_file() else None, material)
        return c.sealed_problems(self.cache_dir, parts)

    def unseal(self) -> None:
        """See CacheDest."""
        c.unseal(self.cache_dir)


class GCSDest:
    """A cache under a gs:// prefix: parts built in a local work dir, uploaded as each one finishes."""

    def __init__(self, uri: str, rank: int, workdir: Path | None = None) -> None:
        self.uri, self.rank, self.location = uri, rank, uri
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="g2l-embed-"))
        self.st = _storage()

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.st.read_bytes(join(self.uri, name)))
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def prepare(self, material: dict[str, Any]) -> None:
        """See CacheDest."""
        uri = join(self.uri, c.MATERIAL)
        existing = self.st.read_bytes(uri) if self.st.exists(uri) else None
        if not c.compare_material(self.uri, existing, material):
            self.st.put_bytes(uri, c.canonical_json(material))

    def _intact(self, i: int, record: dict[str, Any] | None, shard: dict[str, Any]) -> bool:
        if record is None or not c.record_matches(record, shard):
            return False
        try:
            info = self.st.stat(join(self.uri, c.part_file(i)))
        except FileNotFoundError:
            return False
        return bool(info.size == record.get("size") and info.crc32c == record.get("crc32c"))

    def part_done(self, i: int, shard: dict[str, Any]) -> bool:
        """See CacheDest; checks the object's crc32c and size against the record, without downloading."""
        return self._intact(i, self._read_json(c.keys_file(i)), shard)

    def write_part(self, i: int, array: np.ndarray, keys: list[str], shard: dict[str, Any]) -> None:
        """See CacheDest: the .npy is uploaded before its record, so a record always means a whole part."""
        c.write_part(self.workdir, i, array, keys, shard, self.rank)
        for name in (c.part_file(i), c.keys_file(i)):
            self.st.put_file(self.workdir / name, join(self.uri, name))
            (self.workdir / name).unlink()

    def finalize(self, material: dict[str, Any], shard_index: dict[str, Any], dim: int,
                 origin: dict[str, Any] | None = None) -> bool:
        """See CacheDest."""
        if self.sealed():
            return True
        shards = shard_index["shards"]
        records = [self._read_json(c.keys_file(i)) for i in range(len(shards))]
        if not all(c.record_matches(r, s) for r, s in zip(records, shards, strict=True)):
            return False
        if not all(self._intact(i, r, s) for i, (r, s) in enumerate(zip(records, shards, strict=True))):
            return False
        key = self.uri.rstrip("/").rsplit("/", 1)[-1]
        data = c.canonical_json(c.build_index(key, material, records, dim, origin))  # type: ignore[arg-type]
        index_uri = join(self.uri, c.INDEX)
        if not put_if_absent(index_uri, data) and self.st.read_bytes(index_uri) != data:
            if self.sealed():
                raise c.CacheError(f"{index_uri} was sealed by another writer with other content; "
                                   f"run `g2l embed --repair` to check it")
            self.st.put_bytes(index_uri, data)  # a stale index an interrupted seal left behind
        put_if_absent(join(self.uri, c.COMPLETE), b"")
        return True

    def sealed(self) -> bool:
        """See CacheDest."""
        return bool(self.st.exists(join(self.uri, c.COMPLETE)))

    def check_sealed(self, material: dict[str, Any], parts: list[int]) -> list[str]:
        """See CacheDest: one listing gives every part's size and crc32c; nothing is downloaded but JSON."""
        uri = join(self.uri, c.MATERIAL)
        c.compare_material(self.uri, self.st.read_bytes(uri) if self.st.exists(uri) else None, material)
        index = self._read_json(c.INDEX)
        if index is None:
            return [f"{c.INDEX} is missing or unreadable"]
        present = {f.uri.rsplit("/", 1)[-1]: f for f in self.st.list_files(self.uri)}
        problems = []
        entries = index.get("parts") or []
        for part in [entries[i] for i in parts if i < len(entries)]:
            info = present.get(part["file"])
            want = part if "crc32c" in part else (self._read_json(part.get("keys", "")) or {})
            if info is None:
                problems.append(f"{part['file']} is missing")
            elif info.size != want.get("size") or info.crc32c != want.get("crc32c"):
                problems.append(f"{part['file']} does not match its size and crc32c in {c.INDEX}")
        return problems

    def unseal(self) -> None:
        """See CacheDest."""
        for name in (c.COMPLETE, c.INDEX):
            delete_object(join(self.uri, name))


def _blob(uri: str) -> Any:
    from g2l.storage import backend_for, split_gs

    bucket, name = split_gs(uri)
    return backend_for(uri).client().bucket(bucket).blob(name)  # type: ignore[attr-defined]


def put_if_absent(uri: str, data: bytes) -> bool:
    """Create the object only if no live version exists; returns whether this call created it.

    Real GCS enforces `ifGenerationMatch=0` atomically and answers 412 Precondition Failed when the
    object exists (https://cloud.google.com/storage/docs/request-preconditions; google-cloud-storage
    `Blob.upload_from_string(if_generation_match=0)`). gcp-storage-emulator ignores preconditions,
    so the existence check before the upload is what a sequential rerun relies on there.
    """
    from google.api_core.exceptions import PreconditionFailed

    st = _storage()
    if st.exists(uri):
        return False
    try:
        _blob(uri).upload_from_string(data, checksum="crc32c", if_generation_match=0)
    except PreconditionFailed:
        return False
    return True


def delete_object(uri: str) -> None:
    """Delete one object if it exists."""
    from google.api_core.exceptions import NotFound

    try:
        _blob(uri).delete()
    except NotFound:
        pass


def dest_for(out_root: str | Path, key: str, rank: int) -> CacheDest:
    """The cache destination ROOT/embeddings/<key> for a local or gs:// artifact root."""
    if is_remote(out_root):
        return GCSDest(join(str(out_root), "embeddings", key), rank)
    return LocalDest(Path(out_root) / "embeddings" / key, rank)


def stage_cache(uri: str, local_root: Path | None = None) -> Path:
    """Download a finished gs:// cache into a local directory (reused when already there); returns it.

    A local copy that is sealed with the same index.json is returned untouched (its files' sizes are
    checked; `EmbeddingCache.verify` hashes them). One with another index (the remote was repaired) is
    unsealed, brought up to date and sealed again.
    """
    import os
    import shutil

    st = _storage()
    if not st.exists(join(uri, c.COMPLETE)):
        raise c.CacheError(f"{uri} lacks {c.COMPLETE}: the embedding run did not finish; rerun `g2l embed`")
    index_bytes = st.read_bytes(join(uri, c.INDEX))
    index = json.loads(index_bytes)
    root = local_root or Path(st.default_cache_dir()).parent / "embeddings"
    local = root / index["key"]
    if c.is_sealed(local) and _same_bytes(local / c.INDEX, index_bytes) and _sizes_match(local, index):
        return local
    c.unseal(local)
    local.mkdir(parents=True, exist_ok=True)
    names = [n for p in index["parts"] for n in (p["file"], p.get("keys", ""))] + [c.MATERIAL]
    for name in filter(None, names):
        dest = local / name
        want = next((p["sha256"] for p in index["parts"] if p["file"] == name), None)
        if dest.is_file() and (want is None or c.sha256_file(dest) == want):
            continue
        staged = Path(st.stage(join(uri, name)))
        tmp = dest.with_name(f".{dest.name}.tmp-stage-{os.getpid()}")
        try:
            os.link(staged, tmp)  # same filesystem as the staging cache: no second copy
        except OSError:
            shutil.copyfile(staged, tmp)
        os.replace(tmp, dest)
    c.create_exclusive(local / c.INDEX, index_bytes)
    c.create_exclusive(local / c.COMPLETE, b"")
    return local


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def _sizes_match(local: Path, index: dict[str, Any]) -> bool:
    for part in index["parts"]:
        path = local / part["file"]
        if not path.is_file() or ("size" in part and path.stat().st_size != part["size"]):
            return False
    return True
