"""Local files as a storage backend: atomic writes by temporary name and os.replace."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO, Any

from g2l.storage.base import CHUNK, FileInfo
from g2l.storage.checksums import crc32c_of_file
from g2l.storage.uris import local_path, matches


class LocalStorage:
    """Local files; `generation` is the modification time in ns, checksums are computed on demand."""

    scheme = "file"

    def stat(self, uri: str, *, checksum: bool = True) -> FileInfo:
        """Size, crc32c (when `checksum`) and mtime generation of a local file."""
        path = local_path(uri)
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
        return local_path(uri).exists()

    def list_files(self, prefix: str, suffixes: tuple[str, ...] | None, *, checksum: bool) -> list[FileInfo]:
        """Every regular file under a directory, recursively (hidden files skipped), sorted by path."""
        root = local_path(prefix)
        if not root.is_dir():
            raise FileNotFoundError(f"{prefix}: not a directory")
        out = []
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            if matches(path.name, suffixes):
                out.append(self.stat(str(path), checksum=checksum))
        return out

    def read_bytes(self, uri: str) -> bytes:
        """The file's bytes."""
        return local_path(uri).read_bytes()

    def _atomic_write(self, uri: str, write: Any) -> None:
        path = local_path(uri)
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

    def put_file(self, source: Path, uri: str) -> None:
        """Copy via a temporary name in the same directory, then os.replace."""

        def copy(fh: IO[bytes]) -> None:
            with open(source, "rb") as src:
                while chunk := src.read(CHUNK):
                    fh.write(chunk)

        if Path(source).resolve() == local_path(uri).resolve():
            return
        self._atomic_write(uri, copy)

    def download(self, info: FileInfo, dest: IO[bytes]) -> None:
        """Copy the local file's bytes to `dest`."""
        with open(local_path(info.uri), "rb") as src:
            while chunk := src.read(CHUNK):
                dest.write(chunk)
