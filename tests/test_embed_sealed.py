"""A sealed embedding cache is immutable: `g2l embed` rerun on it checks it and rewrites nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from g2l.cli import app
from g2l.embed import open_cache

OLD_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09: any write after this sets a newer mtime


def _snapshot(cache_dir: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, inode) of the directory and every file: a replace changes the inode, a write the mtime."""
    paths = [cache_dir, *sorted(cache_dir.rglob("*"))]
    return {str(p.relative_to(cache_dir)): (p.stat().st_mtime_ns, p.stat().st_ino) for p in paths}


def test_rerun_of_a_sealed_cache_through_the_cli_changes_no_mtime_and_repair_is_explicit(
    shards_dir: Path, tmp_path: Path
) -> None:
    args = [
        "embed",
        "--shards",
        str(shards_dir),
        "--out",
        str(tmp_path / "out"),
        "--views",
        "2",
        "--batch-size",
        "4",
        "--num-workers",
        "0",
        "--quiet",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    cache_dir = Path(first.stdout.strip().splitlines()[-1])
    assert (cache_dir / "_COMPLETE").is_file() and (cache_dir / "index.json").is_file()
    # Old mtimes make any rewrite visible even within the filesystem's timestamp granularity.
    for p in [*cache_dir.rglob("*"), cache_dir]:
        os.utime(p, ns=(OLD_NS, OLD_NS))
    before = _snapshot(cache_dir)

    argv = [sys.executable, "-m", "g2l", *args]
    rerun = subprocess.run(argv, capture_output=True, text=True, env=os.environ)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip().splitlines()[-1] == str(cache_dir)
    assert "sealed and intact; nothing to do" in " ".join(rerun.stderr.split())
    assert _snapshot(cache_dir) == before
    open_cache(cache_dir).verify()

    # A damaged sealed cache is named, with the fix, and left alone until the user asks for a repair.
    good = (cache_dir / "part-000002.npy").read_bytes()
    (cache_dir / "part-000002.npy").unlink()
    before = _snapshot(cache_dir)

    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert "part-000002.npy is missing" in message and "--repair" in message
    assert _snapshot(cache_dir) == before  # nothing recomputed, the seal still stands

    repaired = CliRunner().invoke(app, [*args, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert (cache_dir / "part-000002.npy").read_bytes() == good and (cache_dir / "_COMPLETE").is_file()
    open_cache(cache_dir).verify()
