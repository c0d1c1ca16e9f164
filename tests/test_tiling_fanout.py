"""Fan-out: slide groups tiled separately (as pipeline pods do), then packed, equal one whole run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from g2l.tiling import TilingConfig, tile_slides, write_shards
from tests.fixtures.tiling import TiledRun


def test_groups_tiled_apart_then_packed_equal_the_single_run(tmp_path, tiled_run: TiledRun) -> None:
    root = tmp_path / "root"
    config = TilingConfig(tiles_per_shard=7, workers=2)
    # Groups in the reverse of manifest order: packing still follows the manifest.
    tile_slides(tiled_run.manifest, root, config, slide_ids=["nompp", "corrupt"], quiet=True)
    assert not (root / "shards").exists()
    tile_slides(tiled_run.manifest, root, config, slide_ids=["s025", "s050"], quiet=True)
    summary = write_shards(root, tiled_run.manifest, config)
    assert summary["slides_ok"] == ["s025", "s050", "nompp"]
    for rel in ["shards/index.json", "tiles/summary.json"] + [
        f"shards/{s['name']}" for s in summary["index"]["shards"]
    ]:
        assert (root / rel).read_bytes() == (tiled_run.root / rel).read_bytes(), rel


def test_cli_no_shards_tiles_one_group_only(tmp_path, tiled_run: TiledRun) -> None:
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "g2l",
        "tile",
        "--manifest",
        str(tiled_run.manifest),
        "--out",
        str(out),
        "--slide-id",
        "s050",
        "--no-shards",
        "--quiet",
    ]
    done = subprocess.run(cmd, env=os.environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["slides_ok"] == 1
    assert (out / "tiles/s050/meta.json").exists() and not (out / "tiles/s025").exists()
    assert not (out / "shards").exists()
