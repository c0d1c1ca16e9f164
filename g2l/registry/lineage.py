"""Lineage of a student: what it was made from, read from its config.json and re-derived from artifacts.

The student's config.json (`lineage` block, written by `g2l distill`) names the shard index, the
embedding cache and the manifest with their hashes at training time; promotion re-hashes each one now and
refuses when they differ, so the registry never records artifacts the student was not trained on.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from g2l.registry import blobs

PREFIX = "lineage."
IMAGE_DIGEST_ENV = "G2L_IMAGE_DIGEST"
GIT_COMMIT_ENV = "G2L_GIT_COMMIT"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# lineage key -> the names upstream stages may use for it (student config.json top level or its
# `lineage` block); the first one present wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "manifest_uri": ("manifest_uri", "manifest", "manifest_path"),
    "manifest_rev": ("manifest_rev", "rev"),
    "manifest_repo": ("manifest_repo", "repo"),
    "manifest_sha256": ("manifest_sha256", "manifest_hash", "manifest_content_hash"),
    "shards_index": ("shards_index", "shards_index_uri"),
    "shards_dir": ("shards", "shards_dir", "shards_uri"),
    "shards_index_sha256": ("shards_index_sha256",),
    "shards_sha256": ("shards_sha256", "shard_index_sha256", "tiles_sha256"),
    "cache_dir": ("cache_dir", "cache", "cache_uri", "embeddings"),
    "cache_key": ("cache_key", "embedding_cache_key"),
    "cache_index_sha256": ("cache_index_sha256",),
    "teacher_mode": ("teacher_mode",),
    "teacher": ("teacher", "teacher_name"),
    "teacher_weights_sha256": ("teacher_weights_sha256", "teacher_digest", "teacher_sha256"),
    "config_sha256": ("config_sha256", "config_hash"),
    "git_commit": ("git_commit", "commit"),
    "image_digest": ("image_digest",),
    "pipeline_run_id": ("pipeline_run_id", "run_id"),
}
_CONFIG_BLOCKS = ("config", "distill_config", "distill")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LineageOverrides:
    """Lineage given on the command line; wins over what the student's config.json says."""

    manifest_uri: str | None = None
    manifest_rev: str | None = None
    manifest_repo: str | None = None
    shards_index: str | None = None
    cache_dir: str | None = None
    pipeline_run_id: str | None = None
    git_commit: str | None = None
    image_digest: str | None = None


def _normalise(source: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested forms upstream stages use, e.g. distill's `teacher: {name, weights_sha256}`."""
    out = dict(source)
    teacher = source.get("teacher")
    if isinstance(teacher, Mapping):
        out["teacher"] = teacher.get("name")
        out.setdefault("teacher_weights_sha256", teacher.get("weights_sha256"))
    return out


def _lookup(sources: list[Mapping[str, Any]], key: str) -> Any:
    for source in sources:
        for name in _ALIASES[key]:
            value = source.get(name)
            if value not in (None, "") and not isinstance(value, Mapping | list):
                return value
    return None


def config_block(student_config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The distillation config recorded in the student's config.json, if it holds one."""
    for name in _CONFIG_BLOCKS:
        block = student_config.get(name)
        if isinstance(block, Mapping):
            return block
    return None


def load_manifest(uri: str, rev: str | None = None, repo: str | None = None) -> Any:
    """The manifest at its revision (through DVC/git when `rev` or `repo` is given), via g2l.manifest."""
    from g2l import manifest as manifest_mod

    return manifest_mod.load(uri, rev=rev, repo=repo)


def manifest_hash(uri: str, rev: str | None = None, repo: str | None = None) -> str:
    """Content hash (sha256 of the canonical CSV) of a manifest at its revision."""
    return str(load_manifest(uri, rev, repo).content_hash)


def manifest_rows(uri: str, rev: str | None = None, repo: str | None = None) -> list[dict[str, Any]]:
    """The manifest's rows as dicts (slide_id, uri, checksum, ...); empty cells are None."""
    df = load_manifest(uri, rev, repo).df
    return [{k: (None if _isna(v) else v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _isna(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def git_commit() -> str | None:
    """The git commit of the working directory, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def collect(
    student_dir: str, student_config: Mapping[str, Any], overrides: LineageOverrides
) -> dict[str, str]:
    """The lineage of a student as flat string tags (without the `lineage.` prefix).

    Recorded values come from the CLI overrides, then the student's `lineage` block, then its top-level
    keys; hashes of artifacts that can be reached now are computed so that the audit can re-derive them.
    """
    block = student_config.get("lineage")
    sources: list[Mapping[str, Any]] = [
        {k: v for k, v in dataclasses.asdict(overrides).items() if v is not None},
        _normalise(block) if isinstance(block, Mapping) else {},
        _normalise(student_config),
    ]
    out: dict[str, Any] = {key: _lookup(sources, key) for key in _ALIASES}
    if overrides.manifest_uri is not None:  # another manifest: its rev and repo only from the overrides
        out["manifest_rev"], out["manifest_repo"] = overrides.manifest_rev, overrides.manifest_repo
    out["image_digest"] = out["image_digest"] or os.environ.get(IMAGE_DIGEST_ENV)
    out["git_commit"] = out["git_commit"] or os.environ.get(GIT_COMMIT_ENV) or git_commit()

    # The student itself.
    out["student_uri"] = _absolute(student_dir)
    out["student_weights_sha256"] = blobs.sha256_uri(blobs.join(student_dir, WEIGHTS_FILE))
    out["student_config_sha256"] = blobs.sha256_uri(blobs.join(student_dir, CONFIG_FILE))
    # distill's own digest of the state dict (tensor bytes, not the file): kept as recorded
    digest = student_config.get("weights_sha256") or student_config.get("student_weights_sha256")
    if digest:
        out["student_state_dict_sha256"] = digest
    block_cfg = config_block(student_config)
    if out["config_sha256"] is None and block_cfg is not None:
        from g2l.config import config_hash

        out["config_sha256"] = config_hash(dict(block_cfg))

    if out["teacher_mode"] is None and block_cfg is not None:
        out["teacher_mode"] = block_cfg.get("teacher_mode")

    # Tile shards: the index file's bytes pin every shard's sha256.
    if out["shards_index"] is None and out["shards_dir"] is not None:
        out["shards_index"] = blobs.join(str(out["shards_dir"]), "index.json")
    if out["shards_index"] is not None:
        index_uri = str(out["shards_index"])
        out["shards_index_sha256"] = _same_as_trained(
            "shard index", index_uri, out["shards_index_sha256"], blobs.sha256_uri(index_uri),
            "--shards-index",
        )
        index = blobs.read_json(index_uri)
        out["shards_sha256"] = out["shards_sha256"] or index.get("sha256")
        out["n_tiles"] = index.get("n_tiles")

    # Embedding cache: its index pins the key and every part's sha256.
    if out["cache_dir"] is not None:
        cache_index = blobs.join(str(out["cache_dir"]), "index.json")
        out["cache_index_sha256"] = _same_as_trained(
            "embedding cache index", cache_index, out["cache_index_sha256"], blobs.sha256_uri(cache_index),
            "--cache-dir",
        )
        index = blobs.read_json(cache_index)
        if out["cache_key"] and index.get("key") and index["key"] != out["cache_key"]:
            raise ValueError(
                f"{cache_index}: key {index['key']} differs from the student's cache_key {out['cache_key']}; "
                "fix: pass the --cache-dir the student was distilled from"
            )
        out["cache_key"] = out["cache_key"] or index.get("key")
        out["teacher"] = out["teacher"] or index.get("teacher")
        out["teacher_weights_sha256"] = out["teacher_weights_sha256"] or index.get("weights_sha256")

    # Manifest: the content hash at its revision (what the audit recomputes). A local manifest read
    # without a revision is pinned to the commit of its git repo when that commit holds the same content.
    if out["manifest_uri"] is not None and out["manifest_rev"] is None and out["manifest_repo"] is None:
        pinned = pin_to_git(str(out["manifest_uri"]), out["manifest_sha256"])
        if pinned is not None:
            out["manifest_uri"], out["manifest_rev"], out["manifest_repo"] = pinned
    if out["manifest_uri"] is not None:
        loaded = load_manifest(str(out["manifest_uri"]), out["manifest_rev"], out["manifest_repo"])
        where = f"{out['manifest_uri']}" + (f" at {out['manifest_rev']}" if out["manifest_rev"] else "")
        if out["manifest_sha256"] and out["manifest_sha256"] != loaded.content_hash:
            raise ValueError(
                f"manifest {where} has content hash {loaded.content_hash[:12]}..., but the student's tiles "
                f"were made from manifest {str(out['manifest_sha256'])[:12]}...; fix: pass --manifest-uri "
                f"(and --manifest-rev/--manifest-repo) naming the manifest the shards were tiled from"
            )
        out["manifest_sha256"] = loaded.content_hash
        out["manifest_rev"] = loaded.rev or out["manifest_rev"]  # the resolved commit, not a moving branch

    # Local paths are recorded absolute, so the audit works from any directory.
    for key in ("shards_index", "shards_dir", "cache_dir", "manifest_repo"):
        if out[key] is not None:
            out[key] = _absolute(str(out[key]))
    if out["manifest_uri"] is not None and out["manifest_repo"] is None:
        out["manifest_uri"] = _absolute(str(out["manifest_uri"]))  # with a repo it stays repo-relative

    # Anything else the distill stage put in its lineage block is kept as is.
    if isinstance(block, Mapping):
        known = {name for names in _ALIASES.values() for name in names}
        for key, value in block.items():
            if key not in known and isinstance(value, str | int | float | bool):
                out.setdefault(f"extra.{key}", value)
    return {k: str(v) for k, v in out.items() if v is not None}


def _same_as_trained(what: str, uri: str, recorded: Any, now: str, flag: str) -> str:
    """`now`, after checking it equals the hash the student recorded at training time (when it did)."""
    if recorded and recorded != now:
        raise ValueError(
            f"{what} {uri} changed since the student was trained (sha256 {str(recorded)[:12]}... then, "
            f"{now[:12]}... now): the registry would record artifacts the student was not trained on; "
            f"fix: restore it, or pass {flag} with the one the student was trained on"
        )
    return now


def pin_to_git(uri: str, content_sha256: Any) -> tuple[str, str, str] | None:
    """(path in repo, commit, repo) when the local file `uri` lies in a git repo whose HEAD holds the same
    manifest content (through DVC for DVC-tracked files); None otherwise (remote, no repo, changed)."""
    from pathlib import Path

    from g2l import storage

    path = Path(uri)
    if storage.is_remote(uri) or "://" in uri or not path.is_file():
        return None
    try:
        top = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if top.returncode != 0 or not top.stdout.strip():
        return None
    repo = top.stdout.strip()
    rel = str(path.resolve().relative_to(Path(repo).resolve()))
    try:
        loaded = load_manifest(rel, "HEAD", repo)
    except Exception:  # not committed, not readable at HEAD: the file itself stays the lineage
        return None
    if content_sha256 and loaded.content_hash != content_sha256:
        return None
    return rel, str(loaded.rev), repo


#: What a complete lineage names; `g2l audit` fails while any is missing (unless --allow-incomplete).
REQUIRED = ("manifest_uri", "manifest_sha256", "shards_index", "shards_index_sha256", "shards_sha256",
            "teacher", "teacher_weights_sha256", "student_weights_sha256", "config_sha256")
REQUIRED_CACHED = ("cache_dir", "cache_key", "cache_index_sha256")


def missing(lin: Mapping[str, str]) -> list[str]:
    """The required lineage items `lin` lacks (the cache's only when the student was distilled from one)."""
    required = REQUIRED + (() if lin.get("teacher_mode") == "online" else REQUIRED_CACHED)
    return [key for key in required if not lin.get(key)]


def _absolute(uri: str) -> str:
    from g2l import storage

    return uri if storage.is_remote(uri) or "://" in uri else os.path.abspath(uri)


def as_tags(lineage: Mapping[str, str]) -> dict[str, str]:
    """Lineage as MLflow tags (`lineage.<key>`)."""
    return {f"{PREFIX}{k}": v for k, v in lineage.items()}


def from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Lineage back from MLflow tags."""
    return {k[len(PREFIX) :]: v for k, v in tags.items() if k.startswith(PREFIX)}
