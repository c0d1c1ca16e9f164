"""Fill an embedding cache: decode + augment in DataLoader workers, teacher forward, atomic parts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g2l.embed.config import EmbedConfig
from g2l.embed.key import cache_key, key_material
from g2l.embed.locations import CacheDest, ShardSource, dest_for
from g2l.embed.shards import ShardError, decode_tile, iter_shard
from g2l.models import LoadedModel, build_model, embed
from g2l.views import ViewSpec, make_views

Forward = Callable[[torch.Tensor], torch.Tensor]


class EmbedError(RuntimeError):
    """The embedding run could not finish every part; the message names the shards and the fix."""


class _ShardViews(torch.utils.data.IterableDataset):
    """Yields per-part batches of K views per tile (uint8 NHWC), then an end-of-part marker.

    Each DataLoader worker takes whole parts (every num_workers-th), so a part's batches arrive in
    order and batch boundaries depend only on the part, never on the worker count.
    """

    def __init__(self, source: ShardSource, tasks: list[tuple[int, dict[str, Any]]], spec: ViewSpec,
                 tiles_per_batch: int, keep: set[str] | None = None):
        self.source, self.tasks, self.spec = source, tasks, spec
        self.tiles_per_batch = tiles_per_batch
        self.keep = keep  # the tile budget's choice; None = every tile

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        tasks = self.tasks[info.id::info.num_workers] if info is not None else self.tasks
        for part, entry in tasks:
            name = entry["name"]
            keys: list[str] = []
            views: list[np.ndarray] = []
            start = 0
            for key, jpg, _meta in iter_shard(self.source.local_path(entry)):
                if self.keep is not None and key not in self.keep:
                    continue
                try:
                    tile = decode_tile(jpg)
                except Exception as exc:  # name the tile: a DataLoader worker's traceback would not
                    raise ShardError(f"shard {name}: tile {key}: cannot decode its JPEG ({exc}); "
                                     f"rerun tiling for this slide") from exc
                keys.append(key)
                views.append(make_views(tile, key, self.spec))
                if len(keys) == self.tiles_per_batch:
                    yield {"part": part, "start": start, "keys": keys, "images": _stack(views)}
                    start += len(keys)
                    keys, views = [], []
            if keys:
                yield {"part": part, "start": start, "keys": keys, "images": _stack(views)}
                start += len(keys)
            yield {"part": part, "end": True, "count": start}


def _stack(views: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(views))


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EmbedError(f"--device {name} but CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


def default_forward(model: LoadedModel, device: torch.device, precision: str) -> Forward:
    """The teacher forward: CLS (or CLS ++ mean patch) under bf16 autocast when asked."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            return embed(model, x)

    return forward


def forward_with_backoff(forward: Forward, x: torch.Tensor, micro: int,
                         on_halve: Callable[[int], None] | None = None) -> tuple[torch.Tensor, int]:
    """Run `forward` over `x` in chunks of `micro`; on out-of-memory halve the chunk and retry.

    Returns the float32 CPU embeddings and the chunk size that worked (callers keep using it).
    """
    outs: list[torch.Tensor] = []
    i = 0
    while i < x.shape[0]:
        chunk = x[i:i + micro]
        try:
            out = forward(chunk)
        except torch.OutOfMemoryError:
            if micro == 1:
                raise
            micro = max(1, micro // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if on_halve is not None:
                on_halve(micro)
            continue
        outs.append(out.detach().float().cpu())
        i += chunk.shape[0]
    return torch.cat(outs), micro


def compute_key(shard_index: dict[str, Any], config: EmbedConfig, model: LoadedModel) -> tuple[str, dict]:
    """The cache key (and its material) for these shards, config and teacher."""
    budget = config.tile_budget()
    material = key_material(
        teacher=model.name, weights_sha256=model.weights_sha256, preprocess=model.preprocess,
        view_spec=config.view_spec(), embedding=model.embedding, shards_sha256=shard_index["sha256"],
        tile_budget=budget.to_dict() if budget.active else None,
    )
    return cache_key(material), material


def budgeted(source: ShardSource, entries: list[dict[str, Any]],
             config: EmbedConfig) -> tuple[list[dict[str, Any]], set[str] | None]:
    """Shard entries whose n_tiles counts only the tiles the budget keeps, and those tiles (None: all)."""
    from g2l.tile_budget import choose_in_shards

    budget = config.tile_budget()
    if not budget.active:
        return entries, None
    problems = [why for e in entries if (why := source.problem(e))]
    if problems:  # the choice is per slide, and a slide's tiles may span shards: all must be readable
        raise ShardError("; ".join(problems))
    keep, keys = choose_in_shards([source.local_path(e) for e in entries], budget)
    return [dict(e, n_tiles=sum(k in keep for k in ks)) for e, ks in zip(entries, keys, strict=True)], keep


def run_embed(
    shards: str | Path,
    out_root: str | Path,
    config: EmbedConfig,
    rank: int = 0,
    world_size: int = 1,
    quiet: bool = False,
    *,
    model: LoadedModel | None = None,
    forward: Forward | None = None,
    run_id: str = "local",
    cancer: str = "none",
    repair: bool = False,
) -> str:
    """Embed every tile's K views with the teacher into ROOT/embeddings/<key>/; returns that directory.

    Rank R of W computes parts R, R+W, ...; finished parts (sha256-checked) are skipped; the rank that
    finds every part present seals the cache (index.json, then _COMPLETE). A sealed cache is immutable:
    a rerun only checks it and writes nothing into it; a damaged one raises CacheError unless `repair`,
    which unseals it, recomputes the damaged parts and seals it again. `model` / `forward` inject a
    prebuilt teacher or a forward callable (preprocessed batch -> [B, dim]) - tests use them to count
    calls or simulate out-of-memory.
    """
    from g2l.metrics import StageMetrics
    from g2l.progress import console, progress

    if not (world_size >= 1 and 0 <= rank < world_size):
        raise EmbedError(f"--rank {rank} --world-size {world_size}: need 0 <= rank < world_size")
    source = ShardSource(shards)
    shard_index = source.index()
    embedding = None if config.embedding == "auto" else config.embedding
    loaded = model or build_model(config.teacher, config.weights, device="cpu", embedding=embedding)
    key, material = compute_key(shard_index, config, loaded)
    dest = dest_for(out_root, key, rank)
    n_parts = len(shard_index["shards"])
    ranks_parts = list(range(rank, n_parts, world_size))
    if dest.sealed() and _sealed_and_intact(dest, material, ranks_parts, repair):
        with StageMetrics("embed", run_id=run_id, cancer=cancer, root=str(out_root)) as metrics:
            metrics.gauge("parts_total", "Parts (shards) in the cache").set(n_parts)
            metrics.counter("parts_skipped_total", "Parts already present and intact").inc(len(ranks_parts))
        console.print(f"embed: cache {key[:12]} is sealed and intact; nothing to do, nothing rewritten")
        return dest.location
    dest.prepare(material)

    entries, keep = budgeted(source, shard_index["shards"], config)
    mine = list(range(rank, len(entries), world_size))
    todo = [i for i in mine if not dest.part_done(i, entries[i])]
    problems: list[str] = []
    runnable: list[int] = []
    for i in todo:
        why = source.problem(entries[i])
        (problems.append(why) if why else runnable.append(i))

    with StageMetrics("embed", run_id=run_id, cancer=cancer, root=str(out_root)) as metrics:
        metrics.gauge("parts_total", "Parts (shards) in the cache").set(len(entries))
        metrics.counter("parts_skipped_total", "Parts already present and intact").inc(len(mine) - len(todo))
        if runnable:
            _compute(runnable, entries, source, dest, config, loaded, forward, rank, quiet,
                     metrics, console, progress, keep)
        if problems:
            metrics.failures.inc(len(problems))
            raise ShardError("; ".join(problems))
        complete = dest.finalize(material, shard_index, loaded.embed_dim, _teacher_origin(config, model))
    skipped = len(mine) - len(todo)
    state = "complete" if complete else "waiting for other ranks' parts"
    console.print(f"embed: rank {rank}/{world_size}: {len(runnable)} part(s) computed, {skipped} already "
                  f"present; cache {key[:12]} {state}")
    return dest.location


def _teacher_origin(config: EmbedConfig, injected: LoadedModel | None) -> dict[str, Any]:
    """Where the teacher came from (index.json, not the key): what `g2l audit` rebuilds it from."""
    import os

    weights = config.weights
    if weights is not None and "://" not in weights:
        weights = os.path.abspath(weights)
    spec = injected.name if injected is not None else config.teacher
    if os.path.exists(spec):  # a local model directory: absolute, so the audit finds it from anywhere
        spec = os.path.abspath(spec)
    return {"teacher_spec": spec, "teacher_weights": weights}


def _sealed_and_intact(dest: CacheDest, material: dict[str, Any], mine: list[int], repair: bool) -> bool:
    """True when this rank's parts of a sealed cache are intact; a damaged one raises, or with `repair` is
    unsealed (False: the caller recomputes the damaged parts and seals again)."""
    from g2l.embed.cache import CacheError
    from g2l.progress import console

    damaged = dest.check_sealed(material, mine)  # each rank checks its own share, as it fills it
    if not damaged:
        return True
    if not repair:
        raise CacheError(
            f"sealed cache {dest.location} is damaged: {'; '.join(damaged)}. A sealed cache is never "
            f"rewritten in place (other nodes may be reading it); rerun with --repair to recompute only "
            f"the damaged parts and seal it again"
        )
    console.print(f"[yellow]embed: repairing {dest.location}: {'; '.join(damaged)}[/yellow]")
    dest.unseal()
    return False


def _compute(parts: list[int], entries: list[dict[str, Any]], source: ShardSource, dest: CacheDest,
             config: EmbedConfig, loaded: LoadedModel, forward: Forward | None, rank: int, quiet: bool,
             metrics: Any, console: Any, progress: Any, keep: set[str] | None = None) -> None:
    device = resolve_device(config.device)
    spec = config.view_spec()
    k = spec.views
    if forward is None:
        loaded.model.to(device).eval()
        if device.type == "cuda":
            loaded.model.to(memory_format=torch.channels_last)
        fwd: Forward = default_forward(loaded, device, config.precision)
        if config.compile:
            fwd = torch.compile(fwd)  # type: ignore[assignment]
    else:
        fwd = forward

    tiles_per_batch = max(1, config.batch_size // k)
    dataset = _ShardViews(source, [(i, entries[i]) for i in parts], spec, tiles_per_batch, keep)
    workers = min(config.num_workers, len(parts))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, persistent_workers=False,
    )
    embedded = metrics.counter("embeddings_total", "Tile views embedded")
    done = metrics.counter("parts_done_total", "Parts computed and written")
    rate_gauge = metrics.gauge("embeddings_per_second", "Tile views embedded per second")
    micro_gauge = metrics.gauge("batch_size", "Forward batch size in use (halved on out-of-memory)")
    gpu_mem = metrics.gauge("gpu_memory_bytes", "Peak GPU memory allocated")

    micro = config.batch_size
    micro_gauge.set(micro)

    def halved(new: int) -> None:
        console.print(f"[yellow]embed: CUDA out of memory; halving the batch to {new} and going on[/yellow]")
        micro_gauge.set(new)

    buffers: dict[int, np.ndarray] = {}
    keys: dict[int, list[str]] = {}
    total_tiles = sum(int(entries[i]["n_tiles"]) for i in parts)
    started = time.monotonic()
    n_views = 0
    with progress(quiet) as bar, torch.inference_mode():
        task = bar.add_task(f"embed rank {rank}", total=total_tiles)
        for item in loader:
            part = int(item["part"])
            if item.get("end"):
                n = int(entries[part]["n_tiles"])
                if int(item["count"]) != n or (n and part not in buffers):
                    raise ShardError(f"shard {entries[part]['name']} holds {item['count']} tiles but "
                                     f"index.json says {n}; rerun tiling so shards and index agree")
                array = buffers.pop(part, np.zeros((0, k, loaded.embed_dim), np.float16))
                dest.write_part(part, array, keys.pop(part, []), entries[part])
                done.inc()
                continue
            images = item["images"]
            b = len(item["keys"])
            x = loaded.preprocess(images.to(device, non_blocking=True).reshape(b * k, *images.shape[2:]))
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            out, micro = forward_with_backoff(fwd, x, micro, halved)
            if out.shape != (b * k, loaded.embed_dim):
                raise EmbedError(f"teacher {loaded.name} returned {tuple(out.shape)}, expected "
                                 f"{(b * k, loaded.embed_dim)} embeddings")
            n = int(entries[part]["n_tiles"])
            if part not in buffers:
                buffers[part] = np.zeros((n, k, loaded.embed_dim), np.float16)
                keys[part] = []
            start = int(item["start"])
            if start + b > n:
                raise ShardError(f"shard {entries[part]['name']} holds more tiles than index.json's {n}; "
                                 f"rerun tiling so shards and index agree")
            buffers[part][start:start + b] = out.reshape(b, k, -1).numpy().astype(np.float16)
            keys[part].extend(item["keys"])
            n_views += b * k
            embedded.inc(b * k)
            rate = n_views / max(time.monotonic() - started, 1e-9)
            rate_gauge.set(rate)
            bar.advance(task, b, rate=f"{rate:.1f} views/s")
    if device.type == "cuda":
        gpu_mem.set(torch.cuda.max_memory_allocated(device))


