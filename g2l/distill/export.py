"""Export the distilled student (head dropped): model.safetensors + config.json, loadable by g2l and timm.

config.json's `lineage` block names what the student was made from, by location and by hash at
training time: the shard index, the embedding cache, and the manifest the shards were tiled from.
`g2l promote` registers the student with it and `g2l audit` re-derives each hash (ADR 0007).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

STUDENT_DIR = "student"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_student(
    out_dir: str | os.PathLike[str], state: dict[str, torch.Tensor], student: Any, card: dict[str, Any]
) -> Path:
    """Write `state` (the student's own weights) and its config/model card to `out_dir`, atomically.

    config.json carries the timm `architecture` and `model_args`, so `timm.create_model(architecture,
    pretrained=True, pretrained_cfg_overlay=dict(file=.../model.safetensors), **model_args)` rebuilds it,
    and `g2l.models.load_student(out_dir)` (= `build_model(out_dir)`) does the same with preprocessing.
    """
    from safetensors.torch import save_file

    from g2l.models import state_dict_sha256

    out = Path(out_dir)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    config = {**student.config(), **card}
    config["name"] = card.get("name") or f"{student.name}-g2l"
    config["weights_sha256"] = state_dict_sha256(tensors)
    config["base_student"] = {"name": student.name, "weights_sha256": student.weights_sha256}
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def training_lineage(shards: str, cache: str | None, teacher_mode: str) -> dict[str, Any]:
    """The `lineage` block of config.json: shard index, embedding cache and manifest, each with its hash.

    `shards` and `cache` are the locations the run was given (gs:// URIs stay URIs, local paths are made
    absolute). The manifest comes from the shard index's `manifest` record (tiling writes its uri, rev
    and repo); `manifest_sha256` from the index's own field, so it is known even for older indexes.
    """
    from g2l import storage

    index_uri = storage.join(shards, "index.json")
    index_bytes = storage.read_bytes(index_uri)
    index = json.loads(index_bytes)
    origin = index.get("manifest") if isinstance(index.get("manifest"), dict) else {}
    out: dict[str, Any] = {
        "manifest_uri": origin.get("uri"),
        "manifest_rev": origin.get("rev"),
        "manifest_repo": origin.get("repo"),
        "manifest_sha256": index.get("manifest_sha256") or origin.get("sha256"),
        "shards_index": _absolute(index_uri),
        "shards_index_sha256": hashlib.sha256(index_bytes).hexdigest(),
        "shards_sha256": index.get("sha256"),
        "teacher_mode": teacher_mode,
    }
    if cache:
        cache_bytes = storage.read_bytes(storage.join(cache, "index.json"))
        out["cache_dir"] = _absolute(cache.rstrip("/"))
        out["cache_index_sha256"] = hashlib.sha256(cache_bytes).hexdigest()
        out["cache_key"] = json.loads(cache_bytes).get("key")
    return {k: v for k, v in out.items() if v not in (None, "")}


def relocate_lineage(student_dir: str | os.PathLike[str], local_root: str, remote_root: str) -> None:
    """Rewrite the lineage's locations under `local_root` (a pod's mirror) to `remote_root` (gs://).

    A pipeline step that distils from a downloaded copy of the artifact root must record where the
    inputs live for everyone (the bucket), or `g2l audit` would look for a pod's vanished scratch
    directory. Only locations change; the hashes were computed on the very bytes the mirror holds.
    """
    path = Path(student_dir) / CONFIG_FILE
    config = json.loads(path.read_text())
    lineage = config.get("lineage") or {}
    prefix = os.path.abspath(local_root).rstrip("/") + "/"
    changed = False
    for key in ("shards_index", "cache_dir"):
        value = lineage.get(key)
        if isinstance(value, str) and value.startswith(prefix):
            lineage[key] = remote_root.rstrip("/") + "/" + value[len(prefix):]
            changed = True
    if changed:
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)


def read_student_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The exported student's config.json (lineage, metrics, timm architecture)."""
    return json.loads((Path(path) / CONFIG_FILE).read_text())


def load_student(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Any:
    """Load an exported student directory as a g2l.models.LoadedModel (weights, preprocessing, digest)."""
    from g2l.models import build_model

    return build_model(str(Path(path)), device=device)
