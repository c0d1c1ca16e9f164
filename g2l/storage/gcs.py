"""gs:// through google-cloud-storage (or the emulator at STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from g2l.storage.base import INSTALL_HINT, FileInfo, StorageAccessError, StorageError, StorageUnreachableError
from g2l.storage.checksums import md5_b64_to_hex
from g2l.storage.gcs_retry import (
    CONNECT_BUDGET_S,
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    EndpointHealth,
    call_retry,
    is_connection_error,
)
from g2l.storage.uris import matches, split_gs


class GCSStorage:
    """gs:// via google-cloud-storage; with STORAGE_EMULATOR_HOST set: anonymous client, project "test".

    Every call retries server errors with the library's policy and connection errors for
    `connect_budget_s` only (g2l.storage.gcs_retry); an endpoint that cannot be reached raises
    `StorageUnreachableError`, missing or rejected credentials `StorageAccessError`.
    """

    scheme = "gs"

    def __init__(self, client: Any = None, *, connect_budget_s: float = CONNECT_BUDGET_S) -> None:
        self._client = client
        self._clients: dict[tuple[int, str | None], Any] = {}
        self._lock = threading.Lock()
        self._health = EndpointHealth()
        self._connect_budget_s = connect_budget_s

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

    def _options(self) -> dict[str, Any]:
        """retry= and timeout= for one request (a fresh connection budget per call)."""
        return {
            "retry": call_retry(self._health, self._connect_budget_s),
            "timeout": (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        }

    def _endpoint(self) -> str:
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            return f"{emulator} (STORAGE_EMULATOR_HOST)"
        try:
            return str(self.client().api_endpoint)
        except Exception:  # noqa: BLE001 - only for the message
            return "https://storage.googleapis.com"

    @contextlib.contextmanager
    def _errors(self, uri: str) -> Iterator[None]:
        """Turn the client's exceptions into g2l's: unreachable, no access, or a message with the fix."""
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions

        started = time.monotonic()
        try:
            yield
        except (StorageError, FileNotFoundError):
            raise
        except api_exceptions.Unauthorized as exc:
            raise StorageAccessError(
                f"{uri}: the storage endpoint rejected the credentials ({_short(exc)}); {CREDENTIALS_FIX}"
            ) from None
        except auth_exceptions.GoogleAuthError as exc:
            if is_connection_error(exc):
                self._health.mark_down()
                raise self._unreachable(uri, exc, started) from None
            raise StorageAccessError(
                f"{uri}: no usable credentials ({_short(exc)}); {CREDENTIALS_FIX}"
            ) from None
        except api_exceptions.Forbidden as exc:
            raise StorageError(
                f"{uri}: permission denied ({_short(exc)}); give the account these credentials belong to "
                "access to the bucket, or use other credentials"
            ) from None
        except api_exceptions.RetryError as exc:
            raise StorageError(
                f"{uri}: the storage endpoint kept failing for 120 s ({_short(exc)}); retry later"
            ) from None
        except Exception as exc:
            if is_connection_error(exc):
                self._health.mark_down()
                raise self._unreachable(uri, exc, started) from None
            raise
        else:
            self._health.mark_up()

    def _unreachable(self, uri: str, exc: BaseException, started: float) -> StorageUnreachableError:
        return StorageUnreachableError(
            f"cannot reach the storage endpoint {self._endpoint()} for {uri} ({_short(exc)}; gave up after "
            f"{time.monotonic() - started:.0f} s); check the network, the endpoint and any proxy, then run "
            "the same command again: finished work is kept and the run resumes"
        )

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
            md5=md5_b64_to_hex(blob.md5_hash),
            generation=int(blob.generation) if blob.generation is not None else None,
        )

    def stat(self, uri: str, *, checksum: bool = True) -> FileInfo:
        """Object metadata (size, crc32c, md5, generation): one metadata request, no download."""
        bucket, name = split_gs(uri)
        with self._errors(uri):
            blob = self.client().bucket(bucket).get_blob(name, **self._options())
        if blob is None:
            raise FileNotFoundError(f"{uri}: no such object")
        return self._info(bucket, blob)

    def exists(self, uri: str) -> bool:
        """Whether the object exists, or any object lies under `uri/` (a 'directory')."""
        bucket, name = split_gs(uri)
        with self._errors(uri):
            b = self.client().bucket(bucket)
            if name and b.get_blob(name, **self._options()) is not None:
                return True
            prefix = name.rstrip("/") + "/" if name else ""
            blobs = self.client().list_blobs(bucket, prefix=prefix, max_results=1, **self._options())
            return any(True for _ in blobs)

    def list_files(self, prefix: str, suffixes: tuple[str, ...] | None, *, checksum: bool) -> list[FileInfo]:
        """Every object under `prefix/` with its bucket-reported checksums (listing returns them)."""
        bucket, name = split_gs(prefix)
        pfx = name.rstrip("/") + "/" if name else ""
        out = []
        with self._errors(prefix):
            for blob in self.client().list_blobs(bucket, prefix=pfx, **self._options()):
                if blob.name.endswith("/"):  # "folder" placeholder objects some tools create
                    continue
                if matches(blob.name.rsplit("/", 1)[-1], suffixes):
                    out.append(self._info(bucket, blob))
        return sorted(out, key=lambda f: f.uri)

    def read_bytes(self, uri: str) -> bytes:
        """Download a whole (small) object into memory."""
        from google.api_core.exceptions import NotFound

        try:
            with self._errors(uri):
                return bytes(self._blob(uri).download_as_bytes(**self._options()))
        except NotFound:
            raise FileNotFoundError(f"{uri}: no such object") from None

    def put_bytes(self, uri: str, data: bytes) -> None:
        """One upload request: GCS makes the object visible only once it is complete."""
        # Retried unconditionally: re-sending the same whole object is harmless (no generation match).
        with self._errors(uri):
            self._blob(uri).upload_from_string(data, checksum="crc32c", **self._options())

    def put_file(self, local_path: Path, uri: str) -> None:
        """Upload a file; single or resumable upload, either way the object appears only when complete."""
        with self._errors(uri):
            self._blob(uri).upload_from_filename(str(local_path), checksum="crc32c", **self._options())

    def download(self, info: FileInfo, dest: IO[bytes]) -> None:
        """Stream that generation of the object to `dest` (g2l verifies the bytes itself afterwards)."""
        from google.api_core.exceptions import NotFound

        blob = self._blob(info.uri, generation=info.generation)
        try:
            with self._errors(info.uri):
                self.client().download_blob_to_file(blob, dest, checksum=None, **self._options())
        except NotFound:
            raise FileNotFoundError(f"{info.uri} (generation {info.generation}): no such object") from None


CREDENTIALS_FIX = (
    "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or set "
    "G2L_GCS_ANONYMOUS=1 for public buckets"
)


def _short(exc: BaseException) -> str:
    """A one-line reason; for a connection error the innermost one ("[Errno 111] Connection refused")."""
    inner: BaseException = exc
    for _ in range(6):  # requests -> urllib3 MaxRetryError -> NewConnectionError -> OSError
        nxt = getattr(inner, "reason", None) or (inner.args[0] if inner.args else None)
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    text = " ".join(str(inner).split()) or type(inner).__name__
    if inner is not exc and ": " in text and "Errno" in text:
        text = text[text.index("[Errno") :] if "[Errno" in text else text
    return f"{type(inner).__name__}: {text[:240]}"


def _make_client(emulator: str | None) -> Any:
    try:
        from google.cloud import storage as gcs
    except ImportError as exc:  # pragma: no cover - a dependency of g2l
        raise StorageError(f"gs:// URIs need google-cloud-storage; {INSTALL_HINT}") from exc
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project="test", credentials=AnonymousCredentials())
    if os.environ.get("G2L_GCS_ANONYMOUS") == "1":
        return gcs.Client.create_anonymous_client()
    try:
        return gcs.Client()
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise StorageAccessError(f"cannot create a GCS client ({exc}); {CREDENTIALS_FIX}") from exc
