"""Classification metrics for ordinal 4-level scores (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int = 4) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int = 4
) -> dict[str, float]:
    """Accuracy, macro F1 / sensitivity / specificity (over the classes present in
    ``y_true`` or ``y_pred``), within-one accuracy and quadratic-weighted kappa."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    cm = confusion(t, p, n).astype(np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = total - tp - fn - fp
    present = (cm.sum(1) + cm.sum(0)) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        spec = np.where(tn + fp > 0, tn / (tn + fp), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    w = np.subtract.outer(np.arange(n), np.arange(n)) ** 2 / (n - 1) ** 2
    expected = np.outer(cm.sum(1), cm.sum(0)) / max(total, 1.0)
    denom = (w * expected).sum()
    qwk = 1.0 - (w * cm).sum() / denom if denom > 0 else 0.0
    return {
        "n": float(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "sensitivity": float(rec[present].mean()) if present.any() else 0.0,
        "specificity": float(spec[present].mean()) if present.any() else 0.0,
        "within_one": float((np.abs(t - p) <= 1).mean()) if total else 0.0,
        "qwk": float(qwk),
    }
