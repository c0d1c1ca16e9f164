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
from tests.fixtures.lineage import Candidate, World, promote_args


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


def _tamper_cache_material(w: World, c: Candidate) -> None:
    material = json.loads((w.cache_dir / "cache.json").read_text())
    material["view_spec"]["seed"] += 1  # other views than the student was paired with
    (w.cache_dir / "cache.json").write_text(json.dumps(material))


def test_audit_recomputes_the_cache_key_from_the_caches_own_material(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    cand = _promoted(make_candidate, lineage_world, cancer, registry_uri)
    _tamper_cache_material(lineage_world, cand)  # index.json, parts and every recorded string untouched
    report = audit(cancer=cancer, registry_uri=registry_uri)
    assert [c.name for c in report.failures] == [f"embedding cache key {lineage_world.cache_dir}"]
    assert "cache.json differs in: -" in report.failures[0].found  # the key no longer matches its material


def test_audit_recomputes_the_teacher_digest_when_its_weights_are_reachable(
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    tmp_path: Path,
) -> None:
    from safetensors.torch import save_file

    from g2l.models import build_model

    _promoted(make_candidate, lineage_world, cancer, registry_uri)
    state = {k: v.clone() for k, v in build_model("tiny-vit-teacher").model.state_dict().items()}
    exact, other = tmp_path / "teacher.safetensors", tmp_path / "other-teacher.safetensors"
    save_file(state, str(exact))
    state["cls_token"] += 1e-3  # a fine-tuned teacher: same name, other weights
    save_file(state, str(other))

    assert audit(cancer=cancer, registry_uri=registry_uri, teacher_weights=str(exact)).ok
    failed = [
        c.name for c in audit(cancer=cancer, registry_uri=registry_uri, teacher_weights=str(other)).failures
    ]
    assert failed == ["teacher weights tiny-vit-teacher", f"embedding cache key {lineage_world.cache_dir}"]

    unreachable = audit(cancer=cancer, registry_uri=registry_uri, teacher_weights=str(tmp_path / "nowhere"))
    assert not unreachable.ok and not unreachable.failures  # nothing mismatched, but not everything ran
    assert [c.name for c in unreachable.skipped] == ["teacher weights tiny-vit-teacher"]
    assert "--teacher-weights" in unreachable.skipped[0].detail
    lenient = audit(
        cancer=cancer,
        registry_uri=registry_uri,
        teacher_weights=str(tmp_path / "nowhere"),
        allow_incomplete=True,
    )
    assert lenient.ok and not lenient.complete


def test_cli_promotion_without_lineage_warns_and_its_audit_fails_until_allowed_incomplete(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    cand = make_candidate(value=0.8, with_lineage_block=False)  # a student from before config.json lineage
    promoted = CliRunner().invoke(app, promote_args(cand, lineage_world, cancer, registry_uri))
    assert promoted.exit_code == 0, promoted.output
    missing = json.loads(promoted.stdout.strip().splitlines()[-1])["lineage_missing"]
    assert {"manifest_uri", "shards_index", "cache_dir"} <= set(missing)
    assert "`g2l audit` will fail" in " ".join(promoted.stderr.split())

    args = ["audit", "--cancer", cancer, "--registry", registry_uri]
    blind = CliRunner().invoke(app, args)
    assert blind.exit_code == 1
    last = json.loads(blind.stdout.strip().splitlines()[-1])
    assert last["ok"] is False and last["failed"] == []
    assert {"manifest", "shards index", "embedding cache"} <= set(last["skipped"])
    assert "incomplete" in " ".join(blind.stderr.split()) and "all checks pass" not in blind.output
    allowed = CliRunner().invoke(app, [*args, "--allow-incomplete"])
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout.strip().splitlines()[-1])["skipped"] == last["skipped"]


def test_promotion_refuses_artifacts_that_changed_since_training(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    cand = make_candidate(value=0.8)
    index_file = lineage_world.shards_dir / "index.json"
    index = json.loads(index_file.read_text())
    index["target_mpp"] = 1.0  # re-tiled into the same root after the student was trained
    index_file.write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"shard index .*index.json changed since the student was trained"):
        promote(
            student=str(cand.student),
            report=str(cand.report),
            decision=str(cand.decision),
            cancer=cancer,
            policy=str(lineage_world.policy),
            registry_uri=registry_uri,
            quiet=True,
        )
