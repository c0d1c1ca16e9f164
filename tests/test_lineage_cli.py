"""Lineage end to end through the CLI, as a user runs it: `g2l tile` from a manifest committed to git,
`g2l embed`, `g2l distill`, then `g2l promote` with no lineage flags and `g2l audit` against the real
MLflow (sqlite) store. The student's config.json carries the manifest (uri, revision, hash), the shard
index and the cache; the audit re-derives all of it, and fails when an item goes missing.

The evaluation report and gate decision are written by the test (their stages have their own tests;
they carry no lineage), in the layout `g2l evaluate` / `g2l gate` write (docs/contracts.md).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from g2l.cli import app
from g2l.synth.slides import SyntheticSlide
from tests.fixtures.distill import distill_cli, tiny_config
from tests.fixtures.tiling import write_manifest

pytestmark = pytest.mark.usefixtures("one_thread")


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def _g2l(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    return result


def _last_json(output: str) -> dict[str, Any]:
    return dict(json.loads(output.strip().splitlines()[-1]))


def _report_and_decision(student: Path, out: Path) -> tuple[Path, Path]:
    digest = json.loads((student / "config.json").read_text())["weights_sha256"]
    bench = {"lp_balanced_accuracy": 0.8, "lp_auc": 0.9}
    report = {
        "models": {"student": {"digest": digest, "benchmarks": {"synthetic": bench}}},
        "benchmarks": {"synthetic": {"sha256": "0" * 64}},
        "seeds": [0],
    }
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps(report))
    (out / "decision.json").write_text(json.dumps({"passed": True, "candidate": "student", "rules": []}))
    return out / "report.json", out / "decision.json"


def test_cli_promotion_carries_full_lineage_and_an_audit_with_a_missing_item_fails(
    make_slide: Callable[..., SyntheticSlide], tmp_path: Path
) -> None:
    from g2l.storage import crc32c_of_file

    repo = tmp_path / "workspace"
    (repo / "manifests").mkdir(parents=True)
    rows = []
    for i, site in enumerate(("A", "B", "C")):
        slide = make_slide(f"slide{i}.svs", width=1536, height=1024, seed=10 + i)  # 3-6 tissue tiles each
        rows.append(
            {
                "slide_id": f"s{i}",
                "uri": str(slide.path),
                "site": site,
                "checksum": f"crc32c:{crc32c_of_file(slide.path)}",
            }
        )
    manifest = write_manifest(repo / "manifests" / "brca.csv", rows)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "manifest")
    commit = _git(repo, "rev-parse", "HEAD")

    root = tmp_path / "root"
    tiled = _g2l("tile", "--manifest", str(manifest), "--out", str(root), "--workers", "1", "--quiet")
    assert tiled.exit_code == 0, tiled.output
    embedded = _g2l(
        "embed",
        "--shards",
        str(root / "shards"),
        "--out",
        str(root),
        "--views",
        "2",
        "--batch-size",
        "8",
        "--num-workers",
        "0",
        "--quiet",
    )
    assert embedded.exit_code == 0, embedded.output
    cache = embedded.stdout.strip().splitlines()[-1]
    cfg = tiny_config(
        per_device_batch=2,
        global_batch=4,
        schedule={"max_steps": 2, "warmup_steps": 1},
        validation={"every_steps": 2},
        checkpoint={"every_steps": 2},
    )
    data = type("Data", (), {"shards": str(root / "shards"), "cache": cache})
    argv = distill_cli(cfg, data, tmp_path / "run", tmp_path / "distill.yaml", nproc=1)  # type: ignore[arg-type]
    distilled = _g2l(*argv[3:])
    assert distilled.exit_code == 0, distilled.output
    student = tmp_path / "run" / "student"

    # config.json records where the student came from, each with its hash at training time.
    recorded = json.loads((student / "config.json").read_text())["lineage"]
    assert recorded["manifest_uri"] == str(manifest)
    assert recorded["shards_index"] == str(root / "shards" / "index.json")
    assert recorded["cache_dir"] == cache and recorded["cache_key"] == Path(cache).name
    assert {"manifest_sha256", "shards_index_sha256", "shards_sha256", "cache_index_sha256"} <= set(recorded)

    report, decision = _report_and_decision(student, tmp_path / "eval")
    registry = f"sqlite:///{tmp_path / 'mlflow.db'}"
    promoted = _g2l(
        "promote",
        "--student",
        str(student),
        "--report",
        str(report),
        "--decision",
        str(decision),
        "--cancer",
        "brca",
        "--registry",
        registry,
        "--artifact-root",
        str(tmp_path / "artifacts"),
    )
    assert promoted.exit_code == 0, promoted.output
    assert _last_json(promoted.stdout)["lineage_missing"] == []

    from mlflow import MlflowClient

    tags = MlflowClient(registry).get_model_version("g2l-student-brca", "1").tags
    assert tags["lineage.manifest_uri"] == "manifests/brca.csv"  # pinned into its git repo
    assert tags["lineage.manifest_rev"] == commit and tags["lineage.manifest_repo"] == str(repo)
    assert tags["lineage.manifest_sha256"] == recorded["manifest_sha256"]
    for key in (
        "shards_index",
        "shards_index_sha256",
        "cache_dir",
        "cache_key",
        "cache_index_sha256",
        "teacher",
        "teacher_weights_sha256",
        "student_weights_sha256",
        "config_sha256",
    ):
        assert tags[f"lineage.{key}"], key

    # The working copy moves on; the audit reads the manifest at the recorded commit and passes whole.
    manifest.write_text("slide_id,uri\n")
    audit_args = ["audit", "--cancer", "brca", "--registry", registry, "--json", str(tmp_path / "audit.json")]
    clean = _g2l(*audit_args)
    assert clean.exit_code == 0, clean.output
    result = json.loads((tmp_path / "audit.json").read_text())
    assert result["complete"] and result["skipped"] == [] and result["failed"] == []
    ok_kinds = {c["check"] for c in result["checks"] if c["ok"]}
    assert {
        "manifest",
        "slide",
        "shards index",
        "shard set",
        "shards manifest",
        "shard",
        "embedding cache index",
        "teacher weights",
        "embedding cache key",
        "cache part",
        "student weights",
        "config",
    } <= ok_kinds
    key_line = next(c for c in result["checks"] if c["check"] == "embedding cache key")
    assert key_line["found"] == Path(cache).name and "teacher's weights" in key_line["detail"]

    # An item goes missing: the audit fails and names it.
    part = Path(cache) / "part-000000.npy"
    part.rename(part.with_suffix(".moved"))
    missing = _g2l(*audit_args)
    assert missing.exit_code == 1
    assert _last_json(missing.stdout)["failed"] == ["cache part part-000000.npy"]
