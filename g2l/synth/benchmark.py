"""A synthetic labelled tile benchmark: tissue classes differ in structure, sites in stain and scanner.

Tiles come from `g2l.synth.tissue` (gland, nuclei, stroma, tumour, drawn in um at `mpp`), scanned with
the stain of each site of `g2l.synth.tissue.SITES` (A1, A2, B6, ...: the demo cohort's sites), so the
label is learnable from structure while colour mostly tells the site: the robustness index has
something to measure. Every tile is the same bytes on every CPU. Output: PNG (or JPEG) tiles plus
`tiles.csv` with path,label,site,group,split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from g2l.config import require
from g2l.synth.tissue import CLASSES, SITES, render_tile

CSV_NAME = "tiles.csv"
PARAMS_NAME = "synthetic.json"
#: Bumped when the renderer changes the pixels, so a finished set from an older renderer is redone.
RENDER_VERSION = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyntheticBenchmarkSpec:
    """Size and look of the synthetic benchmark (`generate:` in configs/benchmarks/synthetic.yaml)."""

    n_sites: int = 3
    groups_per_site: int = 4
    tiles_per_group_class: int = 6
    test_groups_per_site: int = 1
    tile_px: int = 64
    mpp: float = 0.5
    supersample: int = 1  # scan at mpp / supersample, then area-average down (as a tiler resamples)
    image_format: str = "png"
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            1 <= self.n_sites <= len(SITES), f"generate.n_sites must be 1..{len(SITES)}, got {self.n_sites}"
        )
        require(
            self.groups_per_site >= 2, f"generate.groups_per_site must be >= 2, got {self.groups_per_site}"
        )
        require(
            1 <= self.test_groups_per_site < self.groups_per_site,
            f"generate.test_groups_per_site must be in [1, groups_per_site), got {self.test_groups_per_site}",
        )
        require(
            self.tiles_per_group_class >= 1,
            f"generate.tiles_per_group_class must be >= 1, got {self.tiles_per_group_class}",
        )
        require(16 <= self.tile_px <= 512, f"generate.tile_px must be 16..512, got {self.tile_px}")
        require(0.1 <= self.mpp <= 2.0, f"generate.mpp must be 0.1..2 um/px, got {self.mpp}")
        require(1 <= self.supersample <= 4, f"generate.supersample must be 1..4, got {self.supersample}")
        require(
            self.image_format in ("png", "jpg"),
            f"generate.image_format must be png or jpg, got {self.image_format!r}",
        )


def tile_params(spec: SyntheticBenchmarkSpec, site: int, group: int, label: int, t: int) -> dict[str, int]:
    """Seed, region hash and origin of a benchmark tile: distinct tissue per (site, group, class, t)."""
    digest = hashlib.sha256(f"{spec.seed}:{site}:{group}:{label}:{t}".encode()).digest()
    u = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return {"seed": 10_000 + spec.seed, "region_hash": u[0], "x": u[1] % 1_000_000, "y": u[2] % 1_000_000}


def _params_digest(spec: SyntheticBenchmarkSpec) -> str:
    payload = {**dataclasses.asdict(spec), "render_version": RENDER_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_synthetic_benchmark(out_dir: str | Path, spec: SyntheticBenchmarkSpec | None = None) -> Path:
    """Write tiles and `tiles.csv` (path,label,site,group,split) under `out_dir`; returns the CSV path.

    Idempotent: a finished set with the same parameters is left as is; the CSV is written last
    (atomically), so an interrupted run is simply redone.
    """
    spec = spec or SyntheticBenchmarkSpec()
    out = Path(out_dir)
    csv_path = out / CSV_NAME
    params_path = out / PARAMS_NAME
    digest = _params_digest(spec)
    if csv_path.exists() and params_path.exists():
        if json.loads(params_path.read_text()).get("sha256") == digest:
            return csv_path
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    rows = ["path,label,site,group,split"]
    for site, site_name in enumerate(list(SITES)[:spec.n_sites]):
        stain = SITES[site_name]
        for g in range(spec.groups_per_site):
            group = f"{site_name}-slide{g:02d}"
            split = "test" if g >= spec.groups_per_site - spec.test_groups_per_site else "train"
            for label_index, label in enumerate(CLASSES):
                for t in range(spec.tiles_per_group_class):
                    p = tile_params(spec, site, g, label_index, t)
                    tile = render_tile(label, stain, px=spec.tile_px, mpp=spec.mpp, seed=p["seed"],
                                       region_hash=p["region_hash"], origin=(p["x"], p["y"]),
                                       supersample=spec.supersample)
                    rel = f"tiles/{group}_{label}_{t:03d}.{spec.image_format}"
                    _atomic_image(out / rel, tile, spec.image_format)
                    rows.append(f"{rel},{label},{site_name},{group},{split}")
    _atomic_text(csv_path, "\n".join(rows) + "\n")
    _atomic_text(params_path, json.dumps({"spec": dataclasses.asdict(spec), "render_version": RENDER_VERSION,
                                          "sha256": digest}, indent=2))
    return csv_path


def _atomic_image(path: Path, tile: np.ndarray, fmt: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(tile).save(tmp, format="PNG" if fmt == "png" else "JPEG", quality=90)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
