"""Audit of the teacher embedding cache: its index and parts, the teacher's weight digest, and the cache key
recomputed from the cache's own `cache.json` rather than compared as a recorded string.

The key is `sha256` of the key material (ADR 0004). The audit takes the material the cache recorded and
replaces what it can re-derive now: the shard set's digest (recomputed from the shard index, whose every
shard is hashed by the shard checks) and, when the teacher's weights are reachable here, the teacher's
weight digest, preprocessing and pooling (from the rebuilt teacher). Where the weights are not reachable,
the digest the student's lineage recorded stands in and the teacher line is skipped, so the audit is
incomplete. A cache whose inputs changed thus no longer hashes to the key the student recorded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from g2l.audit.report import Check, compare, skip
from g2l.registry import blobs


def load_teacher(name: str, weights: str | None, embedding: str | None) -> tuple[Any | None, str]:
    """(the teacher as g2l.models builds it, "") or (None, why it is not reachable here and the fix)."""
    from g2l.models import build_model

    try:
        return build_model(name, weights, device="cpu", embedding=embedding), ""
    except Exception as exc:  # unknown, gated, offline, missing file: all mean "not reachable here"
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, (
            f"teacher {name!r} is not reachable here ({first}); its weight digest cannot be recomputed. "
            f"Fix: pass --teacher-weights PATH, or make the hub snapshot available (HF_TOKEN / HF cache)"
        )


def _teacher_check(lin: Mapping[str, str], name: str, model: Any | None, why: str) -> Check:
    if model is None:
        return skip("teacher weights", why, item=name)
    return compare(
        "teacher weights",
        name,
        lin.get("teacher_weights_sha256"),
        lambda: str(model.weights_sha256),
        "recomputed from the teacher's weights",
    )


def _shard_set(lin: Mapping[str, str]) -> str | None:
    from g2l.tiling.outputs import shard_set_sha256

    index_uri = lin.get("shards_index")
    if not index_uri:
        return None
    try:
        return shard_set_sha256(blobs.read_json(index_uri).get("shards") or [])
    except Exception:  # the shard checks name the unreadable index
        return None


def recomputed_material(
    material: Mapping[str, Any], lin: Mapping[str, str], model: Any | None
) -> tuple[dict[str, Any], list[str]]:
    """The key material with what can be re-derived now put in; and which fields then differ."""
    now = dict(material)
    now["teacher"] = lin.get("teacher") or material.get("teacher")
    now["weights_sha256"] = lin.get("teacher_weights_sha256") or material.get("weights_sha256")
    now["shards_sha256"] = _shard_set(lin) or lin.get("shards_sha256") or material.get("shards_sha256")
    if model is not None:
        now["weights_sha256"] = model.weights_sha256
        now["preprocess"] = model.preprocess.to_dict()
        now["embedding"] = model.embedding
    return now, sorted(k for k in now if now[k] != material.get(k))


def cache_checks(lin: Mapping[str, str], teacher_weights: str | None = None) -> Iterator[Check]:
    """The cache index, the teacher's digest, the recomputed key and every part of the cache."""
    from g2l.embed.key import cache_key

    cache_dir = lin.get("cache_dir")
    if not cache_dir:
        yield from _no_cache(lin, teacher_weights)
        return
    index_uri = blobs.join(cache_dir, "index.json")
    yield compare(
        "embedding cache index", index_uri, lin.get("cache_index_sha256"), lambda: blobs.sha256_uri(index_uri)
    )
    try:
        index = blobs.read_json(index_uri)
        material = blobs.read_json(blobs.join(cache_dir, "cache.json"))
    except Exception as exc:
        yield Check(check="embedding cache key", item=cache_dir, expected=lin.get("cache_key") or "-",
                    found=f"error: cannot read the cache's index.json / cache.json: {exc}", ok=False)
        return
    name = str(index.get("teacher_spec") or material.get("teacher"))
    weights = teacher_weights or index.get("teacher_weights")
    model, why = load_teacher(name, weights, material.get("embedding"))
    yield _teacher_check(lin, name, model, why)

    def key_now() -> str:
        now, differ = recomputed_material(material, lin, model)
        key = cache_key(now)
        stored = {"index.json key": index.get("key"), "directory": cache_dir.rstrip("/").rsplit("/", 1)[-1]}
        off = [f"{where} {value}" for where, value in stored.items() if value != key]
        if differ or off:
            key += f" (cache.json differs in: {', '.join(differ) or '-'}; {'; '.join(off) or 'names agree'})"
        return key

    basis = "teacher's weights" if model is not None else "recorded teacher digest (weights not reachable)"
    yield compare(
        "embedding cache key", cache_dir, lin.get("cache_key"), key_now,
        f"recomputed from cache.json, the shard set and the {basis}",
    )
    for part in index.get("parts") or []:
        uri = blobs.join(cache_dir, part["file"])
        compute = functools.partial(blobs.sha256_uri, uri)
        yield compare("cache part", part["file"], part.get("sha256"), compute)


def _no_cache(lin: Mapping[str, str], teacher_weights: str | None) -> Iterator[Check]:
    """A student distilled with the teacher online has no cache: its teacher's digest is checked instead."""
    if lin.get("teacher_mode") != "online":
        yield skip("embedding cache", "no cache_dir in the lineage; fix: promote with --cache-dir")
        return
    yield Check(check="embedding cache", item="(none)", expected="(none)", found="(none)", ok=True,
                detail="teacher_mode online: the teacher ran inside training")
    name = lin.get("teacher")
    if not name:
        yield skip("teacher weights", "no teacher in the lineage")
        return
    model, why = load_teacher(name, teacher_weights, None)
    yield _teacher_check(lin, name, model, why)
