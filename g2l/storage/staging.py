"""Verified staging of gs:// objects into a local cache keyed by (bucket, object, generation)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from g2l.storage.backends import backend_for
from g2l.storage.base import ChecksumMismatchError, FileInfo, StageResult, Storage, StorageError
from g2l.storage.checksums import Hasher, HashingWriter, hash_file, parse_checksum
from g2l.storage.local import LocalStorage
from g2l.storage.uris import is_remote, local_path, split_gs


def default_cache_dir() -> Path:
    """`$G2L_CACHE_DIR`, else ~/.cache/g2l/staging."""
    env = os.environ.get("G2L_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "g2l" / "staging"


def _cache_path(cache_dir: Path, info: FileInfo) -> Path:
    bucket, name = split_gs(info.uri)
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"{info.uri}: object name has empty, '.' or '..' parts; cannot cache it safely")
    # The file keeps its own name (readers pick a format by extension); the directory above it carries
    # the generation, so a rewritten object never reuses a stale copy.
    return cache_dir.joinpath(bucket, *parts[:-1], f"{parts[-1]}@{info.generation}", parts[-1])


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _check_expected(uri: str, expected: tuple[str, str] | None, crc32c: str | None, md5: str | None,
                    what: str) -> None:
    if expected is None:
        return
    algo, want = expected
    have = crc32c if algo == "crc32c" else md5
    if have is not None and have != want:
        raise ChecksumMismatchError(
            f"{uri}: {what} {algo} is {have} but the manifest says {want}; the object changed since the "
            "manifest was made: rebuild the inventory/manifest or restore the original object"
        )


def stage_file(
    uri: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    expected_checksum: str | None = None,
    *,
    verify_cached: bool = True,
    backend: Storage | None = None,
) -> StageResult:
    """Make a file available locally; see `stage`. Also says whether bytes were downloaded.

    `verify_cached=False` trusts a cached copy of the right size without re-hashing it; `backend`
    overrides the scheme's backend (e.g. a GCSStorage with its own client).
    """
    uri = str(uri)
    expected = parse_checksum(expected_checksum) if expected_checksum else None
    if not is_remote(uri):
        path = local_path(uri)
        if expected is None:
            info = LocalStorage().stat(uri, checksum=False)
        else:
            hasher = hash_file(path, md5=expected[0] == "md5")
            info = FileInfo(uri=uri, size=hasher.size, crc32c=hasher.crc32c, md5=hasher.md5,
                            generation=path.stat().st_mtime_ns)
            _check_expected(uri, expected, info.crc32c, info.md5, "the file's")
        return StageResult(path=path, info=info, downloaded=False)

    backend = backend or backend_for(uri)
    info = backend.stat(uri)
    _check_expected(uri, expected, info.crc32c, info.md5, "the bucket's")
    if info.crc32c is None and info.md5 is None:
        raise StorageError(f"{uri}: the bucket reports no crc32c or md5, so a download cannot be verified")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = _cache_path(root, info)
    want_md5 = info.crc32c is None  # composite objects carry only crc32c; md5-only is rare

    def verified(hasher: Hasher) -> bool:
        if hasher.size != info.size:
            return False
        return hasher.crc32c == info.crc32c if info.crc32c else hasher.md5 == info.md5

    # One stager per object downloads at a time; the others wait, then find the verified file.
    with _locked(final.parent / ".lock"):
        if final.is_file():
            if not verify_cached:
                if final.stat().st_size == info.size:
                    return StageResult(path=final, info=info, downloaded=False)
            elif verified(hash_file(final, md5=want_md5)):
                return StageResult(path=final, info=info, downloaded=False)
            # A cached copy that fails verification (disk error, someone wrote to it) is replaced.
            final.unlink()
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        try:
            hasher = Hasher(md5=want_md5)
            with open(tmp, "wb") as fh:
                backend.download(info, HashingWriter(fh, hasher))  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            if not verified(hasher):
                raise ChecksumMismatchError(
                    f"{uri}: downloaded {hasher.size} bytes with crc32c {hasher.crc32c} but the bucket "
                    f"reports {info.size} bytes with crc32c {info.crc32c} (generation {info.generation}); "
                    "the object changed during the download or the transfer was corrupted: retry"
                )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return StageResult(path=final, info=info, downloaded=True)


def stage(
    uri: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    expected_checksum: str | None = None,
) -> Path:
    """Local path of `uri`: gs:// objects are downloaded into a cache keyed by (bucket, object, generation).

    Downloads are crc32c-verified against the bucket's metadata (and `expected_checksum`, e.g. a
    manifest's `crc32c:<base64>` / `md5:<hex>`), written under a temporary name and renamed, so
    concurrent stagers are safe; a cached copy is re-verified and reused, or re-downloaded if corrupt.
    Local paths are returned as they are (checked against `expected_checksum` when given).
    """
    return stage_file(uri, cache_dir, expected_checksum).path

