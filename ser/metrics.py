"""Classification metrics of SER papers: UA (mean per-class recall), WA (accuracy), macro-F1, confusion."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} holds a class index outside [0, {num_classes})")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def scores_from_confusion(matrix: np.ndarray) -> dict:
    """UA, WA, macro-F1 (in %) and per-class recall from a confusion matrix.

    UA averages recall over the classes present in the reference (a class with no test utterance has no recall);
    macro-F1 averages F1 over the same classes, with F1 = 0 where a class is never predicted correctly.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    correct = np.diag(matrix)
    present = support > 0
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=present)
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(correct), where=denom > 0)
    total = matrix.sum()
    return {
        "ua": 100.0 * float(recall[present].mean()) if present.any() else float("nan"),
        "wa": 100.0 * float(correct.sum() / total) if total else float("nan"),
        "macro_f1": 100.0 * float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_recall": [100.0 * float(r) if p else None for r, p in zip(recall, present)],
        "per_class_precision": [100.0 * float(q) if n > 0 else None for q, n in zip(precision, predicted)],
        "num_utts": int(total),
    }


def classification_scores(y_true, y_pred, num_classes: int) -> dict:
    """scores_from_confusion plus the confusion matrix itself (as nested lists)."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    scores = scores_from_confusion(matrix)
    scores["confusion"] = matrix.tolist()
    return scores


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value), as SER papers report folds."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0
