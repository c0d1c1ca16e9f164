"""Re-derive a lineage item by item: manifest and slides, tile shards, the student and its config."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping

from g2l.audit.report import Check, compare, skip
from g2l.registry import blobs, lineage


def manifest_checks(lin: Mapping[str, str]) -> Iterator[Check]:
    """The manifest's content hash at its revision, then every slide's bytes against its checksum."""
    uri = lin.get("manifest_uri")
    if not uri:
        yield skip("manifest", "no manifest_uri in the lineage; fix: promote with --manifest-uri")
        return
    rev, repo = lin.get("manifest_rev"), lin.get("manifest_repo")
    where = f"{uri}@{rev}" if rev else uri
    yield compare(
        "manifest",
        where,
        lin.get("manifest_sha256"),
        lambda: lineage.manifest_hash(uri, rev, repo),
        "content hash at its revision",
    )
    try:
        rows = lineage.manifest_rows(uri, rev, repo)
    except Exception as exc:
        yield Check(check="slide", item="(all)", expected="manifest rows", found=f"error: {exc}", ok=False)
        return
    for row in rows:
        slide_id, slide_uri, recorded = str(row.get("slide_id")), row.get("uri"), row.get("checksum")
        if not recorded or not slide_uri:
            yield skip(
                "slide",
                "the manifest has no checksum for it, so its bytes cannot be verified; fix: record the "
                "bucket's crc32c (`g2l manifest inventory` does)",
                item=slide_id,
            )
            continue
        try:
            kind, value = blobs.split_checksum(str(recorded))
        except ValueError as exc:
            yield Check(check="slide", item=slide_id, expected=str(recorded), found=f"error: {exc}", ok=False)
            continue
        expected = f"{kind}:{value}"  # md5 lower-cased as storage reports it
        compute = functools.partial(blobs.checksum_uri, str(slide_uri), kind)
        yield compare("slide", slide_id, expected, compute)


def shard_checks(lin: Mapping[str, str]) -> Iterator[Check]:
    """The shard index file, the tile set's digest recomputed from it, its manifest link, every shard."""
    from g2l.tiling.outputs import shard_set_sha256

    index_uri = lin.get("shards_index")
    if not index_uri:
        yield skip("shards index", "no shards_index in the lineage; fix: promote with --shards-index")
        return
    yield compare(
        "shards index", index_uri, lin.get("shards_index_sha256"), lambda: blobs.sha256_uri(index_uri)
    )
    try:
        index = blobs.read_json(index_uri)
    except Exception as exc:
        yield Check(check="shard", item="(all)", expected="index.json", found=f"error: {exc}", ok=False)
        return
    entries = index.get("shards") or []
    yield compare(
        "shard set",
        "sha256 of the index's entries",
        lin.get("shards_sha256"),
        lambda: shard_set_sha256(entries),
        "recomputed, not read",
    )
    yield compare(
        "shards manifest",
        "manifest the tiles came from",
        lin.get("manifest_sha256"),
        lambda: str(index.get("manifest_sha256")),
    )
    base = blobs.parent(index_uri)
    for entry in entries:
        uri = blobs.join(base, entry["name"])
        yield compare("shard", entry["name"], entry.get("sha256"), functools.partial(blobs.sha256_uri, uri))


def student_checks(lin: Mapping[str, str]) -> Iterator[Check]:
    """The student's weights and config.json files, and the hash of the distillation config inside."""
    student = lin.get("student_uri")
    if not student:
        yield skip("student", "no student_uri in the lineage")
        return
    weights = blobs.join(student, lineage.WEIGHTS_FILE)
    yield compare(
        "student weights", weights, lin.get("student_weights_sha256"), lambda: blobs.sha256_uri(weights)
    )
    cfg_uri = blobs.join(student, lineage.CONFIG_FILE)
    yield compare(
        "student config.json", cfg_uri, lin.get("student_config_sha256"), lambda: blobs.sha256_uri(cfg_uri)
    )

    def config_sha() -> str:
        from g2l.config import config_hash

        cfg = blobs.read_json(cfg_uri)
        block = lineage.config_block(cfg)
        return config_hash(dict(block)) if block is not None else str(cfg.get("config_sha256"))

    yield compare("config", "distillation config hash", lin.get("config_sha256"), config_sha)
