"""Robustness index (de Jong et al. 2025; PathoROB): do neighbours share biology or only the medical centre?

For every sample, its k nearest neighbours by cosine distance are found among samples of *other*
groups (a tile's own slide or patient never counts: those tiles share both biology and site and
would flatter every model). Each neighbour is counted as SS (same label, same site), SO (same label,
other site) or OS (other label, same site); counts are pooled over all samples, then
de Jong's index = (SS + SO) / (SS + OS) and PathoROB's normalised index = SO / (SO + OS).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Rows of the similarity matrix computed at once: bounds memory at ~_BLOCK_BYTES whatever N is.
_BLOCK_BYTES = 64 * 2**20


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


def neighbour_counts(
    labels: np.ndarray, sites: np.ndarray, indices: np.ndarray, valid: np.ndarray, k: int
) -> dict[str, int]:
    """Pooled SS / SO / OS / OO counts over the first k neighbours of every row."""
    lab = np.asarray(labels)
    sit = np.asarray(sites)
    idx = np.where(valid[:, :k], indices[:, :k], 0)
    ok = valid[:, :k]
    same_label = (lab[idx] == lab[:, None]) & ok
    same_site = (sit[idx] == sit[:, None]) & ok
    other_label = ok & ~same_label
    other_site = ok & ~same_site
    return {
        "SS": int(np.count_nonzero(same_label & same_site)),
        "SO": int(np.count_nonzero(same_label & other_site)),
        "OS": int(np.count_nonzero(other_label & same_site)),
        "OO": int(np.count_nonzero(other_label & other_site)),
    }


def indices_from_counts(counts: dict[str, int]) -> dict[str, float]:
    """de Jong's (SS + SO) / (SS + OS) and PathoROB's SO / (SO + OS); NaN where undefined."""
    ss, so, os_ = counts["SS"], counts["SO"], counts["OS"]
    de_jong = (ss + so) / (ss + os_) if (ss + os_) > 0 else float("nan")
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
    """Robustness index per k: `{k: {"de_jong": float, "pathorob": float}}` (cosine, same group excluded)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be a 2-D array with at least 2 rows, got shape {x.shape}")
    n = x.shape[0]
    lab = _codes(labels, "labels", n)
    sit = _codes(sites, "sites", n)
    ks = sorted({int(k) for k in ks})
    indices, valid = nearest_other_group(x, groups, max(ks), block_rows=block_rows, device=device)
    return {k: indices_from_counts(neighbour_counts(lab, sit, indices, valid, k)) for k in ks}
