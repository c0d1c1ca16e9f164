"""Training data: tiles read straight from the WebDataset shards, views regenerated, teacher targets paired.

The order of samples is a pure function of (seed, epoch) and the position inside the epoch, so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen, and the
split of a global batch across ranks does not depend on the number of ranks (rank r, micro-batch m
takes chunk r * accum + m), so 1 process with accumulation equals N processes without.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from g2l.config import require


def _read_index(shards: str) -> dict[str, Any]:
    """shards/index.json, local or gs://."""
    if shards.startswith("gs://"):
        from g2l import storage  # lazy: local runs need no cloud client

        uri = storage.join(shards, "index.json")
        require(storage.exists(uri), f"{uri} not found: --shards must be ROOT/shards written by `g2l tile`")
        return dict(json.loads(storage.read_text(uri)))
    index_file = Path(shards) / "index.json"
    require(
        index_file.exists(), f"{index_file} not found: --shards must be ROOT/shards written by `g2l tile`"
    )
    return dict(json.loads(index_file.read_text()))


def _shard_path(shards: str, entry: dict[str, Any]) -> Path:
    """Local path of one shard; gs:// shards are staged (downloaded once, checksum-verified)."""
    if shards.startswith("gs://"):
        from g2l import storage

        return Path(storage.stage(storage.join(shards, entry["name"])))
    return Path(shards) / entry["name"]


def slide_of(tile_key: str) -> str:
    """The slide id of a tile key `<slide>_<x>_<y>`."""
    return tile_key.rsplit("_", 2)[0]


@dataclasses.dataclass(frozen=True)
class TileIndex:
    """Where every tile's JPEG lives inside the shards: (shard, byte offset, size), in shard order."""

    root: str  # the --shards location as given (local path or gs:// prefix)
    shard_paths: tuple[Path, ...]
    keys: tuple[str, ...]
    shard: np.ndarray  # int32 [n]: index into shard_paths
    row: np.ndarray  # int32 [n]: position of the tile inside its shard (= its row in the cache part)
    offset: np.ndarray  # int64 [n]: byte offset of the JPEG inside its tar
    size: np.ndarray  # int64 [n]
    shards_sha256: str | None
    manifest_sha256: str | None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def slides(self) -> list[str]:
        """Slide ids in order of first appearance."""
        return list(dict.fromkeys(slide_of(k) for k in self.keys))

    def subset(self, keep: set[str]) -> TileIndex:
        """Only the tiles in `keep` (e.g. those a tile-budgeted cache holds), rows renumbered per shard.

        A row is the tile's position among the kept tiles of its shard, i.e. its row in the cache part.
        """
        mask = np.fromiter((k in keep for k in self.keys), dtype=bool, count=len(self.keys))
        shard = self.shard[mask]
        row = np.zeros(len(shard), dtype=np.int32)
        for s in np.unique(shard):
            where = np.flatnonzero(shard == s)
            row[where] = np.arange(len(where), dtype=np.int32)
        require(len(shard) > 0, f"{self.root}: none of its tiles is in the given set (another tiling run?)")
        return dataclasses.replace(
            self, keys=tuple(k for k, m in zip(self.keys, mask, strict=True) if m), shard=shard, row=row,
            offset=self.offset[mask], size=self.size[mask],
        )


def scan_shards(shards: str | os.PathLike[str]) -> TileIndex:
    """Index the JPEG members of every shard listed in `shards/index.json` (headers only, no pixels)."""
    root = str(shards).rstrip("/")
    meta = _read_index(root)
    paths: list[Path] = []
    keys: list[str] = []
    shard_ids: list[int] = []
    rows: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    for i, entry in enumerate(meta["shards"]):
        path = _shard_path(root, entry)
        paths.append(path)
        row = 0
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if ext == "jpg" and member.isfile():
                    keys.append(key)
                    shard_ids.append(i)
                    rows.append(row)
                    row += 1
                    offsets.append(member.offset_data)
                    sizes.append(member.size)
    require(len(keys) > 0, f"{root}: the shards hold no .jpg tiles; re-run `g2l tile`")
    return TileIndex(
        root=root,
        shard_paths=tuple(paths),
        keys=tuple(keys),
        shard=np.asarray(shard_ids, dtype=np.int32),
        row=np.asarray(rows, dtype=np.int32),
        offset=np.asarray(offsets, dtype=np.int64),
        size=np.asarray(sizes, dtype=np.int64),
        shards_sha256=meta.get("sha256"),
        manifest_sha256=meta.get("manifest_sha256"),
    )


class TileReader:
    """Random access to tile pixels by reading one tar member's bytes (file handles opened per process)."""

    def __init__(self, index: TileIndex) -> None:
        self.index = index
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    def _handle(self, shard: int) -> Any:
        if self._pid != os.getpid():  # forked into a DataLoader worker: never share file offsets
            self._handles = {}
            self._pid = os.getpid()
        if shard not in self._handles:
            self._handles[shard] = open(self.index.shard_paths[shard], "rb")  # noqa: SIM115 (kept open)
        return self._handles[shard]

    def read(self, i: int) -> np.ndarray:
        """Decode tile `i` to uint8 HxWx3 with the cache's own decoder, so pixels match the teacher's."""
        from g2l.embed.shards import decode_tile

        f = self._handle(int(self.index.shard[i]))
        f.seek(int(self.index.offset[i]))
        return decode_tile(f.read(int(self.index.size[i])))


@dataclasses.dataclass(frozen=True)
class Split:
    """Training and validation tiles (indices into the TileIndex) and the held-out slides."""

    train: np.ndarray
    val: np.ndarray
    val_slides: tuple[str, ...]


def split_by_slide(index: TileIndex, fraction: float, seed: int, max_val_tiles: int) -> Split:
    """Hold out whole slides (a seeded choice of `fraction` of them) for validation."""
    slides = sorted(index.slides)
    n_val = int(round(fraction * len(slides)))
    if fraction > 0 and len(slides) >= 2:
        n_val = min(max(n_val, 1), len(slides) - 1)  # at least one slide each side
    else:
        n_val = 0
    rng = np.random.default_rng(seed)
    val_slides = tuple(sorted(slides[i] for i in rng.permutation(len(slides))[:n_val]))
    held = set(val_slides)
    is_val = np.asarray([slide_of(k) in held for k in index.keys], dtype=bool)
    val = np.flatnonzero(is_val)[:max_val_tiles]
    return Split(train=np.flatnonzero(~is_val), val=val, val_slides=val_slides)


@dataclasses.dataclass(frozen=True)
class DataPlan:
    """The training order: which (tile, view) pairs make global step s, for any s, without state."""

    train: np.ndarray  # tile indices
    shard_of: np.ndarray  # shard of each entry of `train`
    views: int
    global_batch: int
    seed: int
    window_shards: int = 4

    def __post_init__(self) -> None:
        require(
            len(self.train) >= self.global_batch,
            f"distill.global_batch ({self.global_batch}) exceeds the {len(self.train)} training tiles; "
            "lower global_batch or tile more slides",
        )

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one pass (the last incomplete global batch is dropped)."""
        return len(self.train) // self.global_batch

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, samples consumed in that epoch) before global step `step` (0-based)."""
        return step // self.steps_per_epoch, (step % self.steps_per_epoch) * self.global_batch

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Tiles and views of one epoch: shards in a seeded order, tiles shuffled within shard windows."""
        rng = np.random.default_rng([self.seed, epoch])
        shards = np.unique(self.shard_of)
        shard_order = rng.permutation(shards)
        parts = []
        for w in range(0, len(shard_order), self.window_shards):
            members = np.flatnonzero(np.isin(self.shard_of, shard_order[w : w + self.window_shards]))
            parts.append(self.train[rng.permutation(members)])
        tiles = np.concatenate(parts)
        views = rng.integers(0, self.views, size=len(tiles))
        return tiles, views

    def global_batch_at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Tiles and views of global step `step`."""
        epoch, start = self.position(step)
        tiles, views = self._cached_epoch(epoch)
        return tiles[start : start + self.global_batch], views[start : start + self.global_batch]

    def _cached_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        cache = self.__dict__.setdefault("_epoch_cache", {})
        if epoch not in cache:
            cache.clear()
            cache[epoch] = self.epoch_order(epoch)
        return cache[epoch]

    def rank_share(self, step: int, rank: int, world_size: int) -> list[tuple[int, int]]:
        """Rank `rank`'s contiguous share of global step `step`; its micro-batch m is chunk rank*accum+m."""
        tiles, views = self.global_batch_at(step)
        per = self.global_batch // world_size
        lo, hi = rank * per, (rank + 1) * per
        return list(zip(tiles[lo:hi].tolist(), views[lo:hi].tolist(), strict=True))


def chunk(items: Sequence[tuple[int, int]], size: int) -> list[list[tuple[int, int]]]:
    """Split a rank's share of a global batch into micro-batches of `size`."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class StepSampler:
    """Batch sampler: the micro-batches of this rank for steps start..stop-1, in order."""

    def __init__(self, plan: DataPlan, start: int, stop: int, rank: int, world_size: int, micro: int) -> None:
        self.plan, self.start, self.stop = plan, start, stop
        self.rank, self.world_size, self.micro = rank, world_size, micro

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            yield from chunk(self.plan.rank_share(step, self.rank, self.world_size), self.micro)

    def __len__(self) -> int:
        return (self.stop - self.start) * (self.plan.global_batch // self.world_size // self.micro)


class CachedTargets:
    """Teacher embeddings of tile i, view v, read from the cache parts by (shard, row), memory-mapped.

    Parts correspond one to one with shards and hold rows in shard order (docs/contracts.md), so no
    key -> row dictionary is needed; the keys of every part are checked once against the shards.
    Memory maps are opened lazily in each process (DataLoader workers included).
    """

    def __init__(self, cache: Any, index: TileIndex) -> None:
        parts = cache.index["parts"]
        require(
            len(parts) == len(index.shard_paths),
            f"cache {cache.path} has {len(parts)} parts but {index.root} has "
            f"{len(index.shard_paths)} shards; "
            "the cache was made from other shards: run `g2l embed` on these",
        )
        for i, part in enumerate(cache.iter_parts()):
            mine = [index.keys[j] for j in np.flatnonzero(index.shard == i)]
            require(
                list(part.keys) == mine,
                f"cache part {part.file} does not list the tiles of shard {index.shard_paths[i].name} in "
                "order; the cache was made from other shards: run `g2l embed` on these",
            )
        self.files = [Path(cache.path) / p["file"] for p in parts]
        self.shard, self.row = index.shard, index.row
        self._arrays: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def __call__(self, i: int, v: int) -> np.ndarray:
        """float32 [dim] teacher embedding of view v of tile i."""
        if self._pid != os.getpid():
            self._arrays, self._pid = {}, os.getpid()
        part = int(self.shard[i])
        if part not in self._arrays:
            self._arrays[part] = np.load(self.files[part], mmap_mode="r")
        return np.asarray(self._arrays[part][int(self.row[i]), v], dtype=np.float32)


class DistillDataset:
    """Map-style dataset over (tile index, view): the view's uint8 pixels plus the cached teacher target.

    Each view is regenerated with `make_view(tile, key, v, spec)`, the very function the embedding cache
    used, so the cached teacher embedding of (tile, v) is the teacher's output on exactly these pixels.
    Pixels stay uint8 [H, W, 3] here; the models' preprocessing runs batched on the training device.
    """

    def __init__(
        self,
        reader: TileReader,
        make_view: Callable[[np.ndarray, str, int, Any], np.ndarray],
        view_spec: Any,
        targets: Callable[[int, int], np.ndarray] | None = None,
    ) -> None:
        self.reader = reader
        self.make_view = make_view
        self.view_spec = view_spec
        self.targets = targets

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        import torch

        i, v = item
        key = self.reader.index.keys[i]
        view = self.make_view(self.reader.read(i), key, v, self.view_spec)
        out: dict[str, Any] = {"pixels": torch.from_numpy(np.ascontiguousarray(view))}
        if self.targets is not None:
            out["target"] = torch.from_numpy(self.targets(i, v))
        return out

    def __len__(self) -> int:
        return len(self.reader.index)
