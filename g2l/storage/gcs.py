"""gs:// through google-cloud-storage (or the emulator at STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO, Any

from g2l.storage.base import INSTALL_HINT, FileInfo, StorageError
from g2l.storage.checksums import md5_b64_to_hex
from g2l.storage.uris import matches, split_gs


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
            md5=md5_b64_to_hex(blob.md5_hash),
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
            if matches(blob.name.rsplit("/", 1)[-1], suffixes):
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
        raise StorageError(f"gs:// URIs need google-cloud-storage; {INSTALL_HINT}") from exc
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
