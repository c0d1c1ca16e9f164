"""Robustness index: matches a plain-loop reference, known answers, same-group neighbours excluded.

de Jong et al. (arXiv 2501.18055) define R_k = sum SO / sum OS (> 1: biology dominates the centre);
PathoROB (bifold-pathomics/PathoROB, pathorob/robustness_index/robustness_index_utils.py,
`aggregate_stats`) reports SO / (SO + OS), i.e. R_k / (1 + R_k).
"""

import numpy as np
import pytest

from g2l.evaluate.robustness import (
    balanced_subsets,
    eligibility,
    nearest_other_group,
    robustness_index,
    unit_counts,
)


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
        out[k] = {"de_jong": so / os_, "pathorob": so / (so + os_), "SS": ss}
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
        r = got[k]["de_jong"]
        assert got[k]["pathorob"] == pytest.approx(r / (1 + r), abs=1e-12)  # one is a transform of the other
    # Per-unit counts sum to the pooled ones: the gate's bootstrap resamples exactly these numbers.
    per_unit = unit_counts(x, labels, sites, groups, groups, 25, ks)
    for k in ks:
        so, os_ = per_unit[k]["SO"].sum(), per_unit[k]["OS"].sum()
        assert so / os_ == pytest.approx(want[k]["de_jong"]) and per_unit[k]["SS"].sum() == want[k]["SS"]


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
        assert ri[k]["de_jong"] < 0.06  # SO / OS with SO ~ 0


def test_features_clustered_by_label_give_pathorob_near_one():
    x, labels, sites, groups = _clustered("label")
    ri = robustness_index(x, labels, sites, groups, (3, 5, 10, 20))
    for k in (3, 5, 10, 20):
        assert ri[k]["pathorob"] > 0.95
        assert ri[k]["de_jong"] > 19.0  # SO >> OS (infinite when no OS neighbour is left)


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


def test_balanced_subsets_are_two_classes_by_two_sites_with_equal_cells():
    rng = np.random.default_rng(4)
    labels = rng.choice(["a", "b", "c"], 600, p=[0.6, 0.3, 0.1])
    sites = rng.choice(["s1", "s2"], 600, p=[0.8, 0.2])
    subsets = balanced_subsets(labels, sites, min_per_cell=10, seed=0)
    assert len(subsets) == 3  # class pairs ab, ac, bc x the one site pair
    for sel in subsets:
        cells = {(lab, s) for lab, s in zip(labels[sel], sites[sel], strict=True)}
        assert len(cells) == 4
        counts = [np.sum((labels[sel] == c) & (sites[sel] == s)) for c, s in cells]
        assert len(set(counts)) == 1  # equal tiles per class and site
    assert balanced_subsets(labels, sites, min_per_cell=10, seed=0)[0].tolist() == subsets[0].tolist()


@pytest.mark.parametrize(
    ("labels", "sites", "declared", "eligible", "why"),
    [
        (["a", "b"] * 40, ["bach"] * 80, "", False, "single site"),
        # PANDA: the Gleason patterns come from Radboud only, Karolinska gives benign and cancer.
        (["benign"] * 40 + ["gleason4"] * 40 + ["benign"] * 40, ["radboud"] * 80 + ["karolinska"] * 40, "",
         False, "gleason4 (only at radboud)"),
        (["a", "b"] * 40, ["s1"] * 40 + ["s2"] * 40, "TCGA tissue source site = cancer type", False,
         "declares"),
        (["a", "b"] * 40, ["s1"] * 40 + ["s2"] * 40, "", True, "2 sites"),
        (["a"] * 70 + ["b"] * 10, ["s1", "s2"] * 40, "", False, "no two classes"),
    ],
)
def test_eligibility_refuses_single_site_and_confounded_benchmarks(labels, sites, declared, eligible, why):
    info = eligibility(np.array(labels), np.array(sites), min_per_cell=10, declared_confound=declared)
    assert info["eligible"] is eligible and why in info["reason"]
