"""A synthetic labelled tile benchmark: tissue classes differ in structure, sites differ in stain and noise.

Tiles are rendered as hematoxylin / eosin densities (gland-like rings, dense nuclei, stroma stripes)
and turned into RGB with Beer-Lambert using each site's own stain vectors, brightness and scanner
noise, so that both the label and the site are learnable from pixels and the robustness index has
something to measure. Output: PNG (or JPEG) tiles plus `tiles.csv` with path,label,site,group,split.
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

CLASSES = ("gland", "nuclei", "stroma")
CSV_NAME = "tiles.csv"
PARAMS_NAME = "synthetic.json"

# Optical densities per unit stain (rows: R, G, B) of a typical H&E scan (Ruifrok & Johnston).
_H_BASE = np.array([0.65, 0.70, 0.29])
_E_BASE = np.array([0.07, 0.99, 0.11])


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyntheticBenchmarkSpec:
    """Size and look of the synthetic benchmark (`generate:` in configs/benchmarks/synthetic.yaml)."""

    n_sites: int = 3
    groups_per_site: int = 4
    tiles_per_group_class: int = 6
    test_groups_per_site: int = 1
    tile_px: int = 64
    image_format: str = "png"
    seed: int = 0

    def __post_init__(self) -> None:
        require(1 <= self.n_sites <= 26, f"generate.n_sites must be 1..26, got {self.n_sites}")
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
        require(32 <= self.tile_px <= 512, f"generate.tile_px must be 32..512, got {self.tile_px}")
        require(
            self.image_format in ("png", "jpg"),
            f"generate.image_format must be png or jpg, got {self.image_format!r}",
        )


def _site_look(site: int, seed: int) -> dict[str, object]:
    """Stain vectors, brightness and scanner noise of one site (deterministic in site and seed)."""
    rng = np.random.default_rng([seed, 1000 + site])
    shift = np.array([[0.25, -0.2, 0.35], [-0.15, 0.25, -0.1], [0.3, 0.3, -0.15]])[site % 3]
    h = np.clip(_H_BASE + shift * (0.6 + 0.2 * (site // 3)) + rng.normal(0, 0.03, 3), 0.05, None)
    e = np.clip(_E_BASE + shift[::-1] * 0.3 + rng.normal(0, 0.03, 3), 0.02, None)
    return {
        "h": h / np.linalg.norm(h),
        "e": e / np.linalg.norm(e),
        "brightness": float(0.92 + 0.05 * (site % 3)),
        "noise_sigma": float(2.0 + 5.0 * (site % 3)),
        "blur_px": float(0.6 * (site % 2)),
    }


def _disc_mask(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _render_density(label: str, px: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin density maps [px, px] for one tile of tissue class `label`."""
    yy, xx = np.mgrid[0:px, 0:px].astype(np.float64)
    s = px / 64.0
    hema = np.zeros((px, px))
    eos = np.full((px, px), 0.35) + rng.normal(0, 0.04, (px, px))
    if label == "gland":
        # Rings of epithelial nuclei around pale lumens.
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.2 * px, 0.8 * px, 2)
            radius = rng.uniform(9, 16) * s
            r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            ring = np.abs(r - radius) < 2.5 * s
            lumen = r < radius - 2.5 * s
            hema[ring] += 0.9
            eos[lumen] = 0.03
    elif label == "nuclei":
        # Densely packed round dark nuclei (lymphocyte-like).
        for _ in range(rng.integers(35, 60)):
            cy, cx = rng.uniform(0, px, 2)
            hema[_disc_mask(yy, xx, cy, cx, rng.uniform(1.8, 3.2) * s)] = rng.uniform(0.9, 1.3)
        eos *= 0.6
    elif label == "stroma":
        # Oriented collagen stripes with a few elongated nuclei.
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(7, 11) * s
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
        eos = 0.55 + 0.35 * np.sin(2 * np.pi * phase) + rng.normal(0, 0.04, (px, px))
        for _ in range(rng.integers(2, 6)):
            cy, cx = rng.uniform(0, px, 2)
            u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
            v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
            hema[(u / (5 * s)) ** 2 + (v / (1.3 * s)) ** 2 <= 1] = 0.8
    else:
        raise ValueError(f"unknown synthetic tissue class {label!r}; known: {', '.join(CLASSES)}")
    return np.clip(hema, 0, None), np.clip(eos, 0, None)


def render_tile(
    label: str, site: int, px: int, rng: np.random.Generator, seed: int = 0, stain_scale: float = 1.0
) -> np.ndarray:
    """One uint8 RGB tile of class `label` as scanned at site index `site`."""
    from scipy.ndimage import gaussian_filter  # scipy ships with scikit-learn

    look = _site_look(site, seed)
    hema, eos = _render_density(label, px, rng)
    od = stain_scale * (hema[..., None] * look["h"] + eos[..., None] * look["e"])  # type: ignore[operator]
    rgb = 255.0 * float(look["brightness"]) * np.exp(-od)  # type: ignore[arg-type]
    blur = float(look["blur_px"])  # type: ignore[arg-type]
    if blur > 0:
        rgb = gaussian_filter(rgb, sigma=(blur, blur, 0))
    rgb = rgb + rng.normal(0, float(look["noise_sigma"]), rgb.shape)  # type: ignore[arg-type]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _params_digest(spec: SyntheticBenchmarkSpec) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode()).hexdigest()


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
    for site in range(spec.n_sites):
        site_name = f"site{chr(ord('A') + site)}"
        for g in range(spec.groups_per_site):
            group = f"{site_name}-slide{g:02d}"
            split = "test" if g >= spec.groups_per_site - spec.test_groups_per_site else "train"
            rng = np.random.default_rng([spec.seed, site, g])
            stain_scale = float(rng.uniform(0.9, 1.1))  # slide-to-slide staining variation within a site
            for label in CLASSES:
                for t in range(spec.tiles_per_group_class):
                    tile = render_tile(
                        label, site, spec.tile_px, rng, seed=spec.seed, stain_scale=stain_scale
                    )
                    rel = f"tiles/{group}_{label}_{t:03d}.{spec.image_format}"
                    _atomic_image(out / rel, tile, spec.image_format)
                    rows.append(f"{rel},{label},{site_name},{group},{split}")
    _atomic_text(csv_path, "\n".join(rows) + "\n")
    _atomic_text(params_path, json.dumps({"spec": dataclasses.asdict(spec), "sha256": digest}, indent=2))
    return csv_path


def _atomic_image(path: Path, tile: np.ndarray, fmt: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(tile).save(tmp, format="PNG" if fmt == "png" else "JPEG", quality=90)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
