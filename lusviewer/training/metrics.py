"""Classification metrics for ordinal 4-level scores (numpy only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def roc_auc(positive: Sequence[bool] | np.ndarray, risk: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive has a higher risk
    than a random negative (ties count half; Mann-Whitney). NaN without both kinds."""
    pos = np.asarray(positive, dtype=bool)
    r = np.asarray(risk, dtype=np.float64)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _ranks(r)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


AUC_KEYS = ("auc_ge1", "auc_ge2", "auc_ge3")


def ordinal_aucs(scores: Sequence[int] | np.ndarray, risks: np.ndarray) -> dict[str, float]:
    """AUCs of telling score >= k from score < k, k = 1..3, from ``risks`` (n, 3) whose
    column k-1 is each item's risk of a score >= k."""
    s = np.asarray(scores)
    r = np.asarray(risks, dtype=np.float64).reshape(len(s), -1)
    return {key: roc_auc(s >= k, r[:, k - 1]) for k, key in enumerate(AUC_KEYS, start=1)}


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties averaged."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return np.asarray((np.cumsum(counts) - (counts - 1) / 2)[inverse], dtype=np.float64)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (ties averaged); NaN where either side is constant."""
    rx, ry = _ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64))
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


PATIENT_KEYS = ("mae", "spearman")


def patient_scores(
    groups: Sequence[str], expert: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per patient (numeric ids in numeric order, then the others): clip count and the
    mean clip score by the expert and by the model. The mean over a patient's zones is
    the LUS total score divided by the number of zones, so patients scanned at
    different numbers of zones compare."""
    names = sorted(set(groups), key=lambda g: (0, int(g), "") if g.isdecimal() else (1, 0, g))
    g = np.asarray(groups)
    e, p = np.asarray(expert, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    n = np.array([(g == name).sum() for name in names])
    return (
        names,
        n,
        np.array([e[g == name].mean() for name in names]),
        np.array([p[g == name].mean() for name in names]),
    )


def patient_metrics(expert_mean: np.ndarray, model_mean: np.ndarray) -> dict[str, float]:
    """Agreement of per-patient mean scores: mean absolute difference (score levels) and
    Spearman's rank correlation."""
    e, m = np.asarray(expert_mean, dtype=np.float64), np.asarray(model_mean, dtype=np.float64)
    return {
        "n": float(len(e)),
        "mae": float(np.abs(e - m).mean()) if len(e) else float("nan"),
        "spearman": spearman(e, m),
    }


def bootstrap_by_group(
    groups: Sequence[str],
    per_clip: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    reference: Sequence[np.ndarray] | None = None,
    reps: int = 2000,
    seed: int = 0,
    keys: Sequence[str] = ("accuracy", "macro_f1", "within_one", "qwk"),
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]] = classification_metrics,
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of the metrics by resampling *patients* with replacement
    (clips of one patient are not independent, so resampling clips or frames would give
    intervals that are too narrow).

    ``per_clip[i]`` is (targets, predictions) of clip ``i`` (one element each for clip-level
    metrics, one per frame for frame-level ones); ``groups[i]`` its patient. With
    ``reference`` (another set of predictions of the same clips, e.g. a baseline) the
    intervals are of the paired difference, model minus reference, under ``diff_<key>``.
    ``metric`` (targets, predictions) -> metrics; a resample where a metric is undefined
    (NaN, e.g. an AUC without positives) is left out of that metric's interval.
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
        m = metric(t, np.concatenate([per_clip[i][1] for i in picked]))
        for k in keys:
            draws[k].append(m[k])
        if reference is not None:
            r = metric(t, np.concatenate([reference[i] for i in picked]))
            for k in keys:
                draws[f"diff_{k}"].append(m[k] - r[k])
    return {
        k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        if np.isfinite(v).any()
        else (float("nan"), float("nan"))
        for k, v in draws.items()
    }


def patient_agreement(
    groups: Sequence[str],
    expert: Sequence[int] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    reference: Sequence[int] | np.ndarray | None = None,
    *,
    reps: int = 2000,
) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, float] | None]:
    """Patient-level agreement of clip scores (one entry per clip): the model's
    :func:`patient_metrics`, their 95 % patient-bootstrap intervals (empty without
    ``reps`` or with one patient), and with ``reference`` (another answer for the same
    clips, e.g. a baseline) its metrics and, in the intervals, ``diff_<key>`` (model minus
    reference, paired by patient)."""
    names, _, e, m = patient_scores(groups, expert, predicted)
    ref = None if reference is None else patient_scores(groups, expert, reference)[3]
    ci: dict[str, tuple[float, float]] = {}
    if reps > 0 and len(names) > 1:
        ci = bootstrap_by_group(
            names,
            [(np.array([a]), np.array([b])) for a, b in zip(e, m, strict=True)],
            reference=None if ref is None else [np.array([r]) for r in ref],
            reps=reps,
            keys=PATIENT_KEYS,
            metric=patient_metrics,
        )
    return patient_metrics(e, m), ci, None if ref is None else patient_metrics(e, ref)
