"""Every bad input to `g2l tile` / `g2l manifest validate` gives a message naming it and the fix, a non-zero
exit and no traceback, before anything is written (issue 14, items 4, 5 and 7)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures.tiling import assert_user_error, run_g2l, write_manifest


@pytest.fixture
def one_slide_manifest(tmp_path: Path, slide_050) -> Path:
    """A valid manifest of one generated slide at 0.5 um/px."""
    return write_manifest(tmp_path / "m.csv", [{"slide_id": "s050", "uri": str(slide_050.path)}])


def test_out_path_that_is_a_file(tmp_path, one_slide_manifest) -> None:
    (tmp_path / "out.txt").write_text("not a directory")
    proc = run_g2l("tile", "--manifest", str(one_slide_manifest), "--out", str(tmp_path / "out.txt"))
    assert_user_error(proc, 2, f"output root {tmp_path / 'out.txt'} is a file, not a directory")
    assert "metrics not published" not in proc.stderr  # nothing tried to write there


def _without_root_powers() -> tuple[str, ...]:
    """A command prefix under which permission bits apply (root ignores them unless it drops these caps)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux setpriv: a read-only directory cannot be made")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner")


def test_read_only_out_dir(tmp_path, one_slide_manifest) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = run_g2l(
            "tile", "--manifest", str(one_slide_manifest), "--out", str(locked / "run"),
            prefix=_without_root_powers(),
        )
    finally:
        locked.chmod(0o755)
    assert_user_error(proc, 2, f"output root {locked / 'run'} cannot be written (Permission denied)")
    assert list(locked.iterdir()) == []


def test_slide_id_not_in_the_manifest(tmp_path, one_slide_manifest) -> None:
    out = tmp_path / "out"
    proc = run_g2l("tile", "--manifest", str(one_slide_manifest), "--out", str(out), "--slide-id", "s05O")
    assert_user_error(proc, 2, "slide id(s) not in the manifest: s05O", "the manifest's ids are s050")
    assert not out.exists()


def test_a_file_that_is_not_a_csv_as_manifest(tmp_path, slide_050) -> None:
    out = tmp_path / "out"
    proc = run_g2l("tile", "--manifest", str(slide_050.path), "--out", str(out))
    assert_user_error(proc, 2, str(slide_050.path), "not a readable CSV table", "fix: give a manifest")
    assert not out.exists()


def test_a_manifest_with_no_rows(tmp_path) -> None:
    manifest = tmp_path / "empty.csv"
    manifest.write_text("slide_id,uri,cancer_type,site\n")
    proc = run_g2l("tile", "--manifest", str(manifest), "--out", str(tmp_path / "out"))
    assert_user_error(proc, 2, "the manifest has no rows")
    assert not (tmp_path / "out").exists()


def test_check_files_on_gs_without_credentials(tmp_path) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [{"slide_id": "a", "uri": "gs://some-bucket/a.svs"}])
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "G2L_GCS_ANONYMOUS")}
    # No gcloud configuration, and no GCE metadata server probe (google-auth 2.x,
    # google/auth/compute_engine/_metadata.py reads NO_GCE_CHECK == "true").
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="true")
    proc = run_g2l("manifest", "validate", str(manifest), "--check-files", env=env, timeout=120)
    assert_user_error(proc, 2, "cannot check the files", "gcloud auth application-default login")


def test_target_finer_than_the_slide_says_raise_it(tmp_path, one_slide_manifest) -> None:
    """Item 5: a 0.5 um/px slide cannot give 0.25 um/px tiles; the fix is a larger target_mpp."""
    proc = run_g2l(
        "tile", "--manifest", str(one_slide_manifest), "--out", str(tmp_path / "out"), "--target-mpp", "0.25",
        "--quiet",
    )
    said = assert_user_error(proc, 1, "slide s050", "raise tiling.target_mpp to at least 0.4762")
    assert "lower" not in said


def test_manifest_mpp_that_contradicts_the_slide(tmp_path, slide_050) -> None:
    """Item 7: 0.25 um/px in the manifest for a 0.5 um/px slide fails it, unless the row says which wins."""
    row = {"slide_id": "s050", "uri": str(slide_050.path), "mpp": 0.25}
    wrong = write_manifest(tmp_path / "m.csv", [row])
    proc = run_g2l("tile", "--manifest", str(wrong), "--out", str(tmp_path / "out"), "--quiet")
    assert_user_error(
        proc, 1, "slide s050: the manifest's mpp 0.25 contradicts the slide's metadata (0.5 um/px",
        "set mpp_source to 'manifest' in its row",
    )
    said = write_manifest(tmp_path / "m2.csv", [{**row, "mpp_source": "manifest"}])
    proc = run_g2l("tile", "--manifest", str(said), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "out/tiles/s050/meta.json").read_text())
    assert (meta["mpp"], meta["mpp_source"], meta["size0"]) == (0.25, "manifest", 512)
