"""At most N tiles per slide, chosen seeded and tissue-weighted: the tiles the teacher cache embeds.

A slide with more tissue tiles than the budget keeps a weighted sample without replacement, weights
the tiles' tissue fractions (Efraimidis & Spirakis 2006: the N largest keys log(u) / w, with u a
uniform draw seeded by sha256(seed, tile key)). The choice depends only on (seed, the slide's tile
keys and tissue fractions): not on shard boundaries, rank, worker count or reading order, so every
embedding rank chooses the same tiles, and distillation reads exactly the tiles the cache holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from g2l.config import require


@dataclasses.dataclass(frozen=True, kw_only=True)
class TileBudget:
    """How many tiles of each slide to keep (0 = all) and the seed of the choice."""

    max_tiles_per_slide: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.max_tiles_per_slide >= 0,
                f"embed.max_tiles_per_slide must be >= 0 (0 = every tile), got {self.max_tiles_per_slide}")

    @property
    def active(self) -> bool:
        """Whether any tile can be left out."""
        return self.max_tiles_per_slide > 0

    def to_dict(self) -> dict[str, int]:
        """JSON-friendly form (part of the cache key when active)."""
        return {"max_tiles_per_slide": self.max_tiles_per_slide, "seed": self.seed}


def slide_of(tile_key: str) -> str:
    """The slide id of a tile key `<slide>_<x>_<y>`."""
    return tile_key.rsplit("_", 2)[0]


def priority(seed: int, tile_key: str, tissue: float) -> float:
    """The sampling key log(u) / w: the N largest over a slide are a weighted sample without replacement."""
    digest = hashlib.sha256(f"{seed}:{tile_key}".encode()).digest()
    u = (int.from_bytes(digest[:8], "little") + 0.5) / 2**64  # uniform in (0, 1), never 0
    return math.log(u) / max(float(tissue), 1e-6)


def choose(tiles: Iterable[tuple[str, float]], budget: TileBudget) -> set[str]:
    """The keys kept from (tile key, tissue fraction) pairs: every tile of small slides, N of larger ones."""
    by_slide: dict[str, list[tuple[str, float]]] = {}
    for key, tissue in tiles:
        by_slide.setdefault(slide_of(key), []).append((key, tissue))
    kept: set[str] = set()
    n = budget.max_tiles_per_slide
    for members in by_slide.values():
        if not budget.active or len(members) <= n:
            kept.update(k for k, _ in members)
            continue
        ranked = sorted(members, key=lambda kt: (priority(budget.seed, kt[0], kt[1]), kt[0]), reverse=True)
        kept.update(k for k, _ in ranked[:n])
    return kept


def read_tissue(shard: str | Path) -> list[tuple[str, float]]:
    """(tile key, tissue fraction) of every tile of a shard, in shard order, from its `.json` members.

    Only the small JSON members are read; a tile without one counts as fully tissue (weight 1).
    """
    order: list[str] = []
    tissue: dict[str, float] = {}
    with tarfile.open(shard, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rsplit("/", 1)[-1].partition(".")
            if ext == "jpg":
                order.append(key)
            elif ext == "json":
                f = tar.extractfile(member)
                meta: Any = json.loads(f.read()) if f is not None else {}
                tissue[key] = float(meta.get("tissue", 1.0)) if isinstance(meta, dict) else 1.0
    return [(k, tissue.get(k, 1.0)) for k in order]


def choose_in_shards(shards: list[Path], budget: TileBudget) -> tuple[set[str], list[list[str]]]:
    """(kept keys, every shard's tile keys in order) for a list of local shard files."""
    per_shard = [read_tissue(p) for p in shards]
    kept = choose((kt for tiles in per_shard for kt in tiles), budget)
    return kept, [[k for k, _ in tiles] for tiles in per_shard]
