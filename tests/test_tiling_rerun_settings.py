"""A rerun into a finished root with other tiling settings never loses the finished run: it is refused with a
message and changes no byte, unless --replace asks for it (issue 14, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

from g2l.tiling import TilingConfig, run_tiling
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
