"""Benchmark embeddings, in a store shared across runs: embedded once per model and benchmark version.

Key = sha256(model digest (weights, preprocessing, pooling), benchmark content hash (the pixels the
model sees: rows, file bytes, input mpp and crop), precision). The store lives under the artifact
root (`<artifact_root>/eval-store`, local or gs://), so the teacher and the champion are embedded once
per benchmark version whatever the run; each entry is `<key>.npy` plus `<key>.json` (what it is),
written atomically. Relabelling or re-splitting a benchmark keeps its embeddings.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any

import numpy as np

from g2l import storage
from g2l.evaluate.benchmark import Benchmark
from g2l.evaluate.models import EvalModel

STORE_FORMAT = 1


def store_key(model: EvalModel, bench: Benchmark) -> str:
    """The content key of one model's embeddings of one benchmark version."""
    material = {
        "format": STORE_FORMAT,
        "model_digest": model.digest,
        "benchmark_content_sha256": bench.content_sha256,
        "precision": model.precision,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def store_uri(store: str, model: EvalModel, bench: Benchmark) -> str:
    """Where one model's embeddings of one benchmark live in the store."""
    return storage.join(store, f"{store_key(model, bench)}.npy")


def _load(uri: str, n: int, dim: int) -> np.ndarray | None:
    if not storage.exists(uri):
        return None
    try:
        arr = np.load(io.BytesIO(storage.read_bytes(uri)))
    except (OSError, ValueError):
        return None  # truncated or foreign file: recompute and overwrite
    return arr if arr.shape == (n, dim) and np.isfinite(arr).all() else None


def _save(uri: str, array: np.ndarray, meta: dict[str, Any]) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    storage.put_text(uri[: -len(".npy")] + ".json", json.dumps(meta, indent=2, sort_keys=True))
    storage.put_bytes(uri, buf.getvalue())  # last: the .npy is what a reader looks for


def embed_benchmark(
    models: list[EvalModel],
    bench: Benchmark,
    store: str,
    *,
    batch_size: int = 64,
    num_workers: int = 4,
    progress: Any = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings [N, dim] of `bench` per model, from the store where present; tiles decoded once for all.

    A row with several crops (`fit: grid`) gets the mean of its crops' embeddings. Returns
    `(embeddings by model name, stats)`: `cache_hits`, `tiles_embedded`, `forwards`, `seconds`.
    """
    out: dict[str, np.ndarray] = {}
    todo: list[EvalModel] = []
    for m in models:
        cached = _load(store_uri(store, m, bench), len(bench), m.embed_dim)
        if cached is None:
            todo.append(m)
        else:
            out[m.name] = cached
    stats: dict[str, Any] = {
        "cache_hits": len(models) - len(todo),
        "tiles_embedded": 0,
        "forwards": 0,
        "seconds": 0.0,
    }
    if not todo:
        return out, stats
    task = progress.add_task(f"embed {bench.name}", total=len(bench)) if progress is not None else None
    buffers = {m.name: np.zeros((len(bench), m.embed_dim), dtype=np.float32) for m in todo}
    started = time.monotonic()
    done = 0
    for idx, crops in bench.iter_batches(batch_size, num_workers):
        counts = [c.shape[0] for c in crops]
        flat = [tile for c in crops for tile in c]
        owner = np.repeat(np.arange(len(idx)), counts)
        for m in todo:
            emb = np.concatenate(
                [m.embed_tiles(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)]
            )
            sums = np.zeros((len(idx), m.embed_dim), dtype=np.float64)
            np.add.at(sums, owner, emb)
            buffers[m.name][idx] = (sums / np.asarray(counts)[:, None]).astype(np.float32)
            stats["forwards"] += len(flat)
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
            "weights_sha256": m.weights_sha256,
            "precision": m.precision,
            "benchmark": bench.name,
            "benchmark_content_sha256": bench.content_sha256,
            "input": bench.input.to_dict(),
            "shape": list(arr.shape),
        }
        _save(store_uri(store, m, bench), arr, meta)
        out[m.name] = arr
    return out, stats
