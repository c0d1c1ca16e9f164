"""Embedding-cache throughput: `run_embed` images/s vs a bare `model(x)` loop over preloaded tensors.

Both run in the same process on the same model, so the ratio measures what the cache pipeline
(shard reading, JPEG decode, seeded views, preprocessing, atomic part writes) costs on top of the
forward. On CUDA it also reports model FLOPs utilisation (MFU) against the chip's dense bf16 peak.

    PYTHONPATH=. python benchmarks/embed.py                       # CPU, ViT-S/16 random init
    PYTHONPATH=. python benchmarks/embed.py --device cuda --model vit-g14-random --tiles 2048
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2l.embed import EmbedConfig, decode_tile, iter_shard, run_embed  # noqa: E402
from g2l.embed.runner import default_forward  # noqa: E402
from g2l.models import build_model  # noqa: E402
from g2l.views import make_views  # noqa: E402
from tests.fixtures.shards import write_synthetic_shards  # noqa: E402

# Dense bf16 peak FLOP/s by device name fragment (vendor datasheets, SXM parts).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def flops_per_image(model, preprocess, device) -> float:
    """Model FLOPs of one forward at the model's input size (torch's FLOP counter; matmuls + attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, preprocess.input_px, preprocess.input_px, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.model(x)
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="vit_small_patch16_224", help="registered or timm name (random init)")
    ap.add_argument("--tiles", type=int, default=48)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak of a GPU not in the table")
    args = ap.parse_args()

    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="g2l-bench-embed-"))
    try:
        # two shards, each several forward batches long, as real shards (thousands of tiles) are
        per_shard = max(1, args.tiles // 2)
        shards = write_synthetic_shards(
            work, slides=("benchA", "benchB"), tiles_per_slide=args.tiles // 2, tiles_per_shard=per_shard
        )
        loaded = build_model(args.model, pretrained=False, device=device)
        cfg = EmbedConfig(
            teacher=args.model,
            views=args.views,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            compile=args.compile,
        )
        n_images = args.tiles * args.views

        # Baseline: the same views, preloaded and preprocessed on the device, through the same forward.
        spec = cfg.view_spec()
        views = np.concatenate(
            [
                make_views(decode_tile(jpg), key, spec)
                for shard in sorted(shards.glob("shard-*.tar"))
                for key, jpg, _ in iter_shard(shard)
            ]
        )
        x_all = loaded.preprocess(torch.from_numpy(views).to(device))
        if device.type == "cuda":
            loaded.model.to(memory_format=torch.channels_last)
            x_all = x_all.contiguous(memory_format=torch.channels_last)
        forward = default_forward(loaded, device, cfg.precision)
        if args.compile:
            forward = torch.compile(forward)

        def bare() -> float:
            with torch.inference_mode():
                forward(x_all[: args.batch_size])  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for i in range(0, n_images, args.batch_size):
                    forward(x_all[i : i + args.batch_size]).float().cpu()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return n_images / (time.perf_counter() - t0)

        def cached(rep: int) -> float:
            out = work / f"out-{rep}"
            t0 = time.perf_counter()
            run_embed(shards, out, cfg, quiet=True, model=loaded)
            return n_images / (time.perf_counter() - t0)

        bare_rates, cache_rates = [], []
        for rep in range(args.repeats):  # interleaved so machine-load drift hits both alike
            bare_rates.append(bare())
            cache_rates.append(cached(rep))
        b, c = max(bare_rates), max(cache_rates)
        cpu = f"CPU, {torch.get_num_threads()} threads"
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
        print(
            f"device: {name}; model {args.model} ({loaded.embed_dim}-d, {args.views} views x {args.tiles} "
            f"tiles = {n_images} images, batch {args.batch_size}, workers {args.workers})"
        )
        print(
            f"bare model(x) loop, preloaded tensors: {b:9.1f} images/s   (runs: "
            f"{', '.join(f'{r:.1f}' for r in bare_rates)})"
        )
        print(
            f"g2l embed (run_embed):                 {c:9.1f} images/s   (runs: "
            f"{', '.join(f'{r:.1f}' for r in cache_rates)})"
        )
        print(f"ratio embed / bare: {c / b:.3f} (goal >= 0.9 on CPU)")
        if device.type == "cuda":
            flops = flops_per_image(loaded, loaded.preprocess, device)
            peak = (
                args.peak_tflops * 1e12
                if args.peak_tflops
                else next((v for k, v in PEAK_BF16.items() if k in name), None)
            )
            print(f"model FLOPs/image: {flops / 1e9:.1f} GFLOP")
            if peak:
                print(
                    f"MFU bare: {b * flops / peak:.1%}   MFU embed: {c * flops / peak:.1%} "
                    f"(bf16 peak {peak / 1e12:.0f} TFLOP/s; goal 55%)"
                )
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
