"""Confusion matrices of classifiers (rows the true class, columns the predicted), as PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def confusion_matrix(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Counts of (true, predicted) class pairs among ``k`` classes: ``(k, k)``, rows true."""
    return np.bincount(np.asarray(true) * k + np.asarray(pred), minlength=k * k).reshape(k, k)


def plot_confusion(
    conf: np.ndarray, path: str | os.PathLike, labels: Sequence[str], title: str
) -> Path:
    """The confusion matrix ``conf`` in blues, each cell its count, classes named by
    ``labels``; returns ``path``."""
    from lstmkit.viz import plot_heatmap

    return plot_heatmap(
        conf,
        path,
        row_labels=labels,
        col_labels=labels,
        title=title,
        xlabel="predicted",
        ylabel="true",
        cmap="Blues",
        fmt="d",
    )
