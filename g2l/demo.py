"""The embedded demo: generated slides in a local bucket, a DVC-versioned manifest, then the pipeline."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from g2l.progress import console

if TYPE_CHECKING:
    from g2l.synth.slides import Blob

#: Demo slides: (TCGA-style slide id, level-0 size px, mpp written in the file, mpp given in metadata).
#: Three sites (A1, A2, B6), two patients each; one slide at 0.25 um/px, one with no mpp at all that
#: the manifest's `mpp` column rescues, as real cohorts have. Each is painted with the benchmark's tissue
#: classes in its site's stain (g2l.synth.tissue.SITES); no labels are used by distillation.
DEMO_SLIDES: tuple[tuple[str, int, float | None, float | None], ...] = (
    ("TCGA-A1-A0SB-01Z-00-DX1", 4096, 0.25, None),
    ("TCGA-A1-A0SD-01Z-00-DX1", 4096, 0.5, None),
    ("TCGA-A2-A04P-01Z-00-DX1", 4096, 0.5, None),
    ("TCGA-A2-A04Q-01Z-00-DX1", 4096, None, 0.5),
    ("TCGA-B6-A0IG-01Z-00-DX1", 4096, 0.5, None),
    ("TCGA-B6-A0IJ-01Z-00-DX1", 4096, 0.5, None),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoInputs:
    """Where the demo put its slides, inventory and versioned manifest."""

    bucket: Path
    metadata: Path
    workspace: Path
    manifest: Path
    manifest_rev: str


def demo_blobs(size: int, seed: int) -> tuple[Blob, ...]:
    """Two large tissue pieces with wavy edges covering about 40% of a `size` x `size` slide."""
    import math

    from g2l.synth.slides import Blob

    rng = np.random.default_rng([seed, 12])
    blobs = []
    for cx in (0.3, 0.7):
        r = size * float(rng.uniform(0.21, 0.25))
        wave = tuple(
            (float(rng.uniform(0.03, 0.07)), f, float(rng.uniform(0, 2 * math.pi))) for f in (2, 3, 5)
        )
        cy, stretch, angle = (float(v) for v in rng.uniform((0.42, 1.2, -0.3), (0.58, 1.6, 0.3)))
        blobs.append(Blob(cx=size * cx, cy=size * cy, rx=r, ry=r * stretch, angle=angle, wave=wave))
    return tuple(blobs)


def make_demo_slides(bucket: Path, seed: int = 0) -> list[Path]:
    """Write the demo slides (skipping ones already there) and return their paths."""
    from g2l.synth.slides import write_synthetic_slide
    from g2l.synth.tissue_slide import TissueLayout

    bucket.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (slide_id, size, mpp, meta_mpp) in enumerate(DEMO_SLIDES):
        path = bucket / f"{slide_id}.svs"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            true_mpp = float(mpp or meta_mpp or 0.5)
            layout = TissueLayout(site=slide_id.split("-")[1], seed=seed + i, mpp=true_mpp)
            write_synthetic_slide(tmp, width=size, height=size, mpp=mpp, seed=seed + i,
                                  blobs=demo_blobs(size, seed + i), tissue=layout, pen_mark=(i == 0))
            os.replace(tmp, path)  # a slide appears whole or not at all
        paths.append(path)
    return paths


def write_demo_metadata(path: Path) -> Path:
    """Metadata a lab would keep beside its slides: mpp for the slide whose file lacks it, scanner."""
    rows = [
        {"slide_id": sid, "scanner": "demo-scanner", "mpp": "" if meta_mpp is None else meta_mpp}
        for sid, _, _, meta_mpp in DEMO_SLIDES
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `g2l` for dvc.yaml
    if env.get("PYTHONPATH"):
        # Relative entries (PYTHONPATH=.) would resolve inside the workspace, whose copied g2l/manifest
        # sources (the stage's deps) would then shadow the installed package: make them absolute.
        entries = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in entries if p)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip()


def version_manifest(workspace: Path, inventory: pd.DataFrame, project_root: Path) -> tuple[Path, str]:
    """Sample the demo manifest with the project's DVC stage in a git+DVC workspace; return (path, rev).

    The workspace holds the project's dvc.yaml, params.yaml and the code the stage depends on, as a
    team's manifest repository would; the manifest is then named by git revision downstream.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    if not (workspace / ".git").exists():
        _run(["git", "init", "-q"], workspace)
        _run(["git", "config", "user.email", "demo@g2l.invalid"], workspace)
        _run(["git", "config", "user.name", "g2l demo"], workspace)
    if not (workspace / ".dvc").exists():
        _run([sys.executable, "-m", "dvc", "init", "-q"], workspace)
        _run([sys.executable, "-m", "dvc", "config", "core.autostage", "true"], workspace)
    for rel in ("dvc.yaml", "params.yaml", "g2l/manifest/sample.py", "g2l/manifest/io.py",
                "g2l/manifest/schema.py"):
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project_root / rel, workspace / rel)
    inv_path = workspace / "manifests" / "inventory" / "demo.csv"
    inv_path.parent.mkdir(parents=True, exist_ok=True)
    from g2l.manifest import write_table

    write_table(inventory, inv_path)
    _run([sys.executable, "-m", "dvc", "repro", "-q", "sample@demo"], workspace)
    _run(["git", "add", "-A"], workspace)
    if _run(["git", "status", "--porcelain"], workspace):
        _run(["git", "commit", "-q", "-m", "demo manifest"], workspace)
    rev = _run(["git", "rev-parse", "HEAD"], workspace)
    return workspace / "manifests" / "demo.csv", rev


def prepare_demo_inputs(out: Path, project_root: Path) -> DemoInputs:
    """Slides, metadata, inventory and the DVC-versioned manifest, all under `out`."""
    from g2l.manifest import build_inventory

    bucket = out / "bucket" / "slides"
    make_demo_slides(bucket)
    metadata = write_demo_metadata(out / "bucket" / "metadata.csv")
    inventory = build_inventory(bucket, metadata, cancer_type="demo")
    for problem in inventory.problems:
        console.print(f"[yellow]inventory: {problem}[/yellow]")
    manifest, rev = version_manifest(out / "workspace", inventory.df, project_root)
    return DemoInputs(bucket=bucket, metadata=metadata, workspace=out / "workspace",
                      manifest=manifest, manifest_rev=rev)
