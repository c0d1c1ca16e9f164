"""Benchmark embeddings, cached as EVAL_DIR/embeddings/<model digest>-<benchmark hash>.npy (atomic writes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from g2l.evaluate.benchmark import Benchmark
from g2l.evaluate.models import EvalModel


def cache_path(cache_dir: str | Path, model: EvalModel, bench: Benchmark) -> Path:
    """Where one model's embeddings of one benchmark live: keyed by what determines them, not by names."""
    return Path(cache_dir) / f"{model.digest}-{bench.sha256}.npy"


def _atomic_save(path: Path, array: np.ndarray, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    tmp_side = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp_side.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp_side, side)


def _load_cached(path: Path, n: int, dim: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        arr = np.load(path)
    except (OSError, ValueError):
        return None  # truncated or foreign file: recompute and overwrite
    if arr.shape != (n, dim):
        return None
    return arr


def embed_benchmark(
    models: list[EvalModel],
    bench: Benchmark,
    cache_dir: str | Path,
    *,
    batch_size: int = 64,
    num_workers: int = 4,
    progress: Any = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings [N, dim] of `bench` per model, reusing the cache; tiles are decoded once for all models.

    Returns `(embeddings by model name, stats)` with stats `cache_hits`, `tiles_embedded`, `seconds`.
    """
    out: dict[str, np.ndarray] = {}
    todo: list[EvalModel] = []
    for m in models:
        cached = _load_cached(cache_path(cache_dir, m, bench), len(bench), m.embed_dim)
        if cached is None:
            todo.append(m)
        else:
            out[m.name] = cached
    stats: dict[str, Any] = {"cache_hits": len(models) - len(todo), "tiles_embedded": 0, "seconds": 0.0}
    if not todo:
        return out, stats
    task = progress.add_task(f"embed {bench.name}", total=len(bench)) if progress is not None else None
    buffers = {m.name: np.zeros((len(bench), m.embed_dim), dtype=np.float32) for m in todo}
    started = time.monotonic()
    done = 0
    for idx, tiles in bench.iter_batches(batch_size, num_workers):
        for m in todo:
            buffers[m.name][idx] = m.embed_tiles(tiles)
        done += len(idx)
        if progress is not None:
            rate = done / max(1e-9, time.monotonic() - started)
            progress.advance(task, len(idx), rate=f"{rate:.0f} tiles/s")
    stats["seconds"] = time.monotonic() - started
    stats["tiles_embedded"] = done * len(todo)
    for m in todo:
        arr = buffers[m.name]
        if not np.isfinite(arr).all():
            raise ValueError(f"model {m.name} produced non-finite embeddings on benchmark {bench.name}")
        meta = {
            "model": m.name,
            "spec": m.spec,
            "model_digest": m.digest,
            "benchmark": bench.name,
            "benchmark_sha256": bench.sha256,
            "shape": list(arr.shape),
        }
        _atomic_save(cache_path(cache_dir, m, bench), arr, meta)
        out[m.name] = arr
    return out, stats
