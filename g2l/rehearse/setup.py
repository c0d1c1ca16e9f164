"""What a rehearsal runs on: two generated slides, their manifest, a tiny benchmark, the derived config.

The derived config is the user's own, with only sizes and step counts changed (and the weights
pointed at the local random checkpoints), so every other setting is the one the real run will use.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# Sizes of the rehearsal: small enough for 2 CPU cores, large enough that every code path runs
# (a held-out validation slide, 2 ranks x 2 tiles per step, a probe with every class in each split).
SLIDES = 2
SLIDE_PX = 1536  # at 0.5 um/px: 6 x 6 candidate 256 px tiles per slide
TILES_PER_SLIDE = 4  # embed.max_tiles_per_slide: 8 teacher forwards in all
NPROC = 2
PER_DEVICE_BATCH = 2
STEPS = 2
BENCHMARK = {"n_sites": 2, "groups_per_site": 2, "tiles_per_group_class": 3, "test_groups_per_site": 1,
             "tile_px": 224, "seed": 0}


def write_slides(out: Path, cancer: str) -> Path:
    """Two generated pyramidal slides at 0.5 um/px and a manifest naming them; returns the manifest."""
    import pandas as pd

    from g2l.synth.slides import write_synthetic_slide

    slides_dir = out / "slides"
    slides_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(SLIDES):
        path = slides_dir / f"rehearsal_{i}.svs"
        if not path.exists():
            write_synthetic_slide(path, width=SLIDE_PX, height=SLIDE_PX, mpp=0.5, seed=100 + i, blobs=6)
        rows.append({"slide_id": f"rehearsal_{i}", "uri": str(path), "cancer_type": cancer,
                     "site": f"site{i}", "mpp": 0.5, "split": "train"})
    manifest = out / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def write_benchmark(out: Path, template: Path | None) -> Path:
    """A tiny synthetic benchmark definition (generated on first use), from the shipped one when found."""
    base: dict[str, Any] = {"name": "synthetic", "table": {"csv": "tiles.csv"}, "split": {"kind": "column"}}
    if template is not None and template.is_file():
        base = yaml.safe_load(template.read_text()) or base
    spec = copy.deepcopy(base)
    spec.update(name="rehearsal_synthetic", root=str(out / "data" / "benchmark"),
                tile_px=BENCHMARK["tile_px"], generate={**(base.get("generate") or {}), **BENCHMARK})
    path = out / "benchmark.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def derive_config(raw: dict[str, Any], *, manifest: Path, teacher_weights: Path,
                  student_weights: Path) -> dict[str, Any]:
    """The user's config with rehearsal sizes and step counts, and the local random checkpoints."""
    cfg = copy.deepcopy(raw)
    cfg.setdefault("manifest", {})["path"] = str(manifest)
    cfg["manifest"]["rev"] = None
    cfg["manifest"]["repo"] = None
    tiling = cfg.setdefault("tiling", {})
    tiling["max_failed_fraction"] = 0.0  # both slides must tile
    embed = cfg.setdefault("embed", {})
    embed.update(weights=str(teacher_weights), views=1, max_tiles_per_slide=TILES_PER_SLIDE, batch_size=4,
                 num_workers=0, device="cpu")
    distill = cfg.setdefault("distill", {})
    distill.update(student_weights=str(student_weights), per_device_batch=PER_DEVICE_BATCH,
                   global_batch=PER_DEVICE_BATCH * NPROC, num_workers=0, log_every_steps=1)
    schedule = distill.setdefault("schedule", {})
    schedule["max_steps"] = STEPS
    schedule["warmup_steps"] = min(int(schedule.get("warmup_steps", 0)), STEPS)
    distill["checkpoint"] = {**distill.get("checkpoint", {}), "every_steps": STEPS, "keep_last": 1}
    distill["validation"] = {**distill.get("validation", {}), "every_steps": STEPS, "max_tiles": 2}
    evaluate = cfg.setdefault("evaluate", {})
    ks = [k for k in evaluate.get("robustness_ks", [3, 5]) if k <= 5] or [3]
    evaluate.update(knn_k=min(int(evaluate.get("knn_k", 5)), 5), robustness_ks=ks, batch_size=8,
                    num_workers=0, device="cpu", extra_models={})
    return cfg
