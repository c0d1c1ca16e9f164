"""gs:// slides, manifest and artifact root (on the real GCS emulator) give the same tiles as local files."""

from __future__ import annotations

import json

import pytest

from g2l import storage
from g2l.tiling import TilingConfig, run_tiling
from tests.fixtures.tiling import TiledRun, write_manifest


@pytest.mark.slow
def test_gs_input_and_output_equal_local(tmp_path, gcs_bucket: str, tiled_run: TiledRun) -> None:
    rows = []
    for slide_id in ("s025", "s050"):
        path = tiled_run.slides[slide_id].path
        uri = f"gs://{gcs_bucket}/slides/{path.name}"
        storage.put_file(path, uri)
        checksum = f"crc32c:{storage.stat(uri).crc32c}"
        rows.append({"slide_id": slide_id, "uri": uri, "site": "AB"[len(rows)], "checksum": checksum})
    local_manifest = write_manifest(tmp_path / "m.csv", rows)
    manifest_uri = f"gs://{gcs_bucket}/manifests/m.csv"
    storage.put_file(local_manifest, manifest_uri)
    out = f"gs://{gcs_bucket}/artifacts"

    config = TilingConfig(tiles_per_shard=7, workers=2)
    result = run_tiling(manifest_uri, out, config, quiet=True, cache_dir=str(tmp_path / "cache"))
    assert result.slides_ok == ["s025", "s050"] and result.slides_failed == []

    for slide_id in ("s025", "s050"):
        for name in ("coords.parquet", "tiles.tar", "thumbnail.png"):
            remote = storage.read_bytes(f"{out}/tiles/{slide_id}/{name}")
            assert remote == (tiled_run.root / "tiles" / slide_id / name).read_bytes(), (slide_id, name)
        meta = json.loads(storage.read_bytes(f"{out}/tiles/{slide_id}/meta.json"))
        assert meta["status"] == "ok" and meta["slide_checksum"].startswith("crc32c:")

    # The local run also holds a third slide (later in the manifest), so its first shards are the same tiles.
    index = json.loads(storage.read_bytes(f"{out}/shards/index.json"))
    local_index = json.loads((tiled_run.root / "shards/index.json").read_text())
    n_local_025_050 = sum(
        json.loads((tiled_run.root / "tiles" / s / "meta.json").read_text())["n_tiles"]
        for s in ("s025", "s050")
    )
    assert index["n_tiles"] == n_local_025_050
    full = n_local_025_050 // 7
    assert index["shards"][:full] == local_index["shards"][:full]
    for shard in index["shards"]:
        assert storage.read_bytes(f"{out}/shards/{shard['name']}")[:512]  # uploaded, readable

    # Rerun against gs:// is a no-op: no object is rewritten (generations unchanged).
    before = {f.uri: f.generation for f in storage.list_files(out)}
    run_tiling(manifest_uri, out, config, quiet=True, cache_dir=str(tmp_path / "cache"))
    assert {f.uri: f.generation for f in storage.list_files(out)} == before
