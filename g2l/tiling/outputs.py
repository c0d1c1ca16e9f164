"""The artifact root as the tiling stage sees it: atomic, write-if-changed files, local or gs://."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def canonical_json(obj: Any) -> bytes:
    """Stable JSON bytes (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(obj, sort_keys=True, indent=2, default=str) + "\n").encode()


def shard_set_sha256(entries: list[dict[str, Any]]) -> str:
    """The tile set's identity, the shard index's `sha256`: sha256 of the entries' compact sorted JSON.

    Written here by tiling and recomputed (not read) by embed and the audit, so a doctored index.json
    cannot vouch for itself; one definition for writer and readers.
    """
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_remote(uri: str) -> bool:
    return uri.startswith("gs://")


class OutputRoot:
    """Files under an artifact root; every write is atomic (temp name + rename, or one object upload)."""

    def __init__(self, uri: str | Path) -> None:
        self.uri = str(uri).rstrip("/") if _is_remote(str(uri)) else str(Path(uri))
        self.remote = _is_remote(self.uri)

    def join(self, rel: str) -> str:
        """The full URI or path of `rel` under the root."""
        return f"{self.uri}/{rel}" if self.remote else str(Path(self.uri) / rel)

    def check_writable(self) -> None:
        """Create a local root and prove a file can be written there, else `TilingInputError` with the fix.

        gs:// roots are checked by their first write (a bucket's permissions are only known by trying).
        """
        if self.remote:
            return
        from g2l.tiling.errors import TilingInputError

        path = Path(self.uri)
        blocker = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            where = "is a file" if blocker == path else f"is under {blocker}, which is a file"
            raise TilingInputError(
                f"output root {path} {where}, not a directory; give a directory (it is created if missing)"
            )
        probe = path / f".g2l-write-check{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TilingInputError(
                f"output root {path} cannot be written ({reason}); choose a directory you can write to, "
                "or fix its permissions or mount"
            ) from None

    def exists(self, rel: str) -> bool:
        """Whether `rel` exists under the root."""
        if self.remote:
            from g2l import storage

            return storage.exists(self.join(rel))
        return Path(self.join(rel)).exists()

    def read_bytes(self, rel: str) -> bytes | None:
        """The bytes of `rel`, or None when it does not exist."""
        if self.remote:
            from g2l import storage

            if not storage.exists(self.join(rel)):
                return None
            return storage.read_bytes(self.join(rel))
        path = Path(self.join(rel))
        return path.read_bytes() if path.exists() else None

    def read_json(self, rel: str) -> Any | None:
        """Parsed JSON of `rel`, or None when missing or unreadable (an interrupted foreign write)."""
        data = self.read_bytes(rel)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def write_bytes(self, rel: str, data: bytes, *, only_if_changed: bool = True) -> bool:
        """Atomically write `data` to `rel`; with `only_if_changed`, identical content is left untouched."""
        if only_if_changed and self.read_bytes(rel) == data:
            return False
        if self.remote:
            from g2l import storage

            storage.put_bytes(self.join(rel), data)
            return True
        path = Path(self.join(rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def write_json(self, rel: str, obj: Any) -> bool:
        """Write canonical JSON if the content changed; returns whether it was written."""
        return self.write_bytes(rel, canonical_json(obj))

    @contextlib.contextmanager
    def writer(self, rel: str) -> Iterator[Path]:
        """Yield a local scratch path; on clean exit it becomes `rel` atomically (rename or upload)."""
        if self.remote:
            with tempfile.TemporaryDirectory(prefix="g2l-out-") as scratch:
                local = Path(scratch) / Path(rel).name
                yield local
                from g2l import storage

                storage.put_file(local, self.join(rel))
            return
        path = Path(self.join(rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def local_copy(self, rel: str) -> Iterator[Path]:
        """A local path holding the bytes of `rel` for reading (the file itself when the root is local)."""
        if not self.remote:
            yield Path(self.join(rel))
            return
        from g2l import storage

        uri = self.join(rel)
        with tempfile.TemporaryDirectory(prefix="g2l-in-") as scratch:
            local = Path(scratch) / Path(rel).name
            with open(local, "wb") as handle:  # streamed: a slide's tiles.tar can be hundreds of MB
                storage.backend_for(uri).download(storage.stat(uri, checksum=False), handle)
            yield local

    def remove(self, rel: str) -> None:
        """Delete `rel` if it exists (local roots only; remote stale objects are left alone)."""
        if not self.remote:
            Path(self.join(rel)).unlink(missing_ok=True)

    def list_names(self, rel_dir: str) -> list[str]:
        """File names directly under `rel_dir`."""
        if self.remote:
            from g2l import storage

            prefix = self.join(rel_dir).rstrip("/") + "/"
            return sorted(
                info.uri[len(prefix) :]
                for info in storage.list_files(prefix)
                if "/" not in info.uri[len(prefix) :]
            )
        path = Path(self.join(rel_dir))
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []

    def clean_stale_temps(self, rel_dir: str) -> None:
        """Remove temp files a killed run left in a local directory (remote uploads leave none)."""
        if self.remote:
            return
        path = Path(self.join(rel_dir))
        if path.is_dir():
            for stale in path.glob(f".*{TMP_MARK}*"):
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
