"""Staging for the steps that work on local files: a gs:// artifact root mirrored to a work directory,
model weights and benchmark data mirrored on gs://; everything lands on the step's /cache volume."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from g2l.pipeline.io import stage_file

WORK_DIR_ENV = "G2L_WORK_DIR"


def _download(uri: str, dest: Path) -> None:
    """Copy one object, or every object under a prefix, to `dest` (skipping files already there)."""
    from g2l import storage

    base = uri.rstrip("/")
    try:  # one object
        files = [(base, dest, storage.stat(base, checksum=False).size)]
    except FileNotFoundError:  # a directory: every object under it (none when it does not exist yet)
        found = storage.list_files(base, checksum=False) if storage.exists(base) else []
        files = [(f.uri, dest / f.uri[len(base) + 1 :], f.size) for f in found]
    for src, target, size in files:
        if target.exists() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(storage.stage(src), target)


@contextlib.contextmanager
def local_root(artifact_root: str, pull: list[str], push: list[str]) -> Iterator[str]:
    """A local directory standing for the artifact root: the root itself when local; for gs:// a work
    directory with the `pull` sub-paths (files or directories) downloaded, whose `push` sub-paths are
    uploaded afterwards, also after a failure, so that checkpoints and finished parts survive a
    preempted pod."""
    from g2l import storage

    if not storage.is_remote(artifact_root):
        yield artifact_root
        return
    work = Path(os.environ.get(WORK_DIR_ENV) or tempfile.mkdtemp(prefix="g2l-work-"))
    for sub in pull:
        _download(storage.join(artifact_root, sub), work / sub)
    try:
        yield str(work)
    finally:
        for sub in push:
            if (work / sub).is_dir():
                storage.sync_dir(work / sub, storage.join(artifact_root, sub))


def stage_weights(uri: str | None) -> str | None:
    """A local path for model weights: a gs:// file or directory (the preferred mirror of a gated hub
    model) is downloaded once per pod under the staging volume; local paths and None pass through."""
    import hashlib

    from g2l import storage

    if not uri or not storage.is_remote(uri):
        return uri
    base = (
        Path(storage.default_cache_dir()).parent / "weights" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    )
    dest = base / uri.rstrip("/").rsplit("/", 1)[-1]
    _download(uri, dest)
    return str(dest)


def stage_benchmark(definition: str) -> Path:
    """A local benchmark definition whose data is local: a gs:// data root is downloaded once (files
    already present with the right size are kept) and the definition rewritten to point at the copy."""
    import yaml

    from g2l import storage
    from g2l.pipeline.io import benchmark_root

    local = stage_file(definition)
    root, _generated = benchmark_root(local.read_text())
    if not storage.is_remote(root):
        return local
    data = yaml.safe_load(local.read_text())
    work = Path(os.environ.get(WORK_DIR_ENV) or tempfile.gettempdir()) / "benchmarks" / str(data["name"])
    _download(root, work)
    data["root"] = str(work)
    out = work.parent / f"{data['name']}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
