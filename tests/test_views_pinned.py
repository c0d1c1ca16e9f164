"""View pixels are pinned, and are the same bytes on every CPU.

A change to the pixels must bump VIEW_ALGORITHM_VERSION (part of the cache key). The pins are exact
(tolerance 0) because every view operation is integer arithmetic (g2l.exact_ops, ADR 0005); the
subprocess test below replays them with the SIMD paths of another CPU (torch's ATEN_CPU_CAPABILITY,
numpy's NPY_DISABLE_CPU_FEATURES, OpenBLAS's OPENBLAS_CORETYPE, libjpeg-turbo's JSIMD_FORCENONE):
with ATEN_CPU_CAPABILITY=avx2 the torchvision-based version 1 gave other bytes on this AVX-512 box.
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from g2l.embed.key import key_material
from g2l.views import VIEW_ALGORITHM_VERSION, ViewSpec, make_views
from tests.fixtures.cpus import OTHER_CPUS

# (VIEW_ALGORITHM_VERSION, spec name) -> sha256 of the stacked views of the fixed tile below.
# If this test fails after a change to g2l/views.py or g2l/exact_ops.py, the cached teacher targets
# no longer match the student's inputs: bump VIEW_ALGORITHM_VERSION and re-pin PINNED.
PINNED = {
    (2, "default"): "e107a6f8ac186960ea4e68de48a45f9abb3e3a0e3407adda104a135fee28e8f7",
    (2, "every-op"): "db75670041612fedd3595c73683645b49ec520fee037db57f92b016d46ab4e21",
}
#: JPEG bytes + decoded pixels of `_jpeg_round_trip` (Pillow's bundled libjpeg-turbo, 3.x).
PINNED_JPEG = "2ef4660d08cb3097e12b99d783ca22b4038c7bebca658e604c48c6c4b87b2574"
SPECS = {
    "default": ViewSpec(views=8, seed=7),
    "every-op": ViewSpec(views=4, seed=7, color_jitter_p=1.0, blur_p=1.0),
}
def _tile() -> np.ndarray:
    return np.random.default_rng(1234).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)


def _jpeg_round_trip() -> bytes:
    """A smooth tile encoded as the tiler does (PIL, quality 90) and decoded as cache and distill do."""
    import io

    from PIL import Image

    from g2l.embed.shards import decode_tile

    yy, xx = np.mgrid[0:256, 0:256]
    smooth = np.stack([(xx + yy) // 2, (xx * yy) % 256, 255 - yy], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, format="JPEG", quality=90)
    return buf.getvalue() + decode_tile(buf.getvalue()).tobytes()


def _digests() -> dict[str, str]:
    out = {name: hashlib.sha256(make_views(_tile(), "slideA_512_1024", spec).tobytes()).hexdigest()
           for name, spec in SPECS.items()}
    out["jpeg"] = hashlib.sha256(_jpeg_round_trip()).hexdigest()
    return out


def test_jpeg_encode_and_decode_match_the_pinned_digest():
    # libjpeg-turbo's ISLOW DCT and IDCT (Pillow's default) are bit-exact across its SIMD paths
    # (libjpeg-turbo README, "Mathematical Compatibility"); the float DCT would not be.
    assert _digests()["jpeg"] == PINNED_JPEG


@pytest.mark.parametrize("name", sorted(SPECS))
def test_view_pixels_match_the_pinned_digest_for_this_algorithm_version(name):
    assert _digests()[name] == PINNED[(VIEW_ALGORITHM_VERSION, name)], (
        "view pixels changed: bump g2l.views.VIEW_ALGORITHM_VERSION and re-pin PINNED"
    )


@pytest.mark.parametrize("cpu", sorted(OTHER_CPUS))
def test_view_pixels_are_the_same_bytes_with_another_cpus_simd_paths(cpu):
    # _digests() in a fresh interpreter (torch loaded with it, as in the embedding runner).
    script = "import json, tests.test_views_pinned as t; print(json.dumps(t._digests()))"
    env = {**os.environ, **OTHER_CPUS[cpu]}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {**{name: PINNED[(VIEW_ALGORITHM_VERSION, name)] for name in SPECS}, "jpeg": PINNED_JPEG}


def test_the_view_algorithm_version_is_part_of_the_cache_key_material():
    from g2l.models.preprocess import Preprocess

    material = key_material(
        teacher="t", weights_sha256="w", preprocess=Preprocess(input_px=224, mean=(0.5,) * 3, std=(0.5,) * 3,
                                                               interpolation="bicubic"),
        view_spec=ViewSpec(), embedding="cls", shards_sha256="s",
    )
    assert material["view_algorithm"] == VIEW_ALGORITHM_VERSION
