"""Tiling throughput: `g2l tile` (the command, start-up included) against the JPEG decode floor, same run.

Generates pyramidal JPEG TIFF slides at 40x (0.25 um/px, 256 px stored tiles; read at level 0 and
area-averaged 2x to 0.5 um/px) in two sets, plus an optional 20x set (read as stored, tiles copied):
  * small - many small slides (default 40, ~230 kept tiles each): per-call start-up and per-slide set-up
            (open, tissue detection, thumbnail, grid, outputs) weigh as much as the tile loop,
  * large - a few large slides (default 2, ~2,600 kept tiles each): the tile loop dominates,
  * 20x   - (`--sets small,large,20x`) slides whose stored tiles are copied as they are,
and prints, for each set, tiles/s and CPU ms per tile of:
  * floor - decoding, with imagecodecs on all cores, every stored JPEG tile (at the level g2l reads) under a
            kept tile, bytes already in memory: the cost of just getting the pixels out of the file,
  * g2l   - `python -m g2l tile` as a user runs it (a fresh process: imports, manifest, every slide's
            set-up, tiles, coords, thumbnails, shards, index), all cores,
  * naive - one thread: openslide read_region + PIL box resize + PIL JPEG encode (first few slides only),
with the ratios g2l/floor (goal >= 0.7 on an idle machine) and g2l/naive. Rounds interleave floor and g2l
so that a change in the machine's load hits both alike; the best of `--repeat` rounds is reported, and
the median beside it.

`--device cuda` runs g2l with cuCIM decoding on the GPU (nvJPEG) and resampling there; the floor stays the
CPU decode floor of the same node.

    PYTHONPATH=. python benchmarks/tiling.py [--small 40] [--large 2] [--repeat 3] [--work /tmp/g2l-bench]
        [--compare /tmp/g2l-before] [--device cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _blobs(width: int, height: int, seed: int) -> list:
    """Three large tissue sections covering about 40% of the slide, like a typical resection slide."""
    from g2l.synth.slides import Blob

    rng = np.random.default_rng(seed)
    blobs = []
    for i, fx in enumerate((0.2, 0.5, 0.8)):
        r = 0.15 * width
        blobs.append(
            Blob(
                cx=fx * width,
                cy=height * rng.uniform(0.4, 0.6),
                rx=r,
                ry=0.4 * height,
                angle=float(rng.uniform(-0.2, 0.2)),
                wave=((0.06, 3, float(rng.uniform(0, 6))), (0.04, 5, float(rng.uniform(0, 6)))),
                hole=(fx * width, 0.5 * height, 0.2 * r, 0.1 * height) if i == 1 else None,
            )
        )
    return blobs


@dataclasses.dataclass(frozen=True)
class SlideSet:
    """One group of generated slides tiled together by one `g2l tile` call."""

    name: str
    label: str
    count: int
    width: int
    height: int
    mpp: float


def default_sets(small: int, large: int) -> dict[str, SlideSet]:
    """The benchmark's slide sets (small and large 40x, optional 20x)."""
    return {
        "small": SlideSet("small", "40x, many small slides", small, 12288, 8192, 0.25),
        "large": SlideSet("large", "40x, a few large slides", large, 40960, 28672, 0.25),
        "20x": SlideSet("20x", "20x, stored tiles copied", large, 12288, 8192, 0.5),
    }


def make_slides(work: Path, spec: SlideSet, unique: int) -> pd.DataFrame:
    """Write (or reuse) the set's slides; beyond `unique` distinct ones, the rest are hard links to them.

    Links keep generation time bounded (a 12288 x 8192 slide takes ~20 s to paint on 2 cores); each one
    is still opened, staged, detected and tiled as its own slide.
    """
    from g2l.synth.slides import write_synthetic_slide

    folder = work / "slides"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(spec.count):
        stem = f"{spec.name}_{spec.width}x{spec.height}_{spec.mpp}"
        path = folder / f"{stem}_{i:03d}.svs"
        if not path.exists():
            source = folder / f"{stem}_{i % max(1, unique):03d}.svs"
            if i >= unique and source.exists():
                os.link(source, path)
            else:
                write_synthetic_slide(
                    path,
                    width=spec.width,
                    height=spec.height,
                    mpp=spec.mpp,
                    seed=100 + i,
                    blobs=_blobs(spec.width, spec.height, i),
                    pen_mark=True,
                )
        rows.append(
            {"slide_id": f"{spec.name}_{i:03d}", "uri": str(path), "cancer_type": "bench", "site": "S"}
        )
    return pd.DataFrame(rows)


def warm(paths: list[str]) -> None:
    """Read every slide once so all contestants start from the page cache."""
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


@dataclasses.dataclass
class Timing:
    """Wall and CPU seconds of one measured run."""

    wall: float
    cpu: float


def run_cli(
    manifest: Path, out: Path, workers: int, device: str, backend: str | None, repo: Path = REPO
) -> Timing:
    """`python -m g2l tile` (of the g2l in `repo`) into a fresh `out`, timed as a user sees it.

    Wall seconds, and the CPU seconds of the child process over all its threads.
    """
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(repo))
    env["G2L_SLIDES_DEVICE"] = device
    cmd = [sys.executable, "-m", "g2l", "tile", "--manifest", str(manifest), "--out", str(out), "--quiet"]
    cmd += ["--workers", str(workers)]
    if backend:
        cmd += ["--backend", backend]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # cwd: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH.
    done = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"g2l tile failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if summary["slides_failed"]:
        raise RuntimeError(f"benchmark run had failed slides: {summary}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def kept_tiles(out: Path, slide_id: str) -> tuple[pd.DataFrame, dict]:
    """Coords and meta.json of one tiled slide."""
    meta = json.loads((out / "tiles" / slide_id / "meta.json").read_text())
    return pq.read_table(out / "tiles" / slide_id / "coords.parquet").to_pandas(), meta


def floor_jobs(df: pd.DataFrame, out: Path) -> list[tuple[bytes, bytes, tuple[int, int]]]:
    """(tables, tile bytes, (rows, cols)) of every stored JPEG tile under a kept tile, at g2l's level."""
    import tifffile

    from g2l.tiling.stored_tiles import find_level_page

    jobs = []
    for row in df.itertuples():
        coords, meta = kept_tiles(out, row.slide_id)
        ds = meta["downsample"]
        w0, h0 = meta["dimensions"]
        level_w, level_h = (int(round(w0 / ds)), int(round(h0 / ds))) if ds != 1 else (w0, h0)
        with tifffile.TiffFile(row.uri) as tif:
            page = find_level_page(tif, level_w, level_h)
            tw, th = page.tilewidth, page.tilelength
            across = -(-page.imagewidth // tw)
            wanted = set()
            for t in coords.itertuples():
                x0, y0 = int(t.x / ds), int(t.y / ds)
                x1, y1 = x0 + meta["read_px"] - 1, y0 + meta["read_px"] - 1
                for ty in range(y0 // th, y1 // th + 1):
                    for tx in range(x0 // tw, x1 // tw + 1):
                        wanted.add(ty * across + tx)
            tables = bytes(page.jpegtables or b"")
            with open(row.uri, "rb") as fh:
                for index in sorted(wanted):
                    fh.seek(page.dataoffsets[index])
                    jobs.append((tables, fh.read(page.databytecounts[index]), (th, tw)))
    return jobs


def run_floor(jobs: list[tuple[bytes, bytes, tuple[int, int]]], workers: int, *, reuse: bool) -> Timing:
    """Decode every job's JPEG with imagecodecs, one plain loop per core over a shared chunk counter.

    No futures and no per-tile Python beyond the call itself, so the floor is as low as Python allows.
    With `reuse`, each thread decodes into one buffer of its own (`out=`): the decode alone, without
    allocating each 192 KB output. Both are run; they agree within ~1 % on this box's runs
    (benchmarks/RESULTS.md), so the floor is the decode, not the allocator.
    """
    import imagecodecs
    import numpy as np

    chunks = [jobs[i : i + 32] for i in range(0, len(jobs), 32)]
    lock = threading.Lock()
    cursor = iter(chunks)

    def worker() -> None:
        buffers: dict[tuple[int, int], np.ndarray] = {}
        while True:
            with lock:
                chunk = next(cursor, None)
            if chunk is None:
                return
            for tables, data, shape in chunk:
                if reuse:
                    out = buffers.get(shape)
                    if out is None:
                        out = buffers[shape] = np.empty((*shape, 3), np.uint8)
                    imagecodecs.jpeg8_decode(data, tables=tables or None, out=out)
                else:
                    imagecodecs.jpeg8_decode(data, tables=tables or None)

    cpu, start = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Timing(time.perf_counter() - start, time.process_time() - cpu)


def run_naive(df: pd.DataFrame, out: Path, tile_px: int = 256, quality: int = 90) -> tuple[Timing, int]:
    """Single-thread openslide loop producing the same tiles (read at the level, box-resample, encode)."""
    import openslide
    from PIL import Image

    n = 0
    cpu, start = time.process_time(), time.perf_counter()
    for row in df.itertuples():
        coords, meta = kept_tiles(out, row.slide_id)
        with openslide.OpenSlide(row.uri) as slide:
            for t in coords.itertuples():
                size = int(meta["read_px"])
                region = slide.read_region((int(t.x), int(t.y)), int(meta["level"]), (size, size))
                region = region.convert("RGB")
                if region.size != (tile_px, tile_px):
                    region = region.resize((tile_px, tile_px), Image.Resampling.BOX)
                region.save(io.BytesIO(), format="JPEG", quality=quality)
                n += 1
    return Timing(time.perf_counter() - start, time.process_time() - cpu), n


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main() -> None:
    """Run the benchmark and print, per set, tiles/s, CPU ms per tile and the ratios to the floor."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=40, help="slides in the small set")
    parser.add_argument("--large", type=int, default=2, help="slides in the large (and 20x) set")
    parser.add_argument("--unique", type=int, default=8, help="distinct slides per set; the rest are links")
    parser.add_argument("--sets", default="small,large", help="comma list of small, large, 20x")
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where cuCIM decodes")
    parser.add_argument("--backend", default=None, help="g2l tile --backend (default: the config's auto)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; best and median are printed")
    parser.add_argument("--naive-slides", type=int, default=2, help="slides per set the naive loop reads")
    parser.add_argument("--work", type=Path, default=None, help="directory for slides and outputs (kept)")
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="another g2l checkout (e.g. `git worktree add /tmp/g2l-before 85fb676`) run in the same rounds",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    workers = args.workers or _cores()
    work = args.work or Path(tempfile.mkdtemp(prefix="g2l-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    backend = args.backend
    if args.device == "cuda":
        from g2l.slides.cucim_backend import gpu_available

        if not gpu_available():
            raise SystemExit("--device cuda needs a CUDA device visible to cupy")
        backend = backend or "cucim"
    # An installed g2l (wheel, container image) has its bytecode compiled at install time; an editable
    # checkout under PYTHONDONTWRITEBYTECODE would compile every module at every start instead.
    for tree in (REPO, args.compare):
        if tree is not None:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "g2l")], check=True)
    specs = default_sets(args.small, args.large)
    chosen = [specs[name] for name in args.sets.split(",")]
    start = time.perf_counter()
    slides = {spec.name: make_slides(work, spec, args.unique) for spec in chosen}
    print(
        f"machine: {_cores()} cores; workers {workers}; device {args.device}; load {_load()}; "
        f"slides ready in {time.perf_counter() - start:.1f}s under {work}"
    )
    warm([uri for df in slides.values() for uri in df["uri"]])

    manifests, tiles, jobs = {}, {}, {}
    for spec in chosen:
        manifest = work / f"manifest_{spec.name}.csv"
        slides[spec.name].to_csv(manifest, index=False)
        manifests[spec.name] = manifest
        out = work / f"out_{spec.name}"
        run_cli(manifest, out, workers, "cpu", None)  # the CPU run's tiles define what the floor decodes
        tiles[spec.name] = sum(len(kept_tiles(out, sid)[0]) for sid in slides[spec.name]["slide_id"])
        jobs[spec.name] = floor_jobs(slides[spec.name], out)

    # Interleaved rounds: floor, g2l, floor, g2l ... for every set, so load changes hit both alike.
    runs: dict[tuple[str, str], list[Timing]] = {}
    for _ in range(args.repeat):
        for spec in chosen:
            contestants: dict[str, Callable[[], Timing]] = {
                "floor": lambda s=spec: run_floor(jobs[s.name], workers, reuse=False),
                "floor, one buffer": lambda s=spec: run_floor(jobs[s.name], workers, reuse=True),
                "g2l": lambda s=spec: run_cli(
                    manifests[s.name], work / "out_bench", workers, args.device, backend
                ),
            }
            if args.compare is not None:
                contestants["g2l@compare"] = lambda s=spec: run_cli(
                    manifests[s.name], work / "out_compare", workers, args.device, backend, args.compare
                )
            for name, fn in contestants.items():
                runs.setdefault((spec.name, name), []).append(fn())
    for spec in chosen:
        subset = slides[spec.name].iloc[: args.naive_slides]
        if len(subset):
            naive, n = run_naive(subset, work / f"out_{spec.name}")
            runs[(spec.name, "naive")] = [
                Timing(naive.wall * tiles[spec.name] / n, naive.cpu * tiles[spec.name] / n)
            ]

    print(f"load average after the runs: {_load()}")
    for spec in chosen:
        n = tiles[spec.name]
        print(
            f"\n== {spec.label}: {spec.count} slides of {spec.width} x {spec.height} at {spec.mpp} um/px, "
            f"{n} tiles, {len(jobs[spec.name])} stored JPEG tiles decoded by floor"
        )
        print(
            f"  {'':18s} {'tiles/s':>9s} {'(median)':>9s}  {'CPU ms/tile':>11s}"
            "  vs floor: wall (median)   CPU"
        )
        best = {k: min(v, key=lambda t: t.wall) for (s, k), v in runs.items() if s == spec.name}
        median = {k: statistics.median(t.wall for t in v) for (s, k), v in runs.items() if s == spec.name}
        for name in ("floor", "floor, one buffer", "g2l", "g2l@compare", "naive"):
            if name not in best:
                continue
            rate, rate_med = n / best[name].wall, n / median[name]
            cpu_ms = 1000 * min(t.cpu for t in runs[(spec.name, name)]) / n
            line = f"  {name:18s} {rate:9.0f} {rate_med:9.0f}  {cpu_ms:11.2f}"
            if name != "floor":
                floor_cpu = min(t.cpu for t in runs[(spec.name, "floor")])
                cpu_ratio = floor_cpu / min(t.cpu for t in runs[(spec.name, name)])
                line += (
                    f"  {best['floor'].wall / best[name].wall:13.2f}x "
                    f"({median['floor'] / median[name]:.2f}x)  {cpu_ratio:5.2f}x"
                )
            print(line)
        # Each round's g2l run against the floor run just before it: the load and the host's clock drift
        # between rounds (a best floor from a fast minute against a g2l from a slow one says little).
        for floor_name in ("floor", "floor, one buffer"):
            rounds = zip(runs[(spec.name, floor_name)], runs[(spec.name, "g2l")], strict=True)
            paired = [floor.wall / ours.wall for floor, ours in rounds]
            print(
                f"  g2l vs {floor_name}, round by round: "
                + " ".join(f"{r:.2f}x" for r in paired)
                + f"  (median {statistics.median(paired):.2f}x)"
            )
        for name in ("floor", "floor, one buffer", "g2l"):
            print(f"  {name} wall s by round: " + " ".join(f"{t.wall:.2f}" for t in runs[(spec.name, name)]))
        if "naive" in best:
            print(f"  g2l / naive: {best['naive'].wall / best['g2l'].wall:.1f}x")
        if "g2l@compare" in best:
            print(f"  g2l / g2l@compare: {best['g2l@compare'].wall / best['g2l'].wall:.2f}x (wall)")


if __name__ == "__main__":
    main()
