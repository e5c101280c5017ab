"""Holdout metrics, computed by scikit-learn and returned as plain JSON-ready values."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)


def class_counts(y: np.ndarray, classes: list[float]) -> list[int]:
    """How many rows of y carry each class, in the order of classes."""
    return [int(np.count_nonzero(y == c)) for c in classes]


def classification_metrics(classes: list[float], y_train: np.ndarray, y_test: np.ndarray,
                           predicted: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, macro-F1, log-loss and confusion matrix on the test rows, with the class balance."""
    # scikit-learn calls float labels like 7.25 "continuous" and refuses them, so the
    # metrics see class indices; every label value is in classes, which is sorted.
    true_idx = np.searchsorted(classes, y_test)
    pred_idx = np.searchsorted(classes, predicted)
    labels = list(range(len(classes)))
    train_counts = class_counts(y_train, classes)
    return {
        "accuracy": float(accuracy_score(true_idx, pred_idx)),
        # Macro over the classes present in the test truth or the predictions, as scikit-learn
        # does; a class with no support scores 0 instead of warning.
        "f1_macro": float(f1_score(true_idx, pred_idx, average="macro", zero_division=0)),
        "log_loss": float(log_loss(true_idx, probabilities, labels=labels)),
        "confusion_matrix": confusion_matrix(true_idx, pred_idx, labels=labels).tolist(),
        "classes": [float(c) for c in classes],
        "class_counts": {"train": train_counts, "test": class_counts(y_test, classes)},
        # Classes the model knows of (they are in the dataset) but never saw a train row of: the
        # split put all their rows on the test side, so the model cannot have learned them.
        "untrained_classes": [float(c) for c, n in zip(classes, train_counts) if n == 0],
        "train_size": int(y_train.size),
        "test_size": int(y_test.size),
    }


def train_r2(y_train: np.ndarray, fitted: np.ndarray) -> float:
    """R² on the rows a regression was fitted to (inf or NaN where a sum of squares overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(r2_score(y_train, fitted))


def regression_metrics(y_test: np.ndarray, predicted: np.ndarray) -> dict:
    """R², RMSE and MAE on the test rows (inf or NaN where a sum of squares overflows: the builders check)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return {
            "r2": float(r2_score(y_test, predicted)),
            "rmse": float(root_mean_squared_error(y_test, predicted)),
            "mae": float(mean_absolute_error(y_test, predicted)),
            "test_size": int(y_test.size),
        }
