"""Synthetic tissue: classes differ in structure not in stain amount, sites differ in stain, pixels exact.

The pinned digests are exact (tolerance 0): the renderer is integer hashing, float64 basic operations
and integer tables (g2l.synth.tissue), replayed under another CPU's SIMD paths like the views
(tests/test_views_pinned.py).
"""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from g2l.synth.tissue import CLASSES, SITES, render_densities, render_tile
from tests.fixtures.cpus import OTHER_CPUS

# sha256 of `_rendered()`'s bytes: one tile per class at site A2 (noise and blur on) and one at 0.25 um/px.
PINNED_TISSUE = "f7db4c4b6fdc9bb92e6147ed73b3b20967402a968f39d4b4daa023d8896dbc79"


def _rendered() -> bytes:
    tiles = [render_tile(label, SITES["A2"], px=96, seed=5, region_hash=1234 + i, origin=(4000, 900))
             for i, label in enumerate(CLASSES)]
    tiles.append(render_tile("gland", SITES["B6"], px=96, mpp=0.25, seed=5, region_hash=7))
    return b"".join(t.tobytes() for t in tiles)


def test_rendered_tissue_matches_the_pinned_digest():
    assert hashlib.sha256(_rendered()).hexdigest() == PINNED_TISSUE


@pytest.mark.parametrize("cpu", sorted(OTHER_CPUS))
def test_rendered_tissue_is_the_same_bytes_with_another_cpus_simd_paths(cpu):
    script = "import hashlib, tests.test_synth_tissue as t; print(hashlib.sha256(t._rendered()).hexdigest())"
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, **OTHER_CPUS[cpu]},
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == PINNED_TISSUE


def test_every_class_carries_the_same_amount_of_each_stain():
    # Colour alone must not give the class away: mean hematoxylin and eosin densities agree across
    # classes (the per-class scales), while their spatial structure differs (the std below).
    means, spreads = {}, {}
    for label in CLASSES:
        h_e = [render_densities(label, 0, 0, 160, 160, 0.5, seed=s, region_hash=9) for s in range(8)]
        means[label] = (np.mean([h.mean() for h, _ in h_e]), np.mean([e.mean() for _, e in h_e]))
        spreads[label] = np.mean([h.std() for h, _ in h_e])
    h_means = [m[0] for m in means.values()]
    e_means = [m[1] for m in means.values()]
    assert max(h_means) - min(h_means) < 0.25 * np.mean(h_means), means
    assert max(e_means) - min(e_means) < 0.25 * np.mean(e_means), means
    assert max(spreads.values()) > 1.4 * min(spreads.values())  # structure differs


def test_the_same_tissue_is_drawn_at_any_resolution():
    # 0.25 um/px averaged 2x2 is the 0.5 um/px rendering of the same place (physical units).
    fine, _ = render_densities("nuclei", 0, 0, 256, 256, 0.25, seed=3, region_hash=1)
    coarse, _ = render_densities("nuclei", 0, 0, 128, 128, 0.5, seed=3, region_hash=1)
    binned = fine.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    assert np.corrcoef(binned.ravel(), coarse.ravel())[0, 1] > 0.9


def test_sites_differ_in_colour_more_than_tissue_does():
    def mean_rgb(label, site):
        return np.mean([render_tile(label, SITES[site], px=64, seed=s, region_hash=s).reshape(-1, 3).mean(0)
                        for s in range(6)], axis=0)

    between_sites = np.linalg.norm(mean_rgb("tumour", "A2") - mean_rgb("tumour", "B6"))
    between_classes = np.linalg.norm(mean_rgb("tumour", "A2") - mean_rgb("stroma", "A2"))
    assert between_sites > 2 * between_classes


def test_unknown_class_and_bad_stain_are_refused():
    from g2l.config import ConfigError
    from g2l.synth.tissue import Stain

    with pytest.raises(ValueError, match="unknown tissue class 'bone'"):
        render_densities("bone", 0, 0, 8, 8, 0.5, seed=0, region_hash=0)
    with pytest.raises(ConfigError, match="noise"):
        Stain(hematoxylin=(0.6, 0.7, 0.3), eosin=(0.1, 0.9, 0.1), noise=99)


def test_tissue_slides_render_tiles_that_join_without_seams(tmp_path):
    from g2l.synth.slides import Blob
    from g2l.synth.tissue_slide import TissueLayout, TissuePainter

    blob = Blob(cx=512.0, cy=512.0, rx=700.0, ry=650.0, angle=0.3)
    painter = TissuePainter(blobs=[blob], layout=TissueLayout(site="A2", seed=4, region_um=60.0))
    whole = painter.tile(256, 256, 256)
    parts = np.concatenate([np.concatenate([painter.tile(256 + dx, 256 + dy, 128) for dx in (0, 128)], axis=1)
                            for dy in (0, 128)], axis=0)
    assert np.array_equal(whole, parts)
    regions = painter.regions(np.arange(0, 400.0, 10)[None, :], np.arange(0, 400.0, 10)[:, None])
    assert len({painter.region_class(int(r)) for r in np.unique(regions)}) >= 2  # several classes per slide
