"""Where a `g2l tile` call spends its CPU: start-up, each stage of a slide, the tile loop, shards.

Runs `g2l tile` over the benchmark's slides in a fresh process with cProfile on every Python thread, each
timed by its own thread CPU clock (`time.thread_time`), so the figures are CPU seconds whatever else the
machine runs (a wall-clock or sampling profile on a shared box counts time spent waiting for a core).
Prints the CPU of each stage (the cumulative time of the functions that do it), per slide and per tile,
the process's total CPU from the OS (C++ threads such as cuCIM's included), and the wall time; then the
heaviest imports (`python -X importtime`) and the CPU of a no-op rerun (the fixed cost of a call).

    PYTHONPATH=. python benchmarks/profile_tiling.py [--set small] [--count 40] [--work /tmp/g2l-bench]
    PYTHONPATH=. python benchmarks/profile_tiling.py --set large --count 2 --tile-costs
    PYTHONPATH=. python benchmarks/profile_tiling.py --set small --count 40 --by-thread

`--by-thread` runs without a profiler and splits the run's CPU by thread kind (tile workers, set-up and
finishing, shards, the calling thread) and its wall time by phase (start-up until the first tile task,
tiles, shards, exit), as core-seconds: wall x cores, against which idle cores show.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (stage, function names, caller name or None): a stage's CPU is the cumulative CPU of those functions
# (only the calls made from `caller` when one is given). Names from before and after issue 15 are both
# listed; a stage's functions never call each other, so nothing is counted twice within a stage.
STAGES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("imports", ("_find_and_load",), None),
    ("manifest load", ("load",), "tile"),
    ("slide open + probe", ("open_reader",), None),
    ("tissue image read", ("bounded_thumbnail",), "_prepare"),
    ("tissue detection", ("detect_tissue",), None),
    ("grid + tissue fractions", ("grid", "tile_tissue_fractions"), None),
    ("read path choice (first/last tile checks)", ("choose_read_path",), None),
    ("JPEG decode of stored tiles", ("_decode",), "read_resized"),
    ("JPEG decode of stored tiles", ("decode_bgr",), "read_resized"),
    ("JPEG decode of stored tiles", ("decode_at_scale",), "read_resized"),
    ("JPEG decode of stored tiles", ("jpeg",), "tile"),
    ("area-average resample + colour order", ("resize", "cvtColor"), "read_resized"),
    ("area-average resample + colour order", ("resize_area", "_resize_area"), None),
    ("JPEG encode", ("_encode_jpeg", "encode_jpeg"), None),
    ("backend read_regions (reader path)", ("read_regions",), "_slide_items"),
    ("backend read_regions (reader path)", ("read_regions",), "_tile_bytes"),
    ("backend read_regions (reader path)", ("read_regions",), "tile_bytes"),
    ("tar members + sha256", ("add",), "_write"),
    ("tar members + sha256", ("add",), "_handle"),
    ("tar members + sha256", ("add_members",), "_handle"),
    ("tar members + sha256", ("tar_member",), "_stored_members"),
    ("QC image read", ("bounded_thumbnail",), "_write"),
    ("QC image read", ("qc_image",), None),
    ("QC thumbnail render + PNG", ("render_thumbnail",), None),
    ("coords parquet", ("write_table",), None),
    ("meta.json and other small writes", ("write_json",), None),
    ("shards + index", ("_pack_run",), None),
    ("shards + index", ("build_shards",), "write_shards"),
)


def _name(func: str) -> str:
    """The bare name of a profiled function ("<built-in method cv2.resize>" -> "resize")."""
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)'?(?: of [^>]*)?>?$", func)
    return m.group(1) if m else func


def _child(manifest: str, out: str, extra: list[str], stats_path: str) -> None:
    """Run `g2l tile` in this process with per-thread CPU profiles; write the stage table as JSON."""
    import cProfile
    import pstats
    import threading

    finished: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        # Each thread profiles itself and stops in its own thread: a profile stopped from another thread
        # would close its open calls with that thread's CPU clock.
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()
            finished.append(profile)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main = cProfile.Profile(time.thread_time)
    wall = time.perf_counter()
    main.enable()
    from g2l.cli import app

    try:
        app(["tile", "--manifest", manifest, "--out", out, "--quiet", *extra], standalone_mode=False)
    finally:
        main.disable()
        wall = time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = pstats.Stats(main)
    for profile in finished:
        stats.add(profile)
    stats.dump_stats(f"{stats_path}.pstats")  # for `python -m pstats` (all threads, thread CPU time)
    table: dict[str, float] = collections.Counter()
    for stage, names, caller in STAGES:
        for (_, _, func), (_, _, _, cum, callers) in stats.stats.items():  # type: ignore[attr-defined]
            if _name(func) not in names:
                continue
            if caller is None:
                table[stage] += cum
            else:
                table[stage] += sum(v[3] for (_, _, f), v in callers.items() if _name(f) == caller)
    result = {
        "stages": dict(table),
        "process_cpu": usage.ru_utime + usage.ru_stime,
        "wall": wall,
    }
    Path(stats_path).write_text(json.dumps(result))


def _child_threads(manifest: str, out: str, extra: list[str], stats_path: str) -> None:
    """Run `g2l tile` here unprofiled; write CPU seconds per thread kind and the phases' wall clock."""
    import concurrent.futures.thread as futures_thread
    import threading

    start = time.perf_counter()
    by_kind: dict[str, float] = collections.Counter()
    lock = threading.Lock()
    original_run = threading.Thread.run

    def timed_run(self: threading.Thread) -> None:
        begin = time.thread_time()
        try:
            original_run(self)
        finally:
            with lock:
                by_kind[re.sub(r"[_-]?\d+$", "", self.name)] += time.thread_time() - begin

    threading.Thread.run = timed_run  # type: ignore[method-assign]
    marks: dict[str, float] = {}
    original_submit = futures_thread.ThreadPoolExecutor.submit

    def marked_submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        if getattr(self, "_thread_name_prefix", "") == "g2l-tile":
            marks.setdefault("first tile task", time.perf_counter() - start)
        return original_submit(self, fn, *args, **kwargs)

    futures_thread.ThreadPoolExecutor.submit = marked_submit  # type: ignore[method-assign]
    import g2l.tiling.runner as runner

    original_shards = runner.write_shards

    def marked_shards(*args, **kwargs):  # type: ignore[no-untyped-def]
        marks["tiles done"] = time.perf_counter() - start
        try:
            return original_shards(*args, **kwargs)
        finally:
            marks["shards done"] = time.perf_counter() - start

    runner.write_shards = marked_shards
    from g2l.cli import main

    # The console script's own entry (its exit included), as a user runs `g2l tile`.
    sys.argv = ["g2l", "tile", "--manifest", manifest, "--out", out, "--quiet", *extra]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "by_kind": dict(by_kind),
        "main": time.thread_time(),
        "process_cpu": usage.ru_utime + usage.ru_stime,
        "marks": marks,
        "wall_in_process": time.perf_counter() - start,
    }
    Path(stats_path).write_text(json.dumps(result))


def by_thread(manifest: Path, out: Path, extra: list[str], stats_path: Path, cores: int) -> None:
    """Print the core-second budget of one unprofiled `g2l tile` run (CPU by thread kind, wall by phase)."""
    subprocess.run(["rm", "-rf", str(out)], check=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, __file__, *extra, "--child-threads", str(manifest), str(out), str(stats_path)]
    begin = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - begin
    result = json.loads(stats_path.read_text())
    marks = result["marks"]
    in_process = result["wall_in_process"]
    # Before the process's own clock started: the interpreter's start; after it stopped: its exit.
    outside = wall - in_process
    phases = [
        ("start-up: imports, config, manifest, first slide's set-up", marks.get("first tile task", 0.0)),
        (
            "tiles (set-up and finishing of the others overlap)",
            marks["tiles done"] - marks.get("first tile task", 0.0),
        ),
        ("shards + index", marks["shards done"] - marks["tiles done"]),
        ("interpreter start and exit, summary", in_process - marks["shards done"] + outside),
    ]
    print(
        f"wall {wall:.2f} s = {cores * wall:.2f} core-seconds on {cores} cores; "
        f"process CPU {result['process_cpu']:.2f} s"
    )
    print("| phase | wall s |\n|---|---|")
    for name, seconds in phases:
        print(f"| {name} | {seconds:.2f} |")
    print("\n| thread | CPU s |\n|---|---|")
    kinds = sorted(result["by_kind"].items(), key=lambda kv: -kv[1])
    for name, seconds in [("calling thread (imports, writer)", result["main"]), *kinds]:
        print(f"| {name} | {seconds:.2f} |")
    native = result["process_cpu"] - result["main"] - sum(result["by_kind"].values())
    print(f"| native threads (cuCIM, libraries) | {native:.2f} |")
    print(f"| idle core-seconds | {cores * wall - result['process_cpu']:.2f} |")


def startup(manifest: Path, out: Path, extra: list[str]) -> tuple[float, float, list[tuple[str, float]]]:
    """CPU and wall seconds of a no-op rerun (the fixed cost of a call) and the heaviest imports."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "g2l", "tile", "--manifest", str(manifest), "--out", str(out), "--quiet"]
    cpus, walls = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd + extra, env=env, cwd=REPO, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd[1:], *extra],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    by_package: dict[str, float] = collections.Counter()
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            by_package[m.group(2).split(".")[0]] += int(m.group(1)) / 1e6
    return min(cpus), min(walls), sorted(by_package.items(), key=lambda kv: -kv[1])[:12]


def tile_costs(uri: str, rounds: int = 3) -> dict[str, list[float]]:
    """CPU ms per output tile of the floor and of g2l's tile task (DCT-scaled, exact), alternating.

    One slide, one process, a pool of two threads each: the floor decodes the stored tiles under the
    kept tiles; the tile task makes each kept tile (decode, resample, encode) as the pipeline does.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import imagecodecs

    from g2l.manifest.table import ManifestTable
    from g2l.tiling.config import TilingConfig
    from g2l.tiling.manifest_io import slide_rows
    from g2l.tiling.outputs import OutputRoot
    from g2l.tiling.slide import PreparedSlide, prepare_slide

    columns = ("slide_id", "uri", "cancer_type", "site")
    record = {"slide_id": "s", "uri": uri, "cancer_type": "b", "site": "S"}
    row = slide_rows(ManifestTable(columns, (record,)))[0]
    makers = {}
    for name, config in (("scaled", TilingConfig()), ("exact", TilingConfig(jpeg_scaled_decode=False))):
        scratch = Path(tempfile.mkdtemp(prefix="g2l-tile-costs-"))
        prepared = prepare_slide(row, OutputRoot(scratch), config)
        if (
            not isinstance(prepared, PreparedSlide)
            or prepared.maker is None
            or not prepared.maker.stored_path
        ):
            raise SystemExit(f"{uri}: not a slide whose stored tiles are decoded directly")
        makers[name] = prepared.maker
    maker = makers["scaled"]
    n, stored, k = len(maker), maker.stored, maker.plan.read_px // maker.stored.tile  # type: ignore[union-attr]
    raw = [
        stored.raw(maker._xl[i] + dx * stored.tile, maker._yl[i] + dy * stored.tile)
        for i in range(n)
        for dy in range(k)
        for dx in range(k)
    ]

    def floor() -> None:
        chunks = iter([raw[i : i + 32] for i in range(0, len(raw), 32)])
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                for data in chunk:
                    imagecodecs.jpeg8_decode(data, tables=stored.tables or None)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def tiles(name: str) -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(makers[name].tile, range(n)))

    costs: dict[str, list[float]] = {"floor": [], "scaled": [], "exact": []}
    for _ in range(rounds):
        for name, fn in (
            ("floor", floor),
            ("scaled", lambda: tiles("scaled")),
            ("exact", lambda: tiles("exact")),
        ):
            cpu = time.process_time()
            fn()
            costs[name].append(1000 * (time.process_time() - cpu) / n)
    return costs


def main() -> None:
    """Profile one slide set and print the stage table and the start-up figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", default="small", choices=("small", "large", "20x"))
    parser.add_argument("--count", type=int, default=40, help="slides in the set")
    parser.add_argument("--unique", type=int, default=8)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument(
        "--tile-costs", action="store_true", help="only: floor vs g2l's tile task, CPU ms per tile, one slide"
    )
    parser.add_argument(
        "--by-thread", action="store_true", help="only: CPU by thread kind and wall by phase, no profiler"
    )
    parser.add_argument("--child", nargs=3, metavar=("MANIFEST", "OUT", "STATS"), help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = ["--workers", str(args.workers)] if args.workers else []
    if args.child:
        _child(*args.child[:2], extra, args.child[2])
        return
    if args.child_threads:
        _child_threads(*args.child_threads[:2], extra, args.child_threads[2])
        return
    sys.path.insert(0, str(REPO))
    from benchmarks.tiling import default_sets, make_slides, warm

    work = args.work or Path(tempfile.mkdtemp(prefix="g2l-profile-"))
    # As installed (bytecode compiled), not as an editable checkout under PYTHONDONTWRITEBYTECODE.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "g2l")], check=True)
    spec = default_sets(args.count, args.count)[args.set]
    df = make_slides(work, spec, args.unique)
    warm(df["uri"].tolist())
    if args.tile_costs:
        for name, values in tile_costs(str(df["uri"].iloc[0])).items():
            print(f"{name:7s} CPU ms per output tile, rounds: {', '.join(f'{v:.2f}' for v in values)}")
        return
    manifest = work / f"profile_{args.set}.csv"
    df.to_csv(manifest, index=False)
    if args.by_thread:
        from benchmarks.tiling import _cores

        by_thread(manifest, work / "out_profile", extra, work / "profile_threads.json", _cores())
        return
    out = work / "out_profile"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    stats_path = work / "profile_stats.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, __file__, *(["--workers", str(args.workers)] if args.workers else [])]
    subprocess.run([*cmd, "--child", str(manifest), str(out), str(stats_path)], env=env, cwd=REPO, check=True)
    result = json.loads(stats_path.read_text())
    metas = [json.loads((out / "tiles" / s / "meta.json").read_text()) for s in df["slide_id"]]
    n_slides, n_tiles = len(metas), sum(m["n_tiles"] for m in metas)
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(
        f"{n_slides} slides, {n_tiles} tiles (set {args.set}); process CPU {result['process_cpu']:.2f} s, "
        f"wall {result['wall']:.2f} s under load {load}\n"
    )
    print("| stage | CPU s | CPU ms per slide | CPU ms per tile | share of process CPU |")
    print("|---|---|---|---|---|")
    total = result["process_cpu"]
    stages = sorted(result["stages"].items(), key=lambda kv: -kv[1])
    for stage, s in stages:
        if s > 0:
            print(
                f"| {stage} | {s:.2f} | {1000 * s / n_slides:.1f} | "
                f"{1000 * s / n_tiles:.3f} | {s / total:.0%} |"
            )
    rest = total - sum(s for _, s in stages)
    print(
        f"| everything else (incl. native threads) | {rest:.2f} | {1000 * rest / n_slides:.1f} | "
        f"{1000 * rest / n_tiles:.3f} | {rest / total:.0%} |"
    )
    cpu, wall, imports = startup(manifest, out, extra)
    print(
        "\nfixed cost of a call (no-op rerun of the finished run, best of 3): "
        f"CPU {cpu:.2f} s, wall {wall:.2f} s"
    )
    print("heaviest imports (self time summed by top-level package, -X importtime, wall):")
    for package, s in imports:
        print(f"  {package:24s} {s:.3f} s")


if __name__ == "__main__":
    main()
