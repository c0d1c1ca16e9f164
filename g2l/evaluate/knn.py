"""kNN classification with cosine similarity: train split -> test split, majority vote, distance tie-break.

Same-group exclusion is not needed here (unlike the robustness index): benchmark splits are made by
group, so no test tile has a training neighbour from its own slide or patient.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from g2l.evaluate.robustness import unit_rows

_BLOCK_BYTES = 64 * 2**20


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int = 20) -> np.ndarray:
    """Predicted label per test row: most frequent label among its k most cosine-similar training rows.

    A tie between labels goes to the tied label whose neighbours have the larger summed similarity
    (i.e. the smaller summed cosine distance).
    """
    tr = unit_rows(train_x)
    te = unit_rows(test_x)
    classes, y = np.unique(np.asarray(train_y), return_inverse=True)
    kk = min(int(k), tr.shape[0])
    rows = min(4096, max(1, _BLOCK_BYTES // max(1, 4 * tr.shape[0])))  # also bounds the vote arrays
    out = np.empty(te.shape[0], dtype=np.int64)
    for lo in range(0, te.shape[0], rows):
        sims = te[lo : lo + rows] @ tr.T
        if kk < tr.shape[0]:
            nb = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            nb = np.broadcast_to(np.arange(tr.shape[0]), sims.shape).copy()
        nb_sims = np.take_along_axis(sims, nb, axis=1)
        onehot = np.zeros((nb.shape[0], kk, classes.size), dtype=np.float64)
        np.put_along_axis(onehot, y[nb][:, :, None], 1.0, axis=2)
        votes = onehot.sum(axis=1)
        sim_sum = (onehot * nb_sims[:, :, None]).sum(axis=1)
        # Lexicographic: votes first, then summed similarity (its scale is < 1 per neighbour, < k overall).
        score = votes * (2.0 * kk + 2.0) + sim_sum
        out[lo : lo + rows] = np.argmax(score, axis=1)
    return classes[out]


def knn_balanced_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int = 20
) -> float:
    """Balanced accuracy of cosine kNN (k neighbours from the training split) on the test split."""
    return float(balanced_accuracy_score(test_y, knn_predict(train_x, train_y, test_x, k)))
