"""Local paths and gs:// URIs behind one small interface: list, stat, verified staging cache, atomic put."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

# Files are hashed and copied in 8 MiB chunks so memory stays bounded whatever the slide size.
_CHUNK = 8 << 20
_INSTALL_HINT = "install it with `pip install google-cloud-storage google-crc32c` (g2l dependencies)"


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI and the fix."""


class ChecksumMismatchError(StorageError):
    """Downloaded or cached bytes do not match the checksum the bucket or the manifest records."""


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


# --------------------------------------------------------------------------------------------- checksums


class _Hasher:
    """crc32c (GCS's own checksum, hardware accelerated by google-crc32c) plus md5, fed in chunks."""

    def __init__(self, md5: bool = False) -> None:
        import google_crc32c

        self._crc = google_crc32c.Checksum()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._crc.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    @property
    def crc32c(self) -> str:
        return base64.b64encode(self._crc.digest()).decode()

    @property
    def md5(self) -> str | None:
        return self._md5.hexdigest() if self._md5 is not None else None


class _HashingWriter:
    """A binary file wrapper that hashes what is written through it (one pass over a download)."""

    def __init__(self, fh: IO[bytes], hasher: _Hasher) -> None:
        self._fh = fh
        self._hasher = hasher

    def write(self, data: bytes) -> int:
        self._hasher.update(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()


def _hash_file(path: Path, md5: bool = False) -> _Hasher:
    hasher = _Hasher(md5=md5)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher


def crc32c_of_bytes(data: bytes) -> str:
    """Base64 crc32c of `data`, in the form GCS reports."""
    hasher = _Hasher()
    hasher.update(data)
    return hasher.crc32c


def crc32c_of_file(path: str | Path) -> str:
    """Base64 crc32c of a local file, read in chunks."""
    return _hash_file(Path(path)).crc32c


def md5_of_file(path: str | Path) -> str:
    """Hex md5 of a local file, read in chunks."""
    md5 = _hash_file(Path(path), md5=True).md5
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


def _md5_b64_to_hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


# --------------------------------------------------------------------------------------------- URIs


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for a gs:// URI, False for a local path (or file:// URI)."""
    return str(uri).startswith("gs://")


def _local_path(uri: str | os.PathLike[str]) -> Path:
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
        return str(_local_path(uri).joinpath(*parts))
    out = str(uri).rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def _normalise_suffixes(suffixes: Iterable[str] | None) -> tuple[str, ...] | None:
    if suffixes is None:
        return None
    return tuple("." + s.lower().lstrip(".") for s in suffixes)


def _matches(name: str, suffixes: tuple[str, ...] | None) -> bool:
    return suffixes is None or name.lower().endswith(suffixes)


# --------------------------------------------------------------------------------------------- backends


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


class LocalStorage:
    """Local files; `generation` is the modification time in ns, checksums are computed on demand."""

    scheme = "file"

    def stat(self, uri: str, *, checksum: bool = True) -> FileInfo:
        """Size, crc32c (when `checksum`) and mtime generation of a local file."""
        path = _local_path(uri)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri}: no such file") from None
        if not path.is_file():
            raise FileNotFoundError(f"{uri}: not a regular file")
        crc = crc32c_of_file(path) if checksum else None
        return FileInfo(uri=str(uri), size=st.st_size, crc32c=crc, md5=None, generation=st.st_mtime_ns)

    def exists(self, uri: str) -> bool:
        """Whether the path exists (file or directory)."""
        return _local_path(uri).exists()

    def list_files(self, prefix: str, suffixes: tuple[str, ...] | None, *, checksum: bool) -> list[FileInfo]:
        """Every regular file under a directory, recursively (hidden files skipped), sorted by path."""
        root = _local_path(prefix)
        if not root.is_dir():
            raise FileNotFoundError(f"{prefix}: not a directory")
        out = []
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            if _matches(path.name, suffixes):
                out.append(self.stat(str(path), checksum=checksum))
        return out

    def read_bytes(self, uri: str) -> bytes:
        """The file's bytes."""
        return _local_path(uri).read_bytes()

    def _atomic_write(self, uri: str, write: Any) -> None:
        path = _local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write via a temporary name in the same directory, then os.replace."""
        self._atomic_write(uri, lambda fh: fh.write(data))

    def put_file(self, local_path: Path, uri: str) -> None:
        """Copy via a temporary name in the same directory, then os.replace."""

        def copy(fh: IO[bytes]) -> None:
            with open(local_path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    fh.write(chunk)

        if Path(local_path).resolve() == _local_path(uri).resolve():
            return
        self._atomic_write(uri, copy)

    def download(self, info: FileInfo, dest: IO[bytes]) -> None:
        """Copy the local file's bytes to `dest`."""
        with open(_local_path(info.uri), "rb") as src:
            while chunk := src.read(_CHUNK):
                dest.write(chunk)


class GCSStorage:
    """gs:// via google-cloud-storage; with STORAGE_EMULATOR_HOST set: anonymous client, project "test"."""

    scheme = "gs"

    def __init__(self, client: Any = None) -> None:
        self._client = client
        self._clients: dict[tuple[int, str | None], Any] = {}
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The google.cloud.storage Client: the one passed in, else one per process and emulator host."""
        if self._client is not None:
            return self._client
        # Keyed by pid too: a client (and its sockets) inherited through fork must not be shared by
        # worker processes.
        key = (os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST") or None)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = _make_client(key[1])
            return self._clients[key]

    def _blob(self, uri: str, generation: int | None = None) -> Any:
        bucket, name = split_gs(uri)
        if not name:
            raise ValueError(f"{uri!r} names a bucket, not an object; write gs://{bucket}/<object>")
        return self.client().bucket(bucket).blob(name, generation=generation)

    @staticmethod
    def _info(bucket: str, blob: Any) -> FileInfo:
        return FileInfo(
            uri=f"gs://{bucket}/{blob.name}",
            size=int(blob.size or 0),
            crc32c=blob.crc32c,
            md5=_md5_b64_to_hex(blob.md5_hash),
            generation=int(blob.generation) if blob.generation is not None else None,
        )

    def stat(self, uri: str, *, checksum: bool = True) -> FileInfo:
        """Object metadata (size, crc32c, md5, generation): one metadata request, no download."""
        bucket, name = split_gs(uri)
        blob = self.client().bucket(bucket).get_blob(name)
        if blob is None:
            raise FileNotFoundError(f"{uri}: no such object")
        return self._info(bucket, blob)

    def exists(self, uri: str) -> bool:
        """Whether the object exists, or any object lies under `uri/` (a 'directory')."""
        bucket, name = split_gs(uri)
        b = self.client().bucket(bucket)
        if name and b.get_blob(name) is not None:
            return True
        prefix = name.rstrip("/") + "/" if name else ""
        return any(True for _ in self.client().list_blobs(bucket, prefix=prefix, max_results=1))

    def list_files(self, prefix: str, suffixes: tuple[str, ...] | None, *, checksum: bool) -> list[FileInfo]:
        """Every object under `prefix/` with its bucket-reported checksums (listing returns them)."""
        bucket, name = split_gs(prefix)
        pfx = name.rstrip("/") + "/" if name else ""
        out = []
        for blob in self.client().list_blobs(bucket, prefix=pfx):
            if blob.name.endswith("/"):  # "folder" placeholder objects some tools create
                continue
            if _matches(blob.name.rsplit("/", 1)[-1], suffixes):
                out.append(self._info(bucket, blob))
        return sorted(out, key=lambda f: f.uri)

    def read_bytes(self, uri: str) -> bytes:
        """Download a whole (small) object into memory."""
        from google.api_core.exceptions import NotFound

        try:
            return self._blob(uri).download_as_bytes()
        except NotFound:
            raise FileNotFoundError(f"{uri}: no such object") from None

    def put_bytes(self, uri: str, data: bytes) -> None:
        """One upload request: GCS makes the object visible only once it is complete."""
        self._blob(uri).upload_from_string(data, checksum="crc32c")

    def put_file(self, local_path: Path, uri: str) -> None:
        """Upload a file; single or resumable upload, either way the object appears only when complete."""
        self._blob(uri).upload_from_filename(str(local_path), checksum="crc32c")

    def download(self, info: FileInfo, dest: IO[bytes]) -> None:
        """Stream that generation of the object to `dest` (g2l verifies the bytes itself afterwards)."""
        from google.api_core.exceptions import NotFound

        blob = self._blob(info.uri, generation=info.generation)
        try:
            self.client().download_blob_to_file(blob, dest, checksum=None)
        except NotFound:
            raise FileNotFoundError(f"{info.uri} (generation {info.generation}): no such object") from None


def _make_client(emulator: str | None) -> Any:
    try:
        from google.cloud import storage as gcs
    except ImportError as exc:  # pragma: no cover - a dependency of g2l
        raise StorageError(f"gs:// URIs need google-cloud-storage; {_INSTALL_HINT}") from exc
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project="test", credentials=AnonymousCredentials())
    if os.environ.get("G2L_GCS_ANONYMOUS") == "1":
        return gcs.Client.create_anonymous_client()
    try:
        return gcs.Client()
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise StorageError(
            f"cannot create a GCS client ({exc}); run `gcloud auth application-default login`, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or set G2L_GCS_ANONYMOUS=1 for public buckets"
        ) from exc


_LOCAL = LocalStorage()
_GCS = GCSStorage()
BACKENDS: dict[str, Storage] = {"file": _LOCAL, "gs": _GCS}


def backend_for(uri: str | os.PathLike[str]) -> Storage:
    """The backend for a URI's scheme: gs:// -> GCSStorage, anything else -> LocalStorage."""
    return BACKENDS["gs" if is_remote(uri) else "file"]


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
    return backend_for(prefix).list_files(str(prefix), _normalise_suffixes(suffixes), checksum=checksum)


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
        path = _local_path(uri)
        if expected is None:
            info = LocalStorage().stat(uri, checksum=False)
        else:
            hasher = _hash_file(path, md5=expected[0] == "md5")
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

    def verified(hasher: _Hasher) -> bool:
        if hasher.size != info.size:
            return False
        return hasher.crc32c == info.crc32c if info.crc32c else hasher.md5 == info.md5

    # One stager per object downloads at a time; the others wait, then find the verified file.
    with _locked(final.parent / ".lock"):
        if final.is_file():
            if not verify_cached:
                if final.stat().st_size == info.size:
                    return StageResult(path=final, info=info, downloaded=False)
            elif verified(_hash_file(final, md5=want_md5)):
                return StageResult(path=final, info=info, downloaded=False)
            # A cached copy that fails verification (disk error, someone wrote to it) is replaced.
            final.unlink()
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        try:
            hasher = _Hasher(md5=want_md5)
            with open(tmp, "wb") as fh:
                backend.download(info, _HashingWriter(fh, hasher))  # type: ignore[arg-type]
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
