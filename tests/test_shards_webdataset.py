"""Shards: WebDataset-readable, index sha256s match the bytes, deterministic tar headers, idempotent."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from g2l.tiling import TilingConfig, write_shards
from g2l.tiling.errors import SettingsConflictError
from tests.fixtures.tiling import TiledRun


def _index(root) -> dict:
    return json.loads((root / "shards/index.json").read_text())


def test_index_sha256s_match_the_shard_bytes(tiled_run: TiledRun) -> None:
    index = _index(tiled_run.root)
    files = sorted(p.name for p in (tiled_run.root / "shards").glob("shard-*.tar"))
    assert files == [s["name"] for s in index["shards"]] and len(files) >= 2
    for shard in index["shards"]:
        data = (tiled_run.root / "shards" / shard["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    assert [s["n_tiles"] for s in index["shards"][:-1]] == [7] * (len(files) - 1)
    canonical = json.dumps(index["shards"], sort_keys=True, separators=(",", ":")).encode()
    assert index["sha256"] == hashlib.sha256(canonical).hexdigest()
    assert (index["tile_px"], index["target_mpp"]) == (256, 0.5)
    assert index["n_tiles"] == sum(s["n_tiles"] for s in index["shards"])


def test_shards_read_back_with_webdataset_in_manifest_and_coords_order(tiled_run: TiledRun) -> None:
    root = tiled_run.root
    index = _index(root)
    urls = [str(root / "shards" / s["name"]) for s in index["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    expected = []
    sites = {"s025": "A", "s050": "B", "nompp": "C"}
    for slide_id in ("s025", "s050", "nompp"):
        coords = pq.read_table(root / "tiles" / slide_id / "coords.parquet").to_pandas()
        expected += [(slide_id, int(r.x), int(r.y), int(r.size0)) for r in coords.itertuples()]
    assert len(samples) == len(expected) == index["n_tiles"]
    for sample, (slide_id, x, y, size0) in zip(samples, expected, strict=True):
        assert sample["__key__"] == f"{slide_id}_{x}_{y}"
        assert sample["jpg"].shape == (256, 256, 3) and sample["jpg"].dtype == np.uint8
        info = sample["json"]
        assert (info["slide_id"], info["x"], info["y"], info["size0"], info["site"]) == (
            slide_id,
            x,
            y,
            size0,
            sites[slide_id],
        )
        assert 0.25 <= info["tissue"] <= 1.0


def test_tar_members_carry_no_time_or_owner(tiled_run: TiledRun) -> None:
    with tarfile.open(tiled_run.root / "shards/shard-000000.tar") as tar:
        members = tar.getmembers()
    assert members and all(
        (m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) == (0, 0, 0, 0o644, "", "") for m in members
    )
    names = [m.name for m in members]
    assert names[0].endswith(".jpg") and names[1] == names[0].replace(".jpg", ".json")


def test_write_shards_is_deterministic_and_idempotent(tmp_path, tiled_run: TiledRun) -> None:
    copy = tmp_path / "root"
    shutil.copytree(tiled_run.root / "tiles", copy / "tiles")
    config = TilingConfig(tiles_per_shard=7)
    write_shards(copy, tiled_run.manifest, config)
    for shard in _index(tiled_run.root)["shards"]:
        assert (copy / "shards" / shard["name"]).read_bytes() == (
            tiled_run.root / "shards" / shard["name"]
        ).read_bytes()
    assert (copy / "shards/index.json").read_bytes() == (tiled_run.root / "shards/index.json").read_bytes()
    before = {p: p.stat().st_mtime_ns for p in (copy / "shards").iterdir()}
    write_shards(copy, tiled_run.manifest, config)
    assert {p: p.stat().st_mtime_ns for p in (copy / "shards").iterdir()} == before
    # A different shard size would replace finished shards: refused, unless asked for. Then it repacks the
    # same tiles: stale shards are removed, the tile set is unchanged.
    with pytest.raises(SettingsConflictError, match="tiles_per_shard 7 there, 1000 now"):
        write_shards(copy, tiled_run.manifest, TilingConfig(tiles_per_shard=1000))
    assert {p: p.stat().st_mtime_ns for p in (copy / "shards").iterdir()} == before
    summary = write_shards(copy, tiled_run.manifest, TilingConfig(tiles_per_shard=1000), replace=True)
    assert sorted(p.name for p in (copy / "shards").glob("*.tar")) == ["shard-000000.tar"]
    assert summary["index"]["n_tiles"] == _index(tiled_run.root)["n_tiles"]
