"""Lineage given on the `g2l promote` command line (distill's config.json has no paths), incl. a manifest
pinned at a git revision: the audit reads the manifest as it was at that commit."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from g2l.audit import audit
from g2l.cli import app
from tests.fixtures.lineage import Candidate, World, promote_args


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_cli_lineage_overrides_and_manifest_at_a_git_rev(
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    tmp_path: Path,
) -> None:
    repo = tmp_path / "manifests-repo"
    (repo / "manifests").mkdir(parents=True)
    shutil.copy(lineage_world.manifest, repo / "manifests" / "brca.csv")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "manifest v1")
    commit = _git(repo, "rev-parse", "HEAD")

    cand = make_candidate(value=0.8, with_lineage_block=False)
    result = CliRunner().invoke(
        app,
        [
            *promote_args(cand, lineage_world, cancer, registry_uri),
            "--manifest-uri",
            "manifests/brca.csv",
            "--manifest-rev",
            "HEAD",
            "--manifest-repo",
            str(repo),
            "--shards-index",
            str(lineage_world.shards_dir / "index.json"),
            "--cache-dir",
            str(lineage_world.cache_dir),
            "--run-id",
            "kfp-run-42",
            "--artifact-root",
            str(tmp_path / "artifacts"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["aliases"] == ["champion"]
    prom = (tmp_path / "artifacts" / "metrics" / "promote.prom").read_text()  # no Pushgateway: textfile
    assert 'g2l_promote_champion{cancer="' in prom and 'run_id="kfp-run-42"' in prom

    # The working copy moves on after promotion; the audit reads the manifest at the recorded commit.
    (repo / "manifests" / "brca.csv").write_text("slide_id,uri\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "manifest v2")
    report = audit(cancer=cancer, registry_uri=registry_uri)
    assert report.ok, [c for c in report.checks if not c.ok]
    manifest_line = next(c for c in report.checks if c.check == "manifest")
    assert manifest_line.item.endswith(f"@{commit}")  # HEAD was resolved to the commit at promotion
    assert sum(c.check == "slide" and c.ok for c in report.checks) == len(lineage_world.slides)
    assert {c.check for c in report.checks if c.ok} >= {"shard", "cache part", "teacher weights", "config"}

    # A slide's bytes change in its bucket: named by the audit even though the manifest is pinned.
    slide = sorted(lineage_world.slides.values())[0]
    data = bytearray(slide.read_bytes())
    data[-1] ^= 0xFF
    slide.write_bytes(bytes(data))
    failed = [c.name for c in audit(cancer=cancer, registry_uri=registry_uri).failures]
    assert failed == [f"slide {slide.stem}"]
