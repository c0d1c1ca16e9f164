"""Audit re-derives every lineage hash: all pass on untouched artifacts; a changed item fails by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g2l.audit import audit
from g2l.cli import app
from g2l.registry import promote
from tests.fixtures.lineage import Candidate, World


def _promoted(make_candidate: Callable[..., Candidate], world: World, cancer: str, uri: str) -> Candidate:
    cand = make_candidate(value=0.8, seed=1)
    result = promote(
        student=str(cand.student),
        report=str(cand.report),
        decision=str(cand.decision),
        cancer=cancer,
        policy=str(world.policy),
        registry_uri=uri,
        quiet=True,
    )
    assert result.status == "promoted"
    return cand


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_audit_passes_on_untouched_lineage(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    _promoted(make_candidate, lineage_world, cancer, registry_uri)
    report = audit(cancer=cancer, registry_uri=registry_uri)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.aliases == ("champion",)
    kinds = {c.check for c in report.checks if c.ok}
    assert {
        "manifest",
        "slide",
        "shards index",
        "shard set",
        "shard",
        "embedding cache index",
        "embedding cache key",
        "cache part",
        "teacher weights",
        "student weights",
        "student config.json",
        "config",
        "registered weights",
    } <= kinds
    assert sum(c.check == "slide" and c.ok for c in report.checks) == len(lineage_world.slides)
    assert sum(c.check == "shard" and c.ok for c in report.checks) == len(lineage_world.slides)


TAMPERS: dict[str, tuple[Callable[[World, Candidate], None], str]] = {
    "shard": (lambda w, c: _flip_byte(w.shards_dir / "shard-000001.tar", 600), "shard shard-000001.tar"),
    "manifest": (
        lambda w, c: w.manifest.write_text(w.manifest.read_text().replace(",test,", ",val,")),
        "manifest",
    ),
    "slide bytes": (lambda w, c: _flip_byte(sorted(w.slides.values())[2], 100), "slide TCGA-A2-0002-01Z"),
    "weights": (lambda w, c: _flip_byte(c.student / "model.safetensors"), "student weights"),
    "cache part": (lambda w, c: _flip_byte(w.cache_dir / "part-000000.npy"), "cache part part-000000.npy"),
    "missing shard": (lambda w, c: (w.shards_dir / "shard-000000.tar").unlink(), "shard shard-000000.tar"),
}


@pytest.mark.parametrize("what", sorted(TAMPERS))
def test_audit_names_the_changed_item(
    what: str, make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    cand = _promoted(make_candidate, lineage_world, cancer, registry_uri)
    tamper, expected_name = TAMPERS[what]
    tamper(lineage_world, cand)
    report = audit(cancer=cancer, registry_uri=registry_uri)
    assert not report.ok
    failed = [c.name for c in report.failures]
    assert any(name.startswith(expected_name) for name in failed), failed
    # Only what was changed (and what hashes it) fails: the other artifacts still check out.
    if what == "shard":
        assert failed == ["shard shard-000001.tar"]
    if what == "weights":  # the registry's own copy is untouched
        assert failed == [f"student weights {cand.student / 'model.safetensors'}"]


def test_audit_cli_prints_table_writes_json_and_exits_nonzero_naming_the_mismatch(
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    tmp_path: Path,
) -> None:
    cand = _promoted(make_candidate, lineage_world, cancer, registry_uri)
    args = [
        "audit",
        "--cancer",
        cancer,
        "--alias",
        "champion",
        "--registry",
        registry_uri,
        "--json",
        str(tmp_path / "audit.json"),
    ]
    ok = CliRunner().invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "student weights" in ok.stdout and "registered weights" in ok.stdout
    assert json.loads(ok.stdout.strip().splitlines()[-1])["ok"] is True

    _flip_byte(cand.student / "model.safetensors")
    bad = CliRunner().invoke(app, [*args, "--deep"])
    assert bad.exit_code == 1
    assert "MISMATCH student weights" in bad.stderr
    last = json.loads(bad.stdout.strip().splitlines()[-1])
    assert last["ok"] is False and last["failed"][0].startswith("student weights")
    written = json.loads((tmp_path / "audit.json").read_text())
    assert written["ok"] is False and any(n.startswith("student weights") for n in written["failed"])
    deep = [c for c in written["checks"] if c["check"] in ("deep evaluation", "metric")]
    assert deep  # either re-evaluated metrics or the "deep audit unavailable" line
