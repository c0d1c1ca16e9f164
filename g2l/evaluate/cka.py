"""Linear centred kernel alignment (Kornblith et al. 2019) between two embeddings of the same samples."""

from __future__ import annotations

import numpy as np


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of [N, d1] and [N, d2]: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), in [0, 1].

    Uses the feature-space form (d x d Gram matrices), so cost grows linearly with N; float64 throughout.
    Invariant to orthogonal transforms and isotropic scaling of either side; dimensions may differ.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"CKA needs two 2-D arrays with the same number of rows, got {a.shape} and {b.shape}"
        )
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(b.T @ a, ord="fro") ** 2
    norm_a = np.linalg.norm(a.T @ a, ord="fro")
    norm_b = np.linalg.norm(b.T @ b, ord="fro")
    if norm_a == 0 or norm_b == 0:
        return float("nan")
    return float(cross / (norm_a * norm_b))
