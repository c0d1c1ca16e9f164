"""Content key of an embedding cache: what determines the numbers, and nothing that does not."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from g2l.models.preprocess import Preprocess
from g2l.views import VIEW_ALGORITHM_VERSION, ViewSpec

KEY_FORMAT = 1


def key_material(
    *,
    teacher: str,
    weights_sha256: str,
    preprocess: Preprocess,
    view_spec: ViewSpec,
    embedding: str,
    shards_sha256: str,
    tile_budget: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The inputs the key hashes. Batch size, device, workers and rank split are deliberately absent.

    `tile_budget` (g2l.tile_budget, when it leaves tiles out) joins the material only then, so caches of
    every tile keep their keys.
    """
    extra = {} if tile_budget is None else {"tile_budget": dict(tile_budget)}
    return {
        **extra,
        "format": KEY_FORMAT,
        "teacher": teacher,
        "weights_sha256": weights_sha256,
        "preprocess": preprocess.to_dict(),
        "view_spec": view_spec.to_dict(),
        "view_algorithm": VIEW_ALGORITHM_VERSION,
        "embedding": embedding,
        "shards_sha256": shards_sha256,
    }


def cache_key(material: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `key_material(...)`."""
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
