"""A rerun into a finished root with other tiling settings never loses the finished run: it is refused with a
message and changes no byte, unless --replace asks for it (issue 14, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from g2l.pipeline.steps import pack_shards, tile_group
from g2l.tiling import TilingConfig, run_tiling
from g2l.tiling.errors import SettingsConflictError
from tests.fixtures.tiling import assert_user_error, run_g2l, write_manifest


def _state(root: Path) -> dict[str, tuple[bytes, int]]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_rerun_with_another_target_mpp_is_refused_and_touches_nothing(tmp_path, slide_025) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "s025", "uri": str(slide_025.path)}])
    out = tmp_path / "out"
    first = run_tiling(manifest, out, TilingConfig(), quiet=True)
    assert first.n_tiles > 0
    finished = _state(out)

    proc = run_g2l("tile", "--manifest", str(manifest), "--out", str(out), "--target-mpp", "1.0")
    assert_user_error(
        proc, 2,
        f"{out} holds finished tiles made with other tiling settings (target_mpp 0.5 there, 1.0 now)",
        "nothing was changed", "rerun with --replace",
    )
    assert _state(out) == finished  # every byte and every mtime, metrics included

    proc = run_g2l("tile", "--manifest", str(manifest), "--out", str(out), "--target-mpp", "1.0", "--replace",
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "tiles/s025/meta.json").read_text())
    assert (meta["config"]["target_mpp"], meta["size0"]) == (1.0, 1024)
    index = json.loads((out / "shards/index.json").read_text())
    assert index["target_mpp"] == 1.0 and 0 < index["n_tiles"] < first.n_tiles


def test_a_pipeline_run_into_a_root_of_other_settings_is_told_the_pipelines_fix(tmp_path, slide_025) -> None:
    """A pipeline user has no --out or --replace: the step names the artifact_root parameter instead."""
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "s025", "uri": str(slide_025.path)}])
    out = tmp_path / "out"
    run_tiling(manifest, out, TilingConfig(), quiet=True)
    finished = _state(out)
    config = tmp_path / "run.yaml"
    config.write_text("tiling:\n  target_mpp: 1.0\n")

    for step in (
        lambda: tile_group(manifest=str(manifest), slide_ids="s025", config_uri=str(config),
                           artifact_root=str(out), cancer="brca"),
        lambda: pack_shards(manifest=str(manifest), config_uri=str(config), artifact_root=str(out)),
    ):
        with pytest.raises(SettingsConflictError) as caught:
            step()
        said = str(caught.value)
        assert "(target_mpp 0.5 there, 1.0 now)" in said and "nothing was changed" in said, said
        assert "another artifact_root" in said and f"delete {out}/tiles and {out}/shards" in said, said
        assert "--replace" not in said and "--out" not in said, said
    assert {k: v for k, v in _state(out).items() if k in finished} == finished
