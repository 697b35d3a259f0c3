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


def bootstrap_by_group(
    groups: Sequence[str],
    per_clip: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    reference: Sequence[np.ndarray] | None = None,
    reps: int = 2000,
    seed: int = 0,
    keys: Sequence[str] = ("accuracy", "macro_f1", "within_one", "qwk"),
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of the metrics by resampling *patients* with replacement
    (clips of one patient are not independent, so resampling clips or frames would give
    intervals that are too narrow).

    ``per_clip[i]`` is (targets, predictions) of clip ``i`` (one element each for clip-level
    metrics, one per frame for frame-level ones); ``groups[i]`` its patient. With
    ``reference`` (another set of predictions of the same clips, e.g. a baseline) the
    intervals are of the paired difference, model minus reference, under ``diff_<key>``.
    """
    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    idx_of = {g: [i for i, gi in enumerate(groups) if gi == g] for g in names}
    draws: dict[str, list[float]] = {k: [] for k in keys}
    if reference is not None:
        draws.update({f"diff_{k}": [] for k in keys})
    for _ in range(reps):
        picked = [i for g in rng.choice(len(names), len(names), replace=True) for i in idx_of[names[int(g)]]]
        t = np.concatenate([per_clip[i][0] for i in picked])
        m = classification_metrics(t, np.concatenate([per_clip[i][1] for i in picked]))
        for k in keys:
            draws[k].append(m[k])
        if reference is not None:
            r = classification_metrics(t, np.concatenate([reference[i] for i in picked]))
            for k in keys:
                draws[f"diff_{k}"].append(m[k] - r[k])
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in draws.items()}
