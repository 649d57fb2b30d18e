"""UA/WA/macro-F1/confusion against scikit-learn on random labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from ser.metrics import classification_scores, mean_std


@pytest.mark.parametrize("seed", range(10))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 9))
    n = int(rng.integers(5, 300))
    y_true = rng.integers(0, num_classes, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, num_classes, n))
    present = sorted(set(y_true.tolist()))
    scores = classification_scores(y_true, y_pred, num_classes)
    assert scores["wa"] == pytest.approx(100 * accuracy_score(y_true, y_pred))
    assert scores["ua"] == pytest.approx(100 * recall_score(y_true, y_pred, labels=present, average="macro"))
    if len(present) == num_classes:
        assert scores["ua"] == pytest.approx(100 * balanced_accuracy_score(y_true, y_pred))
    assert scores["macro_f1"] == pytest.approx(100 * f1_score(y_true, y_pred, labels=present, average="macro",
                                                              zero_division=0))
    np.testing.assert_array_equal(scores["confusion"], confusion_matrix(y_true, y_pred, labels=range(num_classes)))


def test_ua_differs_from_wa_on_imbalanced_data():
    y_true = [0] * 90 + [1] * 10
    y_pred = [0] * 100
    scores = classification_scores(y_true, y_pred, 2)
    assert scores["wa"] == pytest.approx(90.0) and scores["ua"] == pytest.approx(50.0)


def test_bad_class_index_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        classification_scores([0, 3], [0, 1], 3)


def test_mean_std_is_the_sample_std():
    values = [70.0, 75.0, 80.0, 62.5]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert mean_std([5.0]) == (5.0, 0.0)
