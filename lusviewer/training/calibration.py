"""Calibration of a model's probabilities: temperature scaling and its check (numpy only).

Temperature scaling (Guo et al. 2017) divides the logits by one number ``T`` fitted on
held-out frames, minimising their negative log-likelihood: ``T > 1`` softens an
over-confident model, ``T < 1`` sharpens an under-confident one; the argmax (the score)
never changes. The card records it as ``inference.temperature``; the engine applies it.

The check is the top-label expected calibration error (ECE): frames binned by their
highest probability into equal-width bins, the gap between each bin's mean confidence
and its accuracy, weighted by the bin's share of frames.
"""

from __future__ import annotations

import math

import numpy as np

#: The range a fitted temperature is kept in: wide enough for any real model; a fit at a
#: bound means the held-out frames are all right (lower) or carry no signal (upper).
T_MIN, T_MAX = 0.05, 20.0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _checked(scores: np.ndarray, targets: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] < 2:
        raise ValueError(f"{what} must be (frames, classes) with at least one frame and two classes, not {s.shape}")
    if t.shape != (s.shape[0],):
        raise ValueError(f"targets must be ({s.shape[0]},), one class per frame, not {t.shape}")
    if not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= s.shape[1]:
        raise ValueError(f"targets must be whole class numbers from 0 to {s.shape[1] - 1}")
    if not np.isfinite(s).all():
        raise ValueError(f"{what} must be finite numbers")
    return s, t.astype(np.int64)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` at the targets."""
    z, y = _checked(logits, targets, "logits")
    return _nll(z, y, math.log(temperature))


def _nll(z: np.ndarray, y: np.ndarray, log_t: float) -> float:
    s = z / math.exp(log_t)
    m = s.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(1))
    return float((lse - s[np.arange(len(y)), y]).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, *, tol: float = 1e-5) -> float:
    """The temperature in [:data:`T_MIN`, :data:`T_MAX`] minimising the mean NLL of
    ``softmax(logits / T)`` at ``targets``: a golden-section search over ``log T``.

    The NLL is convex in ``1/T`` (a log-sum-exp of functions linear in it, less one
    linear in it), hence unimodal in ``log T``: the search finds the global minimum
    (or the bound it lies beyond) to ``tol`` in ``log T``."""
    z, y = _checked(logits, targets, "logits")
    a, b = math.log(T_MIN), math.log(T_MAX)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = _nll(z, y, c), _nll(z, y, d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = _nll(z, y, c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = _nll(z, y, d)
    # the bounds themselves win where the minimum lies at (or beyond) one of them
    best = min((_nll(z, y, x), x) for x in ((a + b) / 2, math.log(T_MIN), math.log(T_MAX)))[1]
    return min(max(math.exp(best), T_MIN), T_MAX)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` along the last axis, float64."""
    s = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(s - s.max(-1, keepdims=True))
    out: np.ndarray = e / e.sum(-1, keepdims=True)
    return out


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin (``(k/bins, (k+1)/bins]``, the first one closed):
    the mean top-label confidence, the accuracy (NaN where the bin is empty) and the
    number of frames. The points of a reliability diagram."""
    p, y = _checked(probs, targets, "probabilities")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    k = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(k, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(k, weights=conf, minlength=bins) / count
        accuracy = np.bincount(k, weights=correct, minlength=bins) / count
    return mean_conf, accuracy, count


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: ``sum_b (n_b / N) * |accuracy_b - confidence_b|`` over equal-width
    bins of the highest probability. 0 for a perfectly calibrated model (in the limit of
    many frames), up to 1."""
    mean_conf, accuracy, count = reliability(probs, targets, bins)
    used = count > 0
    return float((count[used] * np.abs(accuracy[used] - mean_conf[used])).sum() / count.sum())
