"""`g2l tile` starts light: none of the training, pipeline, registry or GPU stacks is imported to tile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from g2l.slides.cucim_backend import nvidia_device_visible
from tests.fixtures.tiling import write_manifest

# Libraries `g2l tile` never needs on a CPU node (each costs 0.2-3 s of start-up when imported).
NOT_FOR_TILING = (
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "kfp",
    "mlflow",
    "sklearn",
    "matplotlib",
    "scipy",
    "pandas",  # a plain CSV manifest is read by g2l.manifest.table (pandas costs ~0.3 s of start-up)
    "dvc",
    "google.cloud.storage",
)


def test_tile_command_imports_only_what_tiling_needs(tmp_path: Path, slide_050) -> None:
    manifest = write_manifest(
        tmp_path / "m.csv",
        [{"slide_id": "a", "uri": str(slide_050.path)}],
    )
    heavy = NOT_FOR_TILING if nvidia_device_visible() else (*NOT_FOR_TILING, "cupy")
    code = textwrap.dedent(
        f"""
        import json, sys
        from g2l.cli import app
        app(["tile", "--manifest", {str(manifest)!r}, "--out", {str(tmp_path / "out")!r}, "--quiet"],
            standalone_mode=False)
        print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "G2L_SLIDES_DEVICE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    summary, imported = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert summary["slides_ok"] == 1 and summary["n_tiles"] > 0
    assert imported == [], f"g2l tile imported {imported}"


def test_the_command_hands_its_objects_to_no_final_collection(tmp_path: Path) -> None:
    """After a command, everything alive is frozen (gc.freeze): exit skips a collection over every library."""
    code = textwrap.dedent(
        """
        import atexit, gc, sys
        atexit.register(lambda: print("frozen", gc.get_freeze_count(), gc.isenabled()))
        sys.argv = ["g2l", "--help"]
        from g2l.cli import main
        main()
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    word, count, enabled = done.stdout.strip().splitlines()[-1].split()
    assert word == "frozen" and int(count) > 10_000, done.stdout  # pandas/typer objects, not a handful
    assert enabled == "True"  # freezing is not switching the collector off
