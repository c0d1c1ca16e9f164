"""Robustness index: matches a plain-loop reference, known answers, same-group neighbours excluded."""

import numpy as np
import pytest

from g2l.evaluate.robustness import nearest_other_group, robustness_index


def reference_index(x, labels, sites, groups, ks):
    """Plain loops: cosine distance to every sample of another group, sort, count."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = {}
    for k in ks:
        ss = so = os_ = 0
        for i in range(len(x)):
            cands = [j for j in range(len(x)) if groups[j] != groups[i]]
            dist = [1.0 - float(xn[i] @ xn[j]) for j in cands]
            for pos in np.argsort(dist, kind="stable")[:k]:
                j = cands[pos]
                same_label, same_site = labels[j] == labels[i], sites[j] == sites[i]
                ss += same_label and same_site
                so += same_label and not same_site
                os_ += (not same_label) and same_site
        out[k] = {"de_jong": (ss + so) / (ss + os_), "pathorob": so / (so + os_)}
    return out


def test_matches_plain_loop_reference_on_random_data():
    rng = np.random.default_rng(0)
    n = 150
    x = rng.standard_normal((n, 16))
    labels = rng.integers(0, 3, n)
    sites = rng.integers(0, 3, n)
    groups = rng.integers(0, 25, n)
    ks = (3, 5, 10, 20)
    got = robustness_index(x, labels, sites, groups, ks, block_rows=7)  # small blocks: exercise the blocking
    want = reference_index(x, labels, sites, groups, ks)
    for k in ks:
        assert got[k]["de_jong"] == pytest.approx(want[k]["de_jong"], abs=1e-12)
        assert got[k]["pathorob"] == pytest.approx(want[k]["pathorob"], abs=1e-12)


def _clustered(by, n_per=20, seed=1):
    """Features clustered by `by` ('site' or 'label'); the other factor is independent of the features."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 3 * n_per)
    sites = np.tile(np.repeat(np.arange(3), n_per), 3)
    groups = np.arange(len(labels)) // 5  # groups of 5 consecutive tiles: same label, same site
    centres = rng.standard_normal((3, 32)) * 10
    x = centres[sites if by == "site" else labels] + rng.standard_normal((len(labels), 32))
    return x, labels, sites, groups


def test_features_clustered_by_site_give_pathorob_near_zero():
    x, labels, sites, groups = _clustered("site")
    ri = robustness_index(x, labels, sites, groups, (3, 5, 10, 20))
    for k in (3, 5, 10, 20):
        assert ri[k]["pathorob"] < 0.05
        assert ri[k]["de_jong"] < 0.5  # (SS + SO) / (SS + OS) with SO ~ 0: about 1/3 here


def test_features_clustered_by_label_give_pathorob_near_one():
    x, labels, sites, groups = _clustered("label")
    ri = robustness_index(x, labels, sites, groups, (3, 5, 10, 20))
    for k in (3, 5, 10, 20):
        assert ri[k]["pathorob"] > 0.95
        assert ri[k]["de_jong"] > 2.0  # SS + SO >> SS + OS when neighbours share the label across sites


def test_same_group_neighbours_are_excluded():
    # Every group is a tight clump (near-duplicates of one slide); groups themselves are spread by site.
    # Counting same-group neighbours would make every neighbour same-label-same-site.
    rng = np.random.default_rng(3)
    n_groups, per = 30, 6
    groups = np.repeat(np.arange(n_groups), per)
    labels = np.repeat(rng.integers(0, 2, n_groups), per)
    sites = np.repeat(rng.integers(0, 3, n_groups), per)
    centres = rng.standard_normal((n_groups, 8))
    x = centres[groups] + 1e-3 * rng.standard_normal((len(groups), 8))
    idx, valid = nearest_other_group(x, groups, 5)
    assert valid.all()
    assert not (groups[idx] == groups[:, None]).any()
    # Against the same computation with groups ignored (each tile its own group): the answers differ,
    # and only the group-aware one matches the plain-loop reference.
    with_groups = robustness_index(x, labels, sites, groups, (5,))
    without = robustness_index(x, labels, sites, np.arange(len(groups)), (5,))
    want = reference_index(x, labels, sites, groups, (5,))
    assert with_groups[5]["pathorob"] == pytest.approx(want[5]["pathorob"])
    assert without[5]["pathorob"] != pytest.approx(want[5]["pathorob"])


def test_rows_with_too_few_other_group_samples_use_what_exists():
    x = np.eye(4)
    groups = np.array([0, 0, 0, 1])
    idx, valid = nearest_other_group(x, groups, 3)
    assert valid[3].all() and set(idx[3]) == {0, 1, 2}
    assert valid[0].tolist() == [True, False, False] and idx[0, 0] == 3


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="sites"):
        robustness_index(np.zeros((5, 2)) + 1, np.zeros(5), np.zeros(4), np.arange(5), (3,))
