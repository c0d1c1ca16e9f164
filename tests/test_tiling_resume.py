"""Resumability: a rerun of a finished run is a no-op; SIGKILL + restart equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from g2l.tiling import TilingConfig, run_tiling, tile_slides
from g2l.tiling.errors import SettingsConflictError
from tests.fixtures.tiling import TiledRun, write_manifest


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "metrics" not in p.parts
    }


def test_rerun_of_a_finished_run_rewrites_nothing(tiled_run: TiledRun) -> None:
    root = tiled_run.root
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    result = run_tiling(tiled_run.manifest, root, TilingConfig(tiles_per_shard=7, workers=2), quiet=True)
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert after == before
    assert result.slides_ok == ["s025", "s050", "nompp"]


def _state(root: Path) -> dict[str, tuple[bytes, int]]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_other_settings_are_refused_and_replace_retiles(tmp_path, slide_050) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "s", "uri": str(slide_050.path)}])
    out = tmp_path / "out"
    first = run_tiling(manifest, out, TilingConfig(), quiet=True)
    finished = _state(out)
    with pytest.raises(SettingsConflictError, match="min_tissue_fraction 0.25 there, 0.9 now"):
        run_tiling(manifest, out, TilingConfig(min_tissue_fraction=0.9), quiet=True)
    with pytest.raises(SettingsConflictError, match="tiles_per_shard 2000 there, 5 now"):
        run_tiling(manifest, out, TilingConfig(tiles_per_shard=5), quiet=True)
    assert _state(out) == finished  # not a byte, not an mtime
    strict = TilingConfig(min_tissue_fraction=0.9)
    second = run_tiling(manifest, out, strict, quiet=True, replace=True)
    assert 0 < second.n_tiles < first.n_tiles
    assert run_tiling(manifest, out, strict, quiet=True).n_tiles == second.n_tiles  # now the root's settings


def test_a_slide_finished_with_other_settings_is_never_overwritten(tmp_path, slide_050) -> None:
    """A root from before tiles/settings.json existed: each slide's meta.json still guards it."""
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "s", "uri": str(slide_050.path)}])
    out = tmp_path / "out"
    run_tiling(manifest, out, TilingConfig(), quiet=True)
    (out / "tiles/settings.json").unlink()
    finished = _state(out)
    with pytest.raises(SettingsConflictError, match=r"slide s\).*target_mpp 0.5 there, 1.0 now"):
        tile_slides(manifest, out, TilingConfig(target_mpp=1.0), quiet=True)
    assert _state(out) == finished


def _cli(manifest: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "g2l",
        "tile",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--quiet",
        "--workers",
        "2",
        "--max-failed-fraction",
        "1",
    ]


def _run_and_kill_when(cmd: list[str], ready, timeout: float = 120) -> bool:
    """Start cmd, SIGKILL it as soon as ready() holds; False when it finished first."""
    proc = subprocess.Popen(cmd, env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_killed_and_restarted_equals_uninterrupted(
    tmp_path, slide_025, slide_050, slide_nompp, make_slide
) -> None:
    rows = [
        {"slide_id": "s025", "uri": str(slide_025.path)},
        {"slide_id": "s050", "uri": str(slide_050.path)},
        {"slide_id": "nompp", "uri": str(slide_nompp.path), "mpp": 0.5},
    ]
    for i in range(4):
        extra = make_slide(width=2048, height=1536, mpp=0.5, seed=10 + i)
        rows.append({"slide_id": f"x{i}", "uri": str(extra.path)})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    reference = tmp_path / "reference"
    run_tiling(manifest, reference, TilingConfig(), quiet=True)

    out = tmp_path / "killed"
    tiles = out / "tiles"
    # Kill 1: after the first slide is finished, while later slides are being read and written.
    assert _run_and_kill_when(_cli(manifest, out), lambda: any(tiles.glob("*/meta.json")))
    assert not (out / "shards/index.json").exists()
    # Kill 2: in the middle of a later slide (its tiles.tar already moved into place, meta.json not yet).
    _run_and_kill_when(_cli(manifest, out), lambda: len(list(tiles.glob("*/tiles.tar"))) >= 4)
    # Kill 3: while shards are being packed (if the run gets there before we look).
    _run_and_kill_when(_cli(manifest, out), lambda: (out / "shards").exists())
    finished = subprocess.run(
        _cli(manifest, out), env=os.environ, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr

    got, want = _files(out), _files(reference)
    assert not [name for name in got if ".tmp-" in name], "no temporary files are left behind"
    compared = [n for n in want if not n.endswith("meta.json")]  # meta.json holds timings
    assert sorted(got) == sorted(want)
    for name in compared:
        assert got[name] == want[name], name


@pytest.mark.slow
def test_a_slide_that_keeps_killing_the_tiler_is_skipped_and_named(tmp_path, slide_025, slide_050) -> None:
    """A reader crash (segfault, OOM kill) on one slide must not stop the run forever."""
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"slide_id": "killer", "uri": str(slide_025.path)},
            {"slide_id": "fine", "uri": str(slide_050.path)},
        ],
    )
    out = tmp_path / "out"
    meta = out / "tiles/killer/meta.json"
    (tmp_path / "c.yaml").write_text("tiling:\n  max_attempts: 2\n")
    cli = [*_cli(manifest, out), "--config", str(tmp_path / "c.yaml")]

    def attempt(n: int):
        def reached() -> bool:
            try:
                record = json.loads(meta.read_text())
            except (OSError, ValueError):
                return False
            return record.get("status") == "running" and record.get("attempts") == n

        return reached

    for n in (1, 2):  # the process dies while it works on "killer", twice
        assert _run_and_kill_when(cli, attempt(n))
    done = subprocess.run(cli, env=os.environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "tiles/summary.json").read_text())
    assert summary["slides_ok"] == ["fine"]
    [failure] = summary["slides_failed"]
    assert failure["slide_id"] == "killer" and "stopped the tiler 2 times" in failure["error"]
    assert "delete tiles/killer/meta.json" in failure["error"]
