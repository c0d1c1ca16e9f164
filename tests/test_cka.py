"""Linear CKA: 1 with itself, invariant to rotation and isotropic scaling, lower for unrelated features."""

import numpy as np
import pytest

from g2l.evaluate.cka import linear_cka


@pytest.fixture()
def feats():
    return np.random.default_rng(0).standard_normal((200, 24)) @ np.diag(np.linspace(0.2, 3, 24))


def test_cka_with_itself_is_one(feats):
    assert linear_cka(feats, feats) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_rotation_and_isotropic_scaling(feats):
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((24, 24)))
    other = np.tanh(feats[:, :10] @ np.random.default_rng(2).standard_normal((10, 16)))
    base = linear_cka(feats, other)
    assert 0.05 < base < 0.99
    assert linear_cka(feats @ q, other) == pytest.approx(base, abs=1e-10)
    assert linear_cka(7.5 * feats, other) == pytest.approx(base, abs=1e-10)
    assert linear_cka(feats, 0.01 * other) == pytest.approx(base, abs=1e-10)
    assert linear_cka(feats @ q, feats) == pytest.approx(1.0, abs=1e-10)


def test_cka_is_not_invariant_to_anisotropic_scaling(feats):
    scaled = feats * np.linspace(0.1, 10, 24)
    assert linear_cka(feats, scaled) < 0.99


def test_cka_of_independent_features_is_small():
    rng = np.random.default_rng(5)
    assert linear_cka(rng.standard_normal((2000, 8)), rng.standard_normal((2000, 8))) < 0.05
