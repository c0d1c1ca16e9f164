"""Linear CKA: 1 with itself, invariant to rotation and isotropic scaling; the debiased one ~0 when unrelated.

Debiased CKA: unbiased HSIC of Song et al. (2012), used for CKA by Nguyen, Raghu & Kornblith (2021); the
reference below is the estimator written with n x n Gram matrices, term by term.
"""

import numpy as np
import pytest

from g2l.evaluate.cka import cka_report, debiased_linear_cka, linear_cka


def gram_reference(x, y):
    n = len(x)
    one = np.ones(n)

    def hsic(k, l_):
        k, l_ = k.copy(), l_.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l_, 0)
        return (np.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ k @ l_ @ one) / (n * (n - 3))

    k, l_ = x @ x.T, y @ y.T
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


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


def test_debiased_cka_of_independent_features_is_near_zero_where_the_biased_one_is_not():
    rng = np.random.default_rng(0)
    for n, biased_at_least in ((100, 0.85), (400, 0.7)):
        x, y = rng.standard_normal((n, 1536)), rng.standard_normal((n, 1024))
        assert linear_cka(x, y) > biased_at_least  # the numbers: 0.92 at n=100, 0.76 at n=400
        assert abs(debiased_linear_cka(x, y)) < 0.05


def test_debiased_cka_equals_the_gram_matrix_estimator_and_is_one_with_itself(feats):
    rng = np.random.default_rng(1)
    other = np.tanh(feats[:, :10] @ rng.standard_normal((10, 16))) + 0.3 * rng.standard_normal((200, 16))
    assert debiased_linear_cka(feats, other) == pytest.approx(gram_reference(feats, other), abs=1e-10)
    assert debiased_linear_cka(feats, feats) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    assert debiased_linear_cka(3 * feats @ q + 5, other) == pytest.approx(debiased_linear_cka(feats, other))


def test_cka_report_prints_a_random_feature_baseline(feats):
    rep = cka_report(feats, feats @ np.random.default_rng(2).standard_normal((24, 12)), seed=11)
    assert rep["cka"] > 0.5 and abs(rep["random_baseline"]) < 0.1
