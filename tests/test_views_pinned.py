"""View pixels are pinned: a change must bump VIEW_ALGORITHM_VERSION, which is part of the cache key."""

import hashlib

import numpy as np
import pytest

from g2l.embed.key import key_material
from g2l.views import VIEW_ALGORITHM_VERSION, ViewSpec, make_views

# (VIEW_ALGORITHM_VERSION, spec kwargs) -> sha256 of the stacked views of the fixed tile below.
# If this test fails after a change to g2l/views.py (or to torchvision/PIL behaviour), the cached
# teacher targets no longer match the student's inputs: bump VIEW_ALGORITHM_VERSION and re-pin.
PINNED = {
    (1, "default"): "857be1472072e7e034cbc95678b385d02d46f2b9ecb51c00a27605f3738c3d7a",
    (1, "every-op"): "85d1ce7f72b9131af49f2e252762a685ea68fc378d9aa2d17dadda679fb14449",
}
SPECS = {
    "default": ViewSpec(views=8, seed=7),
    "every-op": ViewSpec(views=4, seed=7, color_jitter_p=1.0, blur_p=1.0),
}


def _tile() -> np.ndarray:
    return np.random.default_rng(1234).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_view_pixels_match_the_pinned_digest_for_this_algorithm_version(name):
    digest = hashlib.sha256(make_views(_tile(), "slideA_512_1024", SPECS[name]).tobytes()).hexdigest()
    assert digest == PINNED[(VIEW_ALGORITHM_VERSION, name)], (
        "view pixels changed: bump g2l.views.VIEW_ALGORITHM_VERSION and re-pin PINNED"
    )


def test_the_view_algorithm_version_is_part_of_the_cache_key_material():
    from g2l.models.preprocess import Preprocess

    material = key_material(
        teacher="t", weights_sha256="w", preprocess=Preprocess(input_px=224, mean=(0.5,) * 3, std=(0.5,) * 3,
                                                               interpolation="bicubic"),
        view_spec=ViewSpec(), embedding="cls", shards_sha256="s",
    )
    assert material["view_algorithm"] == VIEW_ALGORITHM_VERSION
