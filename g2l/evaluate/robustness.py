"""Robustness index (de Jong et al. 2025; PathoROB, Komen et al. 2025): neighbours by biology or by centre?

For every sample, its k nearest neighbours by cosine similarity are found among samples of *other*
groups (a tile's own slide or patient never counts: those tiles share both biology and site and would
flatter every model; PathoROB `filter_out_query_case_from_neighbors` does the same by slide). Each
neighbour is SS (same label, same site), SO (same label, other site), OS (other label, same site) or
OO. Counts are summed over samples, then
- de Jong et al. (arXiv 2501.18055): R_k = sum SO / sum OS (> 1: biology dominates the centre);
- PathoROB (arXiv 2507.17845; bifold-pathomics/PathoROB `robustness_index_utils.aggregate_stats`):
  RI_k = sum SO / (sum SO + sum OS) = R_k / (1 + R_k), in [0, 1].
Both are computed two ways: `pooled` over the whole benchmark, and PathoROB's protocol, `balanced`:
neighbours searched inside balanced 2 x 2 subsets (two classes x two sites, equal tiles per cell), so
class frequencies that differ between sites cannot masquerade as (un)robustness. Counts are kept per
resampling unit (patient) so that the gate can bootstrap them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

# Rows of the similarity matrix computed at once: bounds memory at ~_BLOCK_BYTES whatever N is.
_BLOCK_BYTES = 64 * 2**20
COUNT_KINDS = ("SS", "SO", "OS", "OO")


def _codes(values: np.ndarray, name: str, n: int) -> np.ndarray:
    """Integer codes of a label/site/group array (any dtype), checked against the feature count."""
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(
            f"{name} must be a 1-D array with one entry per feature row ({n}), got shape {arr.shape}"
        )
    return np.unique(arr, return_inverse=True)[1].astype(np.int64)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit L2 norm (zero rows stay zero), so a dot product is cosine similarity."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def _torch_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def nearest_other_group(
    features: np.ndarray,
    groups: np.ndarray,
    k: int,
    block_rows: int | None = None,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Indices [N, k] of each row's k most cosine-similar rows from other groups, most similar first.

    Returns `(indices, valid)`; `valid` is False (and the index -1) where a row has fewer than k
    candidates. Vectorised: blocked matrix products with same-group columns masked to -inf, then a
    partial top-k per row (torch.topk: a selection, not a full sort; on a GPU when one is present).
    """
    import torch  # lazy: a core dependency, but heavy to import for the pure-numpy callers

    x = unit_rows(features)
    n = x.shape[0]
    g = _codes(groups, "groups", n)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    dev = _torch_device(device)
    xt = torch.from_numpy(x).to(dev)
    gt = torch.from_numpy(g).to(dev)
    kk = min(k, n)
    rows = block_rows or max(1, _BLOCK_BYTES // max(1, 4 * n))
    indices = np.full((n, k), -1, dtype=np.int64)
    valid = np.zeros((n, k), dtype=bool)
    with torch.inference_mode():
        for lo in range(0, n, rows):
            hi = min(n, lo + rows)
            sims = xt[lo:hi] @ xt.T
            sims.masked_fill_(gt[lo:hi, None] == gt[None, :], float("-inf"))
            top_sims, top = torch.topk(sims, kk, dim=1, largest=True, sorted=True)
            ok = torch.isfinite(top_sims).cpu().numpy()
            valid[lo:hi, :kk] = ok
            indices[lo:hi, :kk] = np.where(ok, top.cpu().numpy(), -1)
    return indices, valid


def sample_counts(
    labels: np.ndarray, sites: np.ndarray, indices: np.ndarray, valid: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Per-sample SS / SO / OS / OO counts among the first k neighbours of every row."""
    lab = np.asarray(labels)
    sit = np.asarray(sites)
    idx = np.where(valid[:, :k], indices[:, :k], 0)
    ok = valid[:, :k]
    same_label = (lab[idx] == lab[:, None]) & ok
    same_site = (sit[idx] == sit[:, None]) & ok
    other_label = ok & ~same_label
    other_site = ok & ~same_site
    return {
        "SS": np.count_nonzero(same_label & same_site, axis=1),
        "SO": np.count_nonzero(same_label & other_site, axis=1),
        "OS": np.count_nonzero(other_label & same_site, axis=1),
        "OO": np.count_nonzero(other_label & other_site, axis=1),
    }


def neighbour_counts(
    labels: np.ndarray, sites: np.ndarray, indices: np.ndarray, valid: np.ndarray, k: int
) -> dict[str, int]:
    """Pooled SS / SO / OS / OO counts over the first k neighbours of every row."""
    return {key: int(v.sum()) for key, v in sample_counts(labels, sites, indices, valid, k).items()}


def indices_from_counts(counts: dict[str, int]) -> dict[str, float]:
    """de Jong's sum SO / sum OS and PathoROB's SO / (SO + OS); NaN where 0/0, de Jong inf when OS = 0."""
    so, os_ = counts["SO"], counts["OS"]
    de_jong = so / os_ if os_ > 0 else (float("inf") if so > 0 else float("nan"))
    pathorob = so / (so + os_) if (so + os_) > 0 else float("nan")
    return {"de_jong": float(de_jong), "pathorob": float(pathorob)}


def robustness_index(
    features: np.ndarray,
    labels: np.ndarray,
    sites: np.ndarray,
    groups: np.ndarray,
    ks: Sequence[int] = (3, 5, 10, 20),
    block_rows: int | None = None,
    device: str = "auto",
) -> dict[int, dict[str, float]]:
    """Pooled robustness index per k: `{k: {"de_jong", "pathorob"}}` (cosine, same group excluded)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be a 2-D array with at least 2 rows, got shape {x.shape}")
    n = x.shape[0]
    lab = _codes(labels, "labels", n)
    sit = _codes(sites, "sites", n)
    ks = sorted({int(k) for k in ks})
    indices, valid = nearest_other_group(x, groups, max(ks), block_rows=block_rows, device=device)
    return {k: indices_from_counts(neighbour_counts(lab, sit, indices, valid, k)) for k in ks}


def _per_unit(per_sample: dict[str, np.ndarray], unit: np.ndarray, n_units: int) -> dict[str, np.ndarray]:
    return {
        key: np.bincount(unit, weights=v, minlength=n_units).astype(np.int64) for key, v in per_sample.items()
    }


def unit_counts(
    features: np.ndarray,
    labels: np.ndarray,
    sites: np.ndarray,
    groups: np.ndarray,
    unit: np.ndarray,
    n_units: int,
    ks: Sequence[int],
    device: str = "auto",
) -> dict[int, dict[str, np.ndarray]]:
    """Pooled neighbour counts per k, summed per resampling unit: `{k: {"SS", "SO", "OS", "OO": [U]}}`."""
    n = np.asarray(features).shape[0]
    lab = _codes(labels, "labels", n)
    sit = _codes(sites, "sites", n)
    ks = sorted({int(k) for k in ks})
    indices, valid = nearest_other_group(features, groups, max(ks), device=device)
    u = np.asarray(unit, dtype=np.int64)
    return {k: _per_unit(sample_counts(lab, sit, indices, valid, k), u, n_units) for k in ks}


def _balanced_cells(
    labels: np.ndarray, sites: np.ndarray, min_per_cell: int
) -> tuple[dict[tuple[str, str], np.ndarray], list[tuple[str, str, str, str]]]:
    """Cells (class, site) with >= min_per_cell tiles, and the class pairs x site pairs that fill 2 x 2."""
    lab = np.asarray(labels).astype(str)
    sit = np.asarray(sites).astype(str)
    cells: dict[tuple[str, str], np.ndarray] = {}
    for c in np.unique(lab):
        for s in np.unique(sit):
            idx = np.flatnonzero((lab == c) & (sit == s))
            if idx.size >= min_per_cell:
                cells[(c, s)] = idx
    combos = [
        (c1, c2, s1, s2)
        for c1, c2 in itertools.combinations(sorted({c for c, _ in cells}), 2)
        for s1, s2 in itertools.combinations(sorted({s for _, s in cells}), 2)
        if all(key in cells for key in ((c1, s1), (c1, s2), (c2, s1), (c2, s2)))
    ]
    return cells, combos


def balanced_subsets(
    labels: np.ndarray,
    sites: np.ndarray,
    min_per_cell: int = 10,
    max_subsets: int = 200,
    seed: int = 0,
) -> list[np.ndarray]:
    """PathoROB's balanced 2 x 2 subsets: for two classes x two sites with >= `min_per_cell` tiles in each
    of the four cells, the same number of tiles (the smallest cell's) drawn from every cell, seeded.

    At most `max_subsets` combinations (a seeded choice among them when there are more).
    """
    cells, combos = _balanced_cells(labels, sites, min_per_cell)
    rng = np.random.default_rng(seed)
    if len(combos) > max_subsets:
        combos = [combos[i] for i in sorted(rng.choice(len(combos), max_subsets, replace=False))]
    subsets = []
    for c1, c2, s1, s2 in combos:
        parts = [cells[key] for key in ((c1, s1), (c1, s2), (c2, s1), (c2, s2))]
        n = min(p.size for p in parts)
        subsets.append(np.sort(np.concatenate([rng.choice(p, n, replace=False) for p in parts])))
    return subsets


def balanced_unit_counts(
    features: np.ndarray,
    labels: np.ndarray,
    sites: np.ndarray,
    groups: np.ndarray,
    unit: np.ndarray,
    n_units: int,
    ks: Sequence[int],
    subsets: list[np.ndarray],
    device: str = "auto",
) -> dict[int, dict[str, np.ndarray]]:
    """Neighbour counts per k within each balanced subset (neighbours from it only), summed per unit."""
    ks = sorted({int(k) for k in ks})
    x = np.asarray(features)
    lab = np.asarray(labels)
    sit = np.asarray(sites)
    grp = np.asarray(groups)
    u = np.asarray(unit, dtype=np.int64)
    total = {k: {key: np.zeros(n_units, dtype=np.int64) for key in COUNT_KINDS} for k in ks}
    for sel in subsets:
        indices, valid = nearest_other_group(x[sel], grp[sel], max(ks), device=device)
        for k in ks:
            per_unit = _per_unit(sample_counts(lab[sel], sit[sel], indices, valid, k), u[sel], n_units)
            for key in COUNT_KINDS:
                total[k][key] += per_unit[key]
    return total


def cramers_v(labels: np.ndarray, sites: np.ndarray) -> float:
    """Cramer's V of the label x site contingency table (0: independent, 1: the site determines the label)."""
    _, lab = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    _, sit = np.unique(np.asarray(sites).astype(str), return_inverse=True)
    table = np.zeros((lab.max() + 1, sit.max() + 1))
    np.add.at(table, (lab, sit), 1.0)
    n = table.sum()
    r, c = table.shape
    if n == 0 or min(r, c) < 2:
        return float("nan")
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(r, c) - 1))))


def eligibility(
    labels: np.ndarray,
    sites: np.ndarray,
    min_per_cell: int = 10,
    declared_confound: str = "",
) -> dict[str, object]:
    """Can this benchmark carry a robustness rule? Checked from the data (and the definition's declaration).

    Refused when there is one site; when a class occurs at one site only (label and site coincide,
    e.g. PANDA's Gleason patterns, all from Radboud); when no two classes are both present at two sites
    with `min_per_cell` tiles per cell (no balanced subset); or when the benchmark declares that its
    site stands for something biological (e.g. TCGA tissue-source sites and cancer type).
    """
    lab = np.asarray(labels).astype(str)
    sit = np.asarray(sites).astype(str)
    site_names = sorted(set(sit.tolist()))
    info: dict[str, object] = {
        "eligible": False,
        "reason": "",
        "n_sites": len(site_names),
        "cramers_v": cramers_v(lab, sit),
        "balanced_subsets": 0,
    }
    exclusive = sorted(
        f"{c} (only at {np.unique(sit[lab == c])[0]})"
        for c in np.unique(lab)
        if np.unique(sit[lab == c]).size == 1
    )
    if len(site_names) < 2:
        info["reason"] = (
            f"single site ({site_names[0] if site_names else 'none'}): no other-site neighbour exists"
        )
    elif declared_confound:
        info["reason"] = f"the benchmark declares its site confounded: {declared_confound}"
    elif exclusive:
        info["reason"] = f"label-site confound: class(es) {', '.join(exclusive)}"
    else:
        n_subsets = len(_balanced_cells(lab, sit, min_per_cell)[1])
        info["balanced_subsets"] = n_subsets
        if n_subsets == 0:
            info["reason"] = (
                f"no two classes are both present at two sites with >= {min_per_cell} tiles per class "
                f"and site"
            )
        else:
            info["eligible"] = True
            info["reason"] = (
                f"{len(site_names)} sites, every class at >= 2 sites, {n_subsets} balanced class x site "
                f"subsets"
            )
    return info
