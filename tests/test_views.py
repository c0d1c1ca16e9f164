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
