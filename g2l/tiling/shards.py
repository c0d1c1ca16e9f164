"""Deterministic tar writing and the global WebDataset shards + index built from per-slide tile tars."""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from g2l.tiling.config import TilingConfig
from g2l.tiling.outputs import OutputRoot, canonical_json, shard_set_sha256

SHARD_NAME = "shard-{:06d}.tar"


BLOCK = 512
RECORD = 20 * BLOCK  # tar's default record size; archives are padded to a multiple of it
#: Tiles whose shard members are joined into one write (and one hash update) while packing.
PACK_BATCH = 64


def _ustar_template() -> tuple[bytes, int]:
    """A USTAR header with every field but name, size and checksum filled in, and its byte sum."""
    header = bytearray(BLOCK)
    header[100:108] = b"0000644\0"
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[136:148] = b"00000000000\0"
    header[148:156] = b"        "  # checksum field counts as spaces while summing
    header[156:157] = b"0"
    header[257:265] = b"ustar\x0000"
    return bytes(header), sum(header)


_USTAR, _USTAR_SUM = _ustar_template()


def _header(name: str, size: int) -> bytes:
    """Tar header(s) for a regular file that depend only on name and size (mtime 0, uid/gid 0, 0o644).

    Short names get a plain USTAR header filled into a prebuilt template, its checksum the template's
    plus that of the two fields that vary (tarfile's generic path costs ~0.2 ms a member, which shows at
    thousands of tiles per second); long names go through tarfile's PAX encoder.
    """
    encoded = name.encode()
    if len(encoded) > 100 or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    size_field = b"%011o\0" % size
    header = bytearray(_USTAR)
    header[0 : len(encoded)] = encoded
    header[124:136] = size_field
    header[148:155] = b"%06o\0" % (_USTAR_SUM + sum(encoded) + sum(size_field))
    return bytes(header)


def tar_member(name: str, data: bytes) -> bytes:
    """One regular-file member as DeterministicTar writes it: header(s), the data, zero padding."""
    return b"".join((_header(name, len(data)), data, bytes(-len(data) % BLOCK)))


class DeterministicTar:
    """Append-only tar writer whose bytes depend only on the members' names and contents."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._out = fileobj
        self._written = 0
        self.count = 0

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._written += len(data)

    def add(self, name: str, data: bytes) -> None:
        """Append one member."""
        # One write (and one hash update) per member: three small ones cost more than the copy.
        self._write(tar_member(name, data))
        self.count += 1

    def add_members(self, members: bytes, count: int) -> None:
        """Append `count` members already framed by `tar_member` (made off the writing thread)."""
        self._write(members)
        self.count += count

    def close(self) -> None:
        """Write the end-of-archive blocks and pad to a whole record."""
        end = self._written + 2 * BLOCK
        self._write(b"\0" * (2 * BLOCK + (-end) % RECORD))


class HashingWriter:
    """A binary file wrapper that hashes and counts what goes through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Write and hash `data` (all of it, also through an unbuffered handle's partial writes)."""
        view = memoryview(data)
        while view:
            written = self._handle.write(view)
            if written is None:  # a non-blocking handle that would block: never a tar's file
                raise BlockingIOError("tar write would block")
            view = view[written:]
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        """Bytes written so far (tarfile asks)."""
        return self.size


class TarWriter:
    """A tar written to a scratch file that becomes `rel` under the root on `commit` (atomically)."""

    def __init__(self, root: OutputRoot, rel: str) -> None:
        self._stack = contextlib.ExitStack()
        path = self._stack.enter_context(root.writer(rel))
        # Unbuffered: members come in batches of ~100 KB or more (a tile task's, a shard's 64 tiles), and a
        # buffer would only add a copy made while holding the GIL; the kernel copies without it.
        self._handle = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in commit/abort
        self._hasher = HashingWriter(self._handle)
        self._tar = DeterministicTar(self._hasher)  # type: ignore[arg-type]

    def add(self, name: str, data: bytes) -> None:
        """Append one member."""
        self._tar.add(name, data)

    def add_members(self, members: bytes, count: int) -> None:
        """Append `count` members framed by `tar_member`."""
        self._tar.add_members(members, count)

    def commit(self) -> str:
        """Close the tar, move it into place, and return its sha256."""
        self._tar.close()
        self._handle.close()
        self._stack.close()
        return self._hasher.sha256.hexdigest()

    def abort(self) -> None:
        """Drop the partial tar (its scratch file is removed, nothing is published)."""
        self._handle.close()
        self._stack.__exit__(RuntimeError, RuntimeError("tar aborted"), None)


class _ShardWriter:
    """One shard being written to a scratch file that becomes `shards/<name>` on `finish`."""

    def __init__(self, root: OutputRoot, name: str) -> None:
        self.name = name
        self.n_tiles = 0
        self._tar = TarWriter(root, f"shards/{name}")

    def add(self, name: str, data: bytes) -> None:
        """Append one member."""
        self._tar.add(name, data)

    def add_members(self, members: bytes, count: int) -> None:
        """Append `count` members framed by `tar_member`."""
        self._tar.add_members(members, count)

    def finish(self) -> dict[str, Any]:
        """Close the tar, move it into place, and return its index entry."""
        return {"name": self.name, "n_tiles": self.n_tiles, "sha256": self._tar.commit()}

    def abort(self) -> None:
        """Drop the partial shard (its scratch file is removed, nothing is published)."""
        self._tar.abort()


def iter_tar(path: str | Path, *, start: int = 0) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular member of a tar that DeterministicTar wrote, in order, streaming.

    Parses the headers directly (USTAR, plus PAX `path` records for long names): tarfile's generic
    reader costs more per member than the rest of shard packing together. The first `start` regular
    members are skipped without reading their data.
    """
    for name, member, offset in iter_tar_members(path, start=start):
        header = member[offset - BLOCK : offset]
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        yield name, member[offset : offset + size]


def iter_tar_members(path: str | Path, *, start: int = 0) -> Iterator[tuple[str, bytes, int]]:
    """(name, framed member, data offset) of every regular member, in order, streaming.

    The framed member is the member's bytes exactly as they sit in the tar (PAX header if any, USTAR
    header, data, zero padding): appended to another DeterministicTar it is that member, so packing
    shards copies tiles without re-framing them. The data starts at `data offset` within it.
    """
    with open(path, "rb", buffering=1 << 20) as handle:
        long_name: str | None = None
        pax = b""
        skipped = 0
        while True:
            header = handle.read(BLOCK)
            if len(header) < BLOCK or header == bytes(BLOCK):
                return
            size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
            kind = header[156:157]
            padded = size + (-size % BLOCK)
            if skipped < start and kind in (b"0", b"\0"):
                handle.seek(padded, 1)
                skipped += 1
                long_name, pax = None, b""
                continue
            body = handle.read(padded)
            if kind == b"x":  # PAX extended header: "<len> key=value\n" records
                for record in body[:size].decode("utf-8", "surrogateescape").splitlines():
                    key, _, value = record.partition(" ")[2].partition("=")
                    if key == "path":
                        long_name = value
                pax = header + body
                continue
            if kind not in (b"0", b"\0"):
                raise ValueError(f"{path}: unexpected tar member type {kind!r}; re-tile the slide")
            name = long_name if long_name is not None else header[0:100].rstrip(b"\0").decode()
            yield name, pax + header + body, len(pax) + BLOCK
            long_name, pax = None, b""


def tile_key(slide_id: str, x: int, y: int) -> str:
    """The tile key `<slide_id>_<x>_<y>` (docs/contracts.md)."""
    return f"{slide_id}_{x}_{y}"


class TileRecords:
    """The `.json` member of each of one slide's tiles: sorted keys, compact, exactly as json.dumps makes it.

    The slide's strings are JSON-encoded once; per tile only numbers are formatted (json.dumps costs
    ~5 us a tile, a tenth of packing a tile into a shard).
    """

    def __init__(self, slide_id: str, site: str) -> None:
        self._slide = json.dumps(slide_id)
        self._site = json.dumps(site)

    def json(self, x: int, y: int, size0: int, tissue: float) -> bytes:
        """{"site", "size0", "slide_id", "tissue" (4 decimals), "x", "y"} as compact JSON bytes."""
        return (
            f'{{"site":{self._site},"size0":{size0},"slide_id":{self._slide},'
            f'"tissue":{float(round(tissue, 4))!r},"x":{x},"y":{y}}}'
        ).encode()


def _shard_plan(counts: list[int], per_shard: int) -> list[list[tuple[int, int, int]]]:
    """For each shard, its runs of tiles in order: (slide index, first tile, end tile)."""
    plan: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    filled = 0
    for index, n in enumerate(counts):
        start = 0
        while start < n:
            take = min(n - start, per_shard - filled)
            current.append((index, start, start + take))
            filled, start = filled + take, start + take
            if filled == per_shard:
                plan.append(current)
                current, filled = [], 0
    if current:
        plan.append(current)
    return plan


def _pack_run(
    root: OutputRoot,
    writer: _ShardWriter,
    slide_id: str,
    site: str,
    meta: dict[str, Any],
    start: int,
    end: int,
) -> None:
    """Append tiles start..end-1 of one slide (its tiles.tar members with their .json records)."""
    import pyarrow.parquet as pq  # here, not at import: `g2l tile` needs it only once slides are done

    with root.local_copy(f"tiles/{slide_id}/coords.parquet") as coords_path:
        # ParquetFile, not read_table: no pyarrow.dataset import (~0.1 s) and a third of the time.
        coords = pq.ParquetFile(coords_path).read().to_pydict()
    if len(coords["x"]) != int(meta.get("n_tiles") or 0):
        raise RuntimeError(
            f"tiles/{slide_id}/coords.parquet has {len(coords['x'])} rows but meta.json says "
            f"{meta.get('n_tiles')} tiles; delete tiles/{slide_id}/meta.json and rerun to re-tile the slide"
        )
    records = TileRecords(slide_id, site)
    xs, ys, sizes, tissue = coords["x"], coords["y"], coords["size0"], coords["tissue"]
    parts: list[bytes] = []
    with root.local_copy(f"tiles/{slide_id}/tiles.tar") as tar_path:
        members = iter_tar_members(tar_path, start=start)
        for i in range(start, end):
            x, y = int(xs[i]), int(ys[i])
            key = tile_key(slide_id, x, y)
            name, member, _ = next(members, ("<missing>", b"", 0))
            if name != f"{key}.jpg":
                raise RuntimeError(
                    f"tiles/{slide_id}/tiles.tar member {i} is {name}, expected {key}.jpg; "
                    f"delete tiles/{slide_id}/meta.json and rerun to re-tile the slide"
                )
            # The tile's member is copied as framed in tiles.tar: same name, same bytes, same header.
            parts.append(member)
            parts.append(tar_member(f"{key}.json", records.json(x, y, int(sizes[i]), float(tissue[i]))))
            if len(parts) >= 2 * PACK_BATCH:
                writer.add_members(b"".join(parts), len(parts))
                parts = []
        if parts:
            writer.add_members(b"".join(parts), len(parts))
    writer.n_tiles += end - start


def build_shards(
    root: OutputRoot,
    slides: list[tuple[str, str, dict[str, Any]]],
    config: TilingConfig,
    manifest_sha256: str,
    manifest_origin: dict[str, str] | None = None,
    *,
    workers: int = 1,
) -> dict[str, Any]:
    """Pack the ok slides' tiles (manifest order, coords order) into shards; idempotent; returns the index.

    `slides` is [(slide_id, site, meta)]. JPEG bytes are copied from each slide's tiles.tar, never
    re-encoded. The index records a hash of its inputs, so a rerun with the same inputs is a no-op.
    `manifest_origin` ({uri[, rev, repo]}) is recorded as `manifest`, the lineage the student carries.
    Up to `workers` shards are written at once; the bytes do not depend on it.
    """
    source = {
        "manifest_sha256": manifest_sha256,
        "tiles_per_shard": config.tiles_per_shard,
        "slides": [[sid, site, meta.get("tiles_sha256"), meta.get("n_tiles")] for sid, site, meta in slides],
    }
    source_sha256 = hashlib.sha256(canonical_json(source)).hexdigest()
    existing = root.read_json("shards/index.json")
    if isinstance(existing, dict) and existing.get("source_sha256") == source_sha256:
        names = set(root.list_names("shards"))
        if all(s["name"] in names for s in existing.get("shards", [])):
            return existing
    root.clean_stale_temps("shards")

    def write_shard(number: int, runs: list[tuple[int, int, int]]) -> dict[str, Any]:
        writer = _ShardWriter(root, SHARD_NAME.format(number))
        try:
            for index, start, end in runs:
                _pack_run(root, writer, *slides[index], start, end)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    # Each shard's tiles are known from the slides' tile counts, so shards are written side by side (a tar
    # and its sha256 are a serial stream each): the pack at the end of a run keeps every core busy.
    plan = _shard_plan([int(meta.get("n_tiles") or 0) for _, _, meta in slides], config.tiles_per_shard)
    with ThreadPoolExecutor(max(1, min(workers, len(plan) or 1)), thread_name_prefix="g2l-shards") as pool:
        shards = list(pool.map(write_shard, range(len(plan)), plan))

    keep = {s["name"] for s in shards}
    for stale in root.list_names("shards"):
        if stale.startswith("shard-") and stale.endswith(".tar") and stale not in keep:
            root.remove(f"shards/{stale}")
    index = {
        "shards": shards,
        "n_tiles": sum(s["n_tiles"] for s in shards),
        "tile_px": config.tile_px,
        "target_mpp": config.target_mpp,
        "tiles_per_shard": config.tiles_per_shard,
        "manifest_sha256": manifest_sha256,
        "sha256": shard_set_sha256(shards),
        "source_sha256": source_sha256,
        "slides": [sid for sid, _, meta in slides if meta.get("n_tiles")],
    }
    if manifest_origin:
        index["manifest"] = {**manifest_origin, "sha256": manifest_sha256}
    root.write_json("shards/index.json", index)
    return index
