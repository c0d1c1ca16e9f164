"""Lineage in a GCS bucket (the emulator): slide checksums come from the bucket's object metadata, and the
audit names a slide or shard whose object was overwritten."""

from __future__ import annotations

import json
from collections.abc import Callable

from g2l import storage
from g2l.audit import audit
from g2l.registry import LineageOverrides, promote
from g2l.registry.lineage import manifest_hash
from tests.fixtures.lineage import Candidate, World


def test_audit_against_a_bucket(
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    gcs_bucket: str,
) -> None:
    base = f"gs://{gcs_bucket}"
    rows = lineage_world.manifest.read_text()
    for path in lineage_world.slides.values():
        storage.put_file(path, f"{base}/slides/{path.name}")
        rows = rows.replace(str(path), f"{base}/slides/{path.name}")
    storage.put_text(f"{base}/manifests/brca.csv", rows)
    # The tiles were made from the bucket's manifest: its hash is the one the shard index records.
    index_file = lineage_world.shards_dir / "index.json"
    index = json.loads(index_file.read_text())
    index["manifest_sha256"] = manifest_hash(f"{base}/manifests/brca.csv")
    index["manifest"] = {"uri": f"{base}/manifests/brca.csv", "sha256": index["manifest_sha256"]}
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True))
    for path in sorted(lineage_world.shards_dir.iterdir()):
        storage.put_file(path, f"{base}/shards/{path.name}")

    cand = make_candidate(value=0.8, with_lineage_block=False)
    overrides = LineageOverrides(
        manifest_uri=f"{base}/manifests/brca.csv",
        shards_index=f"{base}/shards/index.json",
        cache_dir=str(lineage_world.cache_dir),
    )
    promote(
        student=str(cand.student),
        report=str(cand.report),
        decision=str(cand.decision),
        cancer=cancer,
        policy=str(lineage_world.policy),
        registry_uri=registry_uri,
        overrides=overrides,
        quiet=True,
    )
    clean = audit(cancer=cancer, registry_uri=registry_uri)
    assert clean.ok, clean.failures
    slides = [c for c in clean.checks if c.check == "slide"]
    assert len(slides) == 3 and all(c.ok and c.found.startswith("crc32c:") for c in slides)

    victim = sorted(lineage_world.slides)[1]
    storage.put_bytes(f"{base}/slides/{victim}.svs", b"re-scanned slide with other bytes")
    storage.put_bytes(f"{base}/shards/shard-000002.tar", b"truncated")
    failed = [c.name for c in audit(cancer=cancer, registry_uri=registry_uri).failures]
    assert failed == [f"slide {victim}", "shard shard-000002.tar"]
