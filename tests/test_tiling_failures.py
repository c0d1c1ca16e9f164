"""Bad slides are skipped and named; the rest finish; the exit status honours --max-failed-fraction."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from g2l.metrics import read_textfile_metrics
from g2l.tiling import TilingConfig, run_tiling, tile_slides
from tests.fixtures.tiling import TiledRun, write_manifest


def test_slide_without_mpp_fails_naming_the_fix(tmp_path, slide_nompp) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "nompp", "uri": str(slide_nompp.path)}])
    result = run_tiling(manifest, tmp_path / "out", TilingConfig(), quiet=True)
    assert result.slides_ok == []
    [failure] = result.slides_failed
    assert failure["slide_id"] == "nompp"
    assert (
        "slide nompp has no mpp in its metadata; add an `mpp` value to its manifest row" in failure["error"]
    )
    meta = json.loads((tmp_path / "out/tiles/nompp/meta.json").read_text())
    assert meta["status"] == "failed"


def test_manifest_mpp_tiles_a_slide_without_metadata_mpp(tiled_run: TiledRun) -> None:
    meta = json.loads((tiled_run.root / "tiles/nompp/meta.json").read_text())
    assert meta["status"] == "ok" and meta["mpp"] == 0.5 and meta["mpp_source"] == "manifest"
    assert meta["n_tiles"] > 0 and meta["size0"] == 256


@pytest.mark.parametrize(
    ("mpp", "mpp_source", "want"),
    [
        (0.25, "manifest", (0.25, "manifest", 512)),  # the metadata is wrong: tiles twice as wide
        (0.25, "metadata", (0.5, "metadata", 256)),  # the row says its own mpp is wrong
        (0.51, None, (0.51, "manifest", 256)),  # within tiling.mpp_tolerance (5%): the manifest's value
    ],
)
def test_manifest_mpp_against_metadata(tmp_path, slide_050, mpp, mpp_source, want) -> None:
    row = {"slide_id": "s", "uri": str(slide_050.path), "mpp": mpp, "mpp_source": mpp_source or ""}
    manifest = write_manifest(tmp_path / "m.csv", [row])
    outcomes = tile_slides(manifest, tmp_path / "out", TilingConfig(), quiet=True)
    assert [o.status for o in outcomes] == ["ok"]
    meta = json.loads((tmp_path / "out/tiles/s/meta.json").read_text())
    assert (meta["mpp"], meta["mpp_source"], meta["size0"]) == want


def test_manifest_mpp_that_contradicts_the_metadata_fails_the_slide(tmp_path, slide_050) -> None:
    """A wrong scale is silent corruption: 0.25 on a 0.5 um/px slide is refused unless the row says so."""
    row = {"slide_id": "s", "uri": str(slide_050.path), "mpp": 0.25}
    manifest = write_manifest(tmp_path / "m.csv", [row])
    [outcome] = tile_slides(manifest, tmp_path / "out", TilingConfig(), quiet=True)
    assert outcome.status == "failed"
    assert "manifest's mpp 0.25 contradicts the slide's metadata (0.5 um/px, 50% apart" in str(outcome.error)
    assert "set mpp_source to 'manifest'" in str(outcome.error)
    assert not (tmp_path / "out/tiles/s/tiles.tar").exists()


def test_corrupt_slide_is_skipped_and_named_while_the_rest_finish(tiled_run: TiledRun) -> None:
    summary = json.loads((tiled_run.root / "tiles/summary.json").read_text())
    assert summary["slides_ok"] == ["s025", "s050", "nompp"]
    [failure] = summary["slides_failed"]
    assert failure["slide_id"] == "corrupt" and "corrupt" in failure["error"]
    index = json.loads((tiled_run.root / "shards/index.json").read_text())
    assert index["slides"] == ["s025", "s050", "nompp"] and index["n_tiles"] > 0


def _tile_cli(manifest, out, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "g2l",
        "tile",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, env=os.environ, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_exit_status_honours_max_failed_fraction(tmp_path, slide_050, corrupt_slide) -> None:
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"slide_id": "good", "uri": str(slide_050.path)},
            {"slide_id": "broken", "uri": str(corrupt_slide)},
        ],
    )
    lenient = _tile_cli(manifest, tmp_path / "out", "--max-failed-fraction", "0.5")
    assert lenient.returncode == 0, lenient.stderr
    assert "broken" in lenient.stderr  # named on the console
    assert str(tmp_path / "out/tiles/good/thumbnail.png") in lenient.stderr.replace("\n", "")
    prom = read_textfile_metrics((tmp_path / "out/metrics/tiling.prom").read_text(), stage="tiling")
    assert prom["g2l_slides_failed_total"] == 1.0 and prom["g2l_tiles_written_total"] > 0
    last = json.loads(lenient.stdout.strip().splitlines()[-1])
    assert (last["slides_ok"], last["slides_failed"], last["ok"]) == (1, 1, True)

    strict = _tile_cli(manifest, tmp_path / "out", "--max-failed-fraction", "0.1", "--quiet")
    assert strict.returncode == 1
    assert "broken" in strict.stderr and "max_failed_fraction" in strict.stderr
    assert json.loads(strict.stdout.strip().splitlines()[-1])["ok"] is False


def test_blank_slide_is_ok_with_no_tiles(tmp_path, make_slide, slide_050) -> None:
    blank = make_slide(width=1024, height=768, mpp=0.5, blobs=[], seed=5)
    manifest = write_manifest(
        tmp_path / "m.csv",
        [{"slide_id": "blank", "uri": str(blank.path)}, {"slide_id": "s050", "uri": str(slide_050.path)}],
    )
    result = run_tiling(manifest, tmp_path / "out", TilingConfig(), quiet=True)
    assert result.slides_ok == ["blank", "s050"] and result.slides_failed == []
    meta = json.loads((tmp_path / "out/tiles/blank/meta.json").read_text())
    assert meta["n_tiles"] == 0 and meta["tissue_area_fraction"] == 0.0
    assert result.index["slides"] == ["s050"] and result.n_tiles > 0
