"""Argument plumbing shared by the kfp components: pinned run inputs, fan-out groups, staged configs.

Kept in the library (and free of kfp) so the components stay one call deep and this logic is tested
without Kubeflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import yaml

from g2l.config import ConfigError, parse_yaml, require

RUN_ID_ENV = "G2L_RUN_ID"


def is_inline(value: str) -> bool:
    """True when a parameter carries YAML text rather than a path or URI."""
    stripped = value.strip()
    return "\n" in stripped or stripped.startswith("{")


def read_text_or_uri(value: str) -> str:
    """The text of an inline-YAML parameter, or of the file/object it names."""
    if is_inline(value):
        return value
    from g2l import storage

    return storage.read_text(value)


def yaml_sha256(text: str) -> str:
    """sha256 of a YAML document's canonical JSON: comments and formatting do not change it."""
    data = yaml.safe_load(text) or {}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinnedInputs:
    """A run's config and manifest frozen under the artifact root, with their hashes."""

    config_uri: str
    config_sha256: str
    manifest_uri: str
    manifest_sha256: str
    manifest_rev: str


def _put_once(uri: str, text: str) -> None:
    from g2l import storage

    if not storage.exists(uri):  # content-addressed name: an existing object already holds these bytes
        storage.put_text(uri, text)


def pin_inputs(
    *, config_yaml: str, manifest_uri: str, manifest_rev: str, manifest_repo: str, artifact_root: str
) -> PinnedInputs:
    """Freeze the config and the manifest (read at its DVC rev) under ROOT/pipeline/, content-addressed.

    Every later task reads these copies, so the whole run sees one manifest even if the branch moves,
    and their hashes become task inputs, so kfp's cache is keyed by them.
    """
    from g2l import manifest, storage

    configure_git_credentials()
    text = read_text_or_uri(config_yaml)
    data = parse_yaml(text, "config_yaml")
    require(
        isinstance(data, dict),
        "config_yaml must be a YAML mapping with one section per stage "
        "(inline text or the URI of a config file such as configs/brca.yaml)",
    )
    config_sha = yaml_sha256(text)
    config_uri = storage.join(artifact_root, "pipeline", f"config-{config_sha[:16]}.yaml")
    _put_once(config_uri, text)

    require(
        bool(manifest_uri),
        "manifest_uri must name the slide manifest (CSV/Parquet path, gs:// URI "
        "or a path inside manifest_repo)",
    )
    loaded = manifest.load(manifest_uri, rev=manifest_rev or None, repo=manifest_repo or None)
    manifest_sha = loaded.content_hash
    pinned_manifest = storage.join(artifact_root, "pipeline", f"manifest-{manifest_sha[:16]}.csv")
    if not storage.exists(pinned_manifest):  # canonical CSV: re-reading it gives the same content hash
        manifest.write_table(loaded.df, pinned_manifest)
    return PinnedInputs(
        config_uri=config_uri,
        config_sha256=config_sha,
        manifest_uri=pinned_manifest,
        manifest_sha256=manifest_sha,
        manifest_rev=str(loaded.rev or manifest_rev or ""),
    )


def split_groups(items: list[str], n_groups: int) -> list[list[str]]:
    """Split `items` into at most `n_groups` contiguous, nearly equal, non-empty groups (order kept)."""
    require(n_groups >= 1, f"the number of groups must be >= 1, got {n_groups}")
    n = min(n_groups, len(items))
    if n == 0:
        return []
    base, extra = divmod(len(items), n)
    groups, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        groups.append(items[start : start + size])
        start += size
    return groups


def slide_groups(manifest_uri: str, n_groups: int) -> list[str]:
    """Slide ids of a pinned manifest in `n_groups` groups, each comma-joined (ids hold no commas)."""
    from g2l import manifest

    ids = [str(s) for s in manifest.load(manifest_uri).df["slide_id"].tolist()]
    require(bool(ids), f"manifest {manifest_uri} has no slides")
    return [",".join(group) for group in split_groups(ids, n_groups)]


def slide_group_items(
    manifest_uri: str, manifest_sha256: str, config_uri: str, n_groups: int
) -> list[dict[str, str]]:
    """Tiling work items: each task's slide ids plus the pinned inputs, carried in the loop item itself.

    The loop body takes every upstream value from its item (kfp.local cannot pass other task outputs
    into a ParallelFor body), and the hashes in it key the cache of each tiling task.
    """
    return [
        {
            "index": str(i),
            "slide_ids": ids,
            "manifest": manifest_uri,
            "manifest_sha256": manifest_sha256,
            "config_uri": config_uri,
        }
        for i, ids in enumerate(slide_groups(manifest_uri, n_groups))
    ]


def rank_items(shards: str, shards_sha256: str, config_uri: str, world_size: int) -> list[dict[str, str]]:
    """Embedding work items, one per rank; ranks are strings (loop items pass through JSON numbers)."""
    check_positive("embed_groups", world_size)
    return [
        {"rank": str(r), "shards": shards, "shards_sha256": shards_sha256, "config_uri": config_uri}
        for r in range(world_size)
    ]


def stage_file(uri_or_text: str, suffix: str = ".yaml") -> Path:
    """A local file for a URI (downloaded and verified) or for inline text (written to a temp file)."""
    if is_inline(uri_or_text):
        handle, name = tempfile.mkstemp(prefix="g2l-", suffix=suffix)
        with os.fdopen(handle, "w") as f:
            f.write(uri_or_text)
        return Path(name)
    from g2l import storage

    return storage.stage(uri_or_text)


def load_stage_config(cls: type, config_uri: str, section: str, **overrides: Any) -> Any:
    """One stage's config dataclass from a pinned config file (URI or inline), with overrides."""
    from g2l.config import load_section

    return load_section(cls, stage_file(config_uri), section=section, **overrides)


def run_id() -> str:
    """The pipeline run id: `$G2L_RUN_ID` (the pod's `pipeline/runid` label in the cluster) or 'local'."""
    return os.environ.get(RUN_ID_ENV) or "local"


def distill_dir(artifact_root: str, *, cache: str, distill_config: Any, max_steps: int) -> str:
    """Content-addressed run directory of a distillation: the same inputs resume the same run.

    Keyed by the embedding cache, the `distill:` section (student included) and the step cap, not by
    the whole config file: editing the gate policy or the tiling workers must not retrain a student.
    """
    from g2l.config import config_hash

    key = hashlib.sha256(
        json.dumps([cache.rstrip("/").rsplit("/", 1)[-1], config_hash(distill_config), max_steps]).encode()
    ).hexdigest()[:16]
    from g2l import storage

    return storage.join(artifact_root, "distill", key)


def parse_list(value: str) -> list[str]:
    """A comma-separated parameter as a list, blanks dropped."""
    return [v.strip() for v in value.split(",") if v.strip()]


def check_positive(name: str, value: int) -> int:
    """Validate an integer parameter from the UI (>= 1), naming it."""
    if value < 1:
        raise ConfigError(f"pipeline parameter {name} must be >= 1, got {value}")
    return value


# --- checks at the start of a run: everything a later GPU step would fail on ----------------------

_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")


def check_gpu_count(name: str, value: str, *, minimum: int) -> int:
    """A GPU count parameter: a STRING holding a whole number >= `minimum` (the pod's accelerator limit).

    The KFP v2 driver reads the placeholder of an accelerator count with `GetStringValue()`
    (backend/src/v2/driver/resolve.go `resolvePodSpecInputRuntimeParameter` at 2.17.0), so the pipeline
    passes counts as strings; this checks them before any pod asks for a GPU.
    """
    text = str(value).strip()
    if not text.isdigit() or int(text) < minimum:
        raise ConfigError(
            f"pipeline parameter {name}={value!r} must be a whole number >= {minimum} "
            f"(GPUs per pod), e.g. {name}=1"
        )
    return int(text)


def check_cpu(name: str, value: str) -> str:
    """A CPU quantity parameter ('16', '500m', '7.5'): what Kubernetes' ParseQuantity accepts for cpu."""
    text = str(value).strip()
    if not _CPU.match(text) or float(text.rstrip("m") or 0) <= 0:
        raise ConfigError(
            f"pipeline parameter {name}={value!r} must be a CPU quantity such as '16' or '500m'"
        )
    return text


def check_run_resources(
    *,
    tile_gpus: str,
    embed_gpus: str,
    distill_gpus: str,
    distill_nodes: int,
    embed_cpu: str,
    distill_cpu: str,
) -> None:
    """Validate every resource parameter of a run at its start (tiling and embedding may run on CPU)."""
    check_gpu_count("tile_gpus", tile_gpus, minimum=0)
    check_gpu_count("embed_gpus", embed_gpus, minimum=0)  # 0: the teacher on CPU (the demo)
    check_gpu_count("distill_gpus", distill_gpus, minimum=1)
    check_positive("distill_nodes", int(distill_nodes))
    check_cpu("embed_cpu", embed_cpu)
    check_cpu("distill_cpu", distill_cpu)


def benchmark_root(definition_text: str) -> tuple[str, bool]:
    """The data root a benchmark definition names (${VAR:-default} expanded from this environment), and
    whether the benchmark generates its own data there (`generate:`, the synthetic set)."""
    from g2l.evaluate.benchmark import expand_env

    data = yaml.safe_load(definition_text) or {}
    return expand_env(str(data.get("root") or "")), bool(data.get("generate"))


def check_benchmarks(benchmarks: str) -> list[str]:
    """Every benchmark definition is readable and its data root exists (gs:// or local); returns the roots.

    A gated run evaluates on them after tiling, embedding and distillation: an unreachable benchmark
    must stop the run at its start, not after the GPU-hours.
    """
    from g2l import storage

    names = parse_list(benchmarks)
    if not names:
        raise ConfigError(
            "no benchmarks: a gated run needs at least one (pipeline parameter `benchmarks`, "
            "comma-separated definitions such as configs/benchmarks/bracs.yaml or gs://.../bracs.yaml)"
        )
    roots, problems = [], []
    for name in names:
        try:
            root, generated = benchmark_root(read_text_or_uri(name))
        except (FileNotFoundError, OSError) as exc:
            problems.append(f"{name}: definition not readable ({exc})")
            continue
        if not root:
            problems.append(f"{name}: names no `root:` for its data")
        elif generated:
            pass  # written by the evaluate step itself
        elif not (storage.exists(root) if storage.is_remote(root) else Path(root).exists()):
            problems.append(
                f"{name}: data root {root} not found (upload the benchmark there, or set G2L_DATA / "
                "the g2l-pipeline-env key benchmark_data to the gs:// prefix that holds it)"
            )
        roots.append(root)
    if problems:
        raise ConfigError("benchmarks not reachable: " + "; ".join(problems))
    return roots


def configure_git_credentials(env: MutableMapping[str, str] | None = None) -> bool:
    """Let git (and DVC through it) authenticate with $GIT_USERNAME/$GIT_PASSWORD from a Secret.

    Sets a credential helper through GIT_CONFIG_COUNT/KEY/VALUE (git >= 2.31) that answers from the
    environment, so the token is never written to disk; returns whether credentials were configured.
    """
    if env is None:
        env = os.environ
    if not (env.get("GIT_USERNAME") and env.get("GIT_PASSWORD")):
        return False
    index = int(env.get("GIT_CONFIG_COUNT") or 0)
    helper = '!f() { echo "username=$GIT_USERNAME"; echo "password=$GIT_PASSWORD"; }; f'
    env[f"GIT_CONFIG_KEY_{index}"] = "credential.helper"
    env[f"GIT_CONFIG_VALUE_{index}"] = helper
    env["GIT_CONFIG_COUNT"] = str(index + 1)
    return True


def record_artifact(path: str, uri: str, *, kind: str, **metadata: Any) -> dict[str, Any]:
    """Write a small JSON pointer at a KFP output artifact's local `path`; returns its metadata.

    The data stays where the stage wrote it (under the artifact root); the KFP artifact carries its URI
    and identity in its metadata, so the UI's lineage graph links the run's shards, cache and student.
    The artifact's own URI is left to KFP: the v2 launcher uploads it under the pipeline root and
    rejects URIs outside that bucket (backend/src/v2/component/launcher_v2.go `uploadOutputArtifacts`).
    """
    record = {"uri": uri, "kind": kind, **metadata}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
