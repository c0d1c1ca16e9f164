"""kNN: cosine neighbours from the training split, majority vote, ties broken by distance."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from g2l.evaluate.knn import knn_balanced_accuracy, knn_predict


def test_matches_sklearn_cosine_knn_when_votes_cannot_tie():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = rng.standard_normal((400, 10)) + 0.7 * y[:, None]
    ref = KNeighborsClassifier(n_neighbors=21, metric="cosine", algorithm="brute").fit(x[:300], y[:300])
    pred = knn_predict(x[:300], y[:300], x[300:], k=21)  # odd k, two classes: no vote ties
    assert (pred == ref.predict(x[300:])).all()
    assert knn_balanced_accuracy(x[:300], y[:300], x[300:], y[300:], k=21) == pytest.approx(
        balanced_accuracy_score(y[300:], pred))


def test_vote_ties_go_to_the_closer_label():
    train = np.array([[1.0, 0.1], [1.0, -0.5], [0.0, 1.0]])
    labels = np.array(["near", "far", "other"])
    # k=2: one "near" and one "far" vote; "near" is more similar to the query.
    assert knn_predict(train, labels, np.array([[1.0, 0.05]]), k=2).tolist() == ["near"]
    assert knn_predict(train, labels, np.array([[1.0, -0.45]]), k=2).tolist() == ["far"]
    # A clear majority wins even when the single closest neighbour disagrees.
    train2 = np.array([[1.0, 0.0], [0.9, 0.5], [0.9, 0.55], [0.0, 1.0]])
    assert knn_predict(train2, np.array([0, 1, 1, 2]), np.array([[1.0, 0.05]]), k=3).tolist() == [1]
