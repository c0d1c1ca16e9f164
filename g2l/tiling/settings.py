"""The tiling settings an output root was made with, and the refusal to overwrite them by accident.

A rerun into a finished root with other settings (`--target-mpp 1.0` after 0.5) would replace its
finished tiles, shards and index; a typo would lose hours of tiling. So a root records its settings in
`tiles/settings.json` (and `shards/index.json` its `tiles_per_shard`), and a run with other settings is
refused before anything is written unless it is asked to replace them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from g2l.config import to_dict
from g2l.tiling.config import TilingConfig
from g2l.tiling.errors import SettingsConflictError
from g2l.tiling.outputs import OutputRoot, canonical_json

SETTINGS_FILE = "tiles/settings.json"
# Config keys that change no tile byte: they are left out of the hash that decides whether a finished slide
# can be skipped (tiles_per_shard changes the shards only, and is checked against shards/index.json).
RUNTIME_ONLY_KEYS = ("workers", "batch_tiles", "max_failed_fraction", "tiles_per_shard", "max_attempts")
# Keys added after outputs were first written: left out of that hash while they hold the value that gives
# the old bytes, so slides finished before the key existed stay finished.
# (jpeg_scaled_decode's default, True, changes 40x tiles within the resample tolerance: a root tiled before
# it existed is refused by the default settings and kept by `jpeg_scaled_decode: false`.)
HASHED_UNLESS: dict[str, Any] = {"jpeg_subsampling": "4:2:0", "jpeg_scaled_decode": False}


def output_settings(config: TilingConfig) -> dict[str, Any]:
    """The config keys that affect a slide's tiles (what `output_config_hash` hashes)."""
    return {
        k: v
        for k, v in to_dict(config).items()
        if k not in RUNTIME_ONLY_KEYS and HASHED_UNLESS.get(k, object()) != v
    }


def output_config_hash(config: TilingConfig) -> str:
    """sha256 of the config keys that affect a slide's outputs."""
    return hashlib.sha256(canonical_json(output_settings(config))).hexdigest()


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(set(recorded) | set(current))
    diffs = [
        f"{k} {recorded.get(k, HASHED_UNLESS.get(k))!r} there, {current.get(k, HASHED_UNLESS.get(k))!r} now"
        for k in keys
        if recorded.get(k, HASHED_UNLESS.get(k)) != current.get(k, HASHED_UNLESS.get(k))
    ]
    return "; ".join(diffs) or "settings differ"


def _conflict(root: OutputRoot, what: str, diffs: str) -> SettingsConflictError:
    return SettingsConflictError(
        f"{root.uri} holds {what} made with other tiling settings ({diffs})",
        "Write to another output root (--out), or rerun with --replace to replace them with tiles of the new "
        "settings",
    )


def check_tile_settings(root: OutputRoot, config: TilingConfig, *, replace: bool) -> None:
    """Refuse (`SettingsConflictError`) when the root's finished tiles were made with other settings."""
    if replace:
        return
    recorded = root.read_json(SETTINGS_FILE)
    if isinstance(recorded, dict) and recorded.get("config_sha256") not in (None, output_config_hash(config)):
        diffs = _differences(recorded.get("tiling", {}), output_settings(config))
        raise _conflict(root, "finished tiles", diffs)


def check_slide_settings(root: OutputRoot, meta: Any, config: TilingConfig, *, replace: bool) -> None:
    """Refuse when one slide's finished outputs (meta.json `ok`) were made with other settings.

    Catches roots written before `tiles/settings.json` existed; `check_tile_settings` catches the rest first.
    """
    if replace or not isinstance(meta, dict) or meta.get("status") != "ok":
        return
    if meta.get("config_sha256") == output_config_hash(config):
        return
    recorded = {k: v for k, v in (meta.get("config") or {}).items() if k in output_settings(config)}
    what = f"finished tiles (slide {meta.get('slide_id')})"
    raise _conflict(root, what, _differences(recorded, output_settings(config)))


def check_shard_settings(root: OutputRoot, config: TilingConfig, *, replace: bool) -> None:
    """Refuse when the root's shards were packed with another `tiles_per_shard`."""
    index = root.read_json("shards/index.json")
    if replace or not isinstance(index, dict) or "tiles_per_shard" not in index:
        return
    if index["tiles_per_shard"] != config.tiles_per_shard:
        diffs = f"tiles_per_shard {index['tiles_per_shard']!r} there, {config.tiles_per_shard!r} now"
        raise _conflict(root, "finished shards", diffs)


def record_tile_settings(root: OutputRoot, config: TilingConfig) -> None:
    """Write `tiles/settings.json` (unchanged content is not rewritten)."""
    root.write_json(
        SETTINGS_FILE, {"config_sha256": output_config_hash(config), "tiling": output_settings(config)}
    )
