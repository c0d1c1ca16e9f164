import concurrent.futures

import numpy as np
import pytest
import torch

from g2l.views import ViewSpec, make_view, make_views, view_params


def _tile(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)


def test_views_are_deterministic_and_differ_across_v():
    spec = ViewSpec(views=6, seed=3)
    tile = _tile()
    a = make_views(tile, "slideA_512_256", spec)
    b = make_views(tile.copy(), "slideA_512_256", spec)
    assert a.shape == (6, 224, 224, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    for i in range(6):
        for j in range(i + 1, 6):
            assert not np.array_equal(a[i], a[j])


def test_views_depend_on_seed_and_tile_key():
    spec = ViewSpec(views=2, seed=0)
    tile = _tile()
    base = make_view(tile, "s_0_0", 1, spec)
    assert not np.array_equal(base, make_view(tile, "s_0_256", 1, spec))
    assert not np.array_equal(base, make_view(tile, "s_0_0", 1, ViewSpec(views=2, seed=1)))


def test_views_do_not_touch_global_rng_and_match_across_threads():
    spec = ViewSpec(views=4, seed=7, blur_p=1.0, color_jitter_p=1.0)
    tile = _tile(1)
    np_state, torch_state = np.random.get_state(), torch.random.get_rng_state()
    serial = [make_view(tile, f"k_{i}_0", i % 4, spec) for i in range(8)]
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.random.seed(123)
    torch.manual_seed(123)  # global seeding must not change the views
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda i: make_view(tile, f"k_{i}_0", i % 4, spec), reversed(range(8))))
    for s, t in zip(serial, reversed(threaded), strict=True):
        assert np.array_equal(s, t)


def test_augmentations_follow_the_spec():
    tile = _tile()
    plain = ViewSpec(views=3, hflip_p=0, vflip_p=0, color_jitter_p=0, blur_p=0)
    for v in range(3):
        p = view_params(256, 256, "t_0_0", v, plain)
        view = make_view(tile, "t_0_0", v, plain)
        assert np.array_equal(view, tile[p.top:p.top + 224, p.left:p.left + 224])  # a pure random crop
    flips = ViewSpec(views=1, hflip_p=1, vflip_p=1, color_jitter_p=0, blur_p=0)
    p = view_params(256, 256, "t_0_0", 0, flips)
    crop = tile[p.top:p.top + 224, p.left:p.left + 224]
    assert np.array_equal(make_view(tile, "t_0_0", 0, flips), crop[::-1, ::-1])
    jitter = ViewSpec(views=1, hflip_p=0, vflip_p=0, color_jitter_p=1, blur_p=0)
    assert view_params(256, 256, "t_0_0", 0, jitter).jitter is not None
    # over many tiles the jitter/blur rates are close to their probabilities
    spec = ViewSpec(views=1)
    ps = [view_params(256, 256, f"t_{i}_0", 0, spec) for i in range(2000)]
    assert 0.45 < np.mean([p.jitter is not None for p in ps]) < 0.55
    assert 0.07 < np.mean([p.blur_sigma is not None for p in ps]) < 0.13
    assert 0.45 < np.mean([p.hflip for p in ps]) < 0.55


def test_bad_view_spec_and_inputs_are_rejected():
    from g2l.config import ConfigError

    with pytest.raises(ConfigError, match="hflip_p"):
        ViewSpec(hflip_p=1.5)
    with pytest.raises(ValueError, match="view index"):
        make_view(_tile(), "t_0_0", 4, ViewSpec(views=4))


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue", "blur"])
def test_integer_view_ops_stay_within_one_level_of_torchvisions_float_ops(op):
    # The integer ops (g2l.exact_ops) are the paper's augmentations: torchvision's definitions of
    # adjust_brightness/contrast/saturation/hue and gaussian_blur (torchvision 0.29,
    # transforms/v2/functional/_color.py and _misc.py), rounded instead of truncated.
    from torchvision.transforms.v2 import functional as F

    from g2l import exact_ops

    tile = _tile(5)[:96, :96]
    x = torch.from_numpy(tile).permute(2, 0, 1)
    ours_theirs = {
        "brightness": (exact_ops.adjust_brightness, F.adjust_brightness, (0.85, 1.15)),
        "contrast": (exact_ops.adjust_contrast, F.adjust_contrast, (0.85, 1.15)),
        "saturation": (exact_ops.adjust_saturation, F.adjust_saturation, (0.9, 1.1)),
        "hue": (exact_ops.adjust_hue, F.adjust_hue, (-0.05, 0.03)),
        "blur": (lambda t, s: exact_ops.gaussian_blur(t, 9, s),
                 lambda t, s: F.gaussian_blur(t, [9, 9], [s, s]), (0.5, 2.0)),
    }
    mine, tv, factors = ours_theirs[op]
    cases = [(mine(tile, f), tv(x, f)) for f in factors]
    for ours, theirs in cases:
        diff = np.abs(ours.astype(int) - theirs.permute(1, 2, 0).numpy().astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.7
        assert not np.array_equal(ours, tile)  # the op did something


def test_integer_hue_rotation_is_exact_at_zero_and_undone_by_the_opposite_turn_within_one_level():
    from g2l import exact_ops

    tile = _tile(6)
    assert np.array_equal(exact_ops.adjust_hue(tile, 0.0), tile)
    back = exact_ops.adjust_hue(exact_ops.adjust_hue(tile, 0.2), -0.2)
    assert np.abs(back.astype(int) - tile.astype(int)).max() <= 1


def test_the_blur_kernel_is_a_normalised_symmetric_gaussian_made_without_libm():
    import math

    from g2l import exact_ops

    for t in (0.0, 1e-3, 0.5, 3.0, 40.0, 300.0):
        assert exact_ops.exp_neg(t) == pytest.approx(math.exp(-t), rel=1e-10)
    for sigma in (0.1, 1.0, 2.0):
        k = exact_ops.gaussian_kernel(9, sigma)
        assert k.sum() == 2**14 and np.array_equal(k, k[::-1]) and k.argmax() == 4
    with pytest.raises(ValueError, match="odd"):
        exact_ops.gaussian_kernel(8, 1.0)
