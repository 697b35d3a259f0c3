"""The clip rule chosen on a cross-validation's out-of-fold predictions, nested.

A frame model's clip score comes from a rule over its frames (``report.aggregate``).
Cross-validated on COVID-BLUeS, the persistent-worst rule called too many clips 2 and 3
(a model's spread of frame calls always holds a run of high ones). The ``expected`` rule
scores a clip by its expected severity (``sum_k k * mean_t p_t(k)``), cut at three
thresholds. Here the thresholds are set **by prevalence**: so that each score is as
common among the clip scores as among the experts' scores of the clips they are fitted
on. No metric is optimised (a threshold fitted to maximise kappa buys it with extremes);
only the experts' score distribution is used.

Nested: in a cross-validation each fold's test clips are cut at thresholds fitted on the
*other* folds' out-of-fold clips of the same repeat, so no clip is scored by thresholds
that saw its label (:func:`nested_predictions`); optionally the temperature too (fitted
per fold on the other folds' frames). The thresholds a shipped model carries
(``inference.clip_rule``) are fitted on all out-of-fold clips of every repeat
(:func:`card_rule`), with the probabilities calibrated as the engine calibrates them
(``softmax(logits / T)``: the saved frame probabilities raised to ``1 / T`` and
renormalised, the same thing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lusviewer.training.calibration import fit_temperature

#: Cumulative shares within this of 0 or 1 give thresholds at the data's extremes; kept
#: strictly inside 0..3 so that every score stays reachable.
_EDGE = 1e-3


def prevalence_thresholds(severity: np.ndarray, scores: np.ndarray, num_classes: int = 4) -> tuple[float, ...]:
    """Thresholds t_1 < ... < t_{C-1} on ``severity`` such that the share of clips at or
    above t_k equals the share of ``scores`` >= k (quantiles of the severities)."""
    x = np.asarray(severity, dtype=np.float64)
    y = np.asarray(scores, dtype=np.int64)
    if len(x) != len(y) or not len(x):
        raise ValueError("thresholds need one severity per scored clip, and at least one clip")
    below = np.cumsum(np.bincount(y, minlength=num_classes)[: num_classes - 1]) / len(y)
    t = np.quantile(x, np.clip(below, _EDGE, 1 - _EDGE))
    # keep them strictly increasing and inside (0, C-1) even where a score is absent
    lo, hi = _EDGE, num_classes - 1 - _EDGE
    out: list[float] = []
    for k, v in enumerate(t):
        v = float(np.clip(v, lo + k * _EDGE, hi - (len(t) - 1 - k) * _EDGE))
        if out and v <= out[-1]:
            v = out[-1] + _EDGE
        out.append(v)
    return tuple(out)


def cut(severity: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Each severity's score: how many thresholds it reaches (as ``aggregate.cut_severity``)."""
    x = np.asarray(severity, dtype=np.float64)
    reached = x[:, None] >= np.asarray(thresholds, dtype=np.float64)[None, :]
    return np.asarray(reached.sum(axis=1), dtype=np.int64)


def calibrated_mean(frame_probs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """A clip's mean frame probabilities after temperature scaling of its saved frame
    probabilities: ``softmax(log p / T)`` is ``softmax(logits / T)``."""
    p = np.asarray(frame_probs, dtype=np.float64)
    if temperature != 1.0:
        logp = np.log(np.clip(p, 1e-12, None)) / temperature
        logp -= logp.max(1, keepdims=True)
        p = np.exp(logp)
        p /= p.sum(1, keepdims=True)
    return np.asarray(p.mean(0))


def severities(run: Path, clips: Sequence[dict[str, object]], temperature: float = 1.0) -> np.ndarray:
    """Expected severities of a fold's test clips (``result.json`` rows, in order): from
    the frames' saved probabilities (``oof_probs.npz``) where the fold has them, else the
    row's mean probabilities (``p_mean``; only at temperature 1)."""
    frames = run / "oof_probs.npz"
    out = []
    store = np.load(frames) if frames.exists() else None
    try:
        for c in clips:
            name = Path(str(c["clip"])).name
            if store is not None and name in store.files:
                mean = calibrated_mean(store[name].astype(np.float32), temperature)
            elif "p_mean" in c and temperature == 1.0:
                mean = np.asarray(c["p_mean"], dtype=np.float64)
            else:
                raise ValueError(f"{run}: no frame probabilities for {name} (needed at temperature {temperature:g})")
            out.append(float(mean @ np.arange(len(mean))))
    finally:
        if store is not None:
            store.close()
    return np.asarray(out)


def fold_runs(root: str | os.PathLike[str], variant: str | None = None) -> list[tuple[Path, dict[str, object]]]:
    """Every fold result of a cross-validation folder: (run folder, result.json)."""
    files = sorted(Path(root).glob("fold*/*/result.json")) + sorted(Path(root).glob("rep*/fold*/*/result.json"))
    out = []
    for f in files:
        rec = json.loads(f.read_text())
        if variant is None or rec.get("variant") == variant:
            out.append((f.parent, rec))
    if not out:
        raise ValueError(f"{root}: no fold results" + (f" of variant {variant!r}" if variant else ""))
    return out


def _repeat(rec: dict[str, object], run: Path) -> int:
    rep = rec.get("repeat")
    if rep is not None:
        return int(str(rep))
    part = run.parts[-3]
    return int(part[3:]) if part.startswith("rep") else 0


def frame_probabilities(run: Path, clips: Sequence[dict[str, object]]) -> list[np.ndarray]:
    """The saved frame probabilities (``oof_probs.npz``) of a fold's test clips, in order;
    ValueError naming the fold where they are missing."""
    frames = run / "oof_probs.npz"
    if not frames.exists():
        raise ValueError(f"{run}: no frame probabilities (oof_probs.npz), needed for a nested temperature")
    with np.load(frames) as store:
        out = []
        for c in clips:
            name = Path(str(c["clip"])).name
            if name not in store.files:
                raise ValueError(f"{run}: no frame probabilities for {name} (needed for a nested temperature)")
            out.append(store[name].astype(np.float64))
    return out


def _nested_temperature(probs: Sequence[np.ndarray], scores: np.ndarray) -> float:
    """The temperature fitted on these clips' frames (each frame against its clip's expert
    score), as ``lusviewer calibrate`` fits the card's on all out-of-fold frames."""
    logp = np.log(np.clip(np.concatenate(probs), 1e-7, 1.0))
    return fit_temperature(logp, np.concatenate([np.full(len(p), y) for p, y in zip(probs, scores, strict=True)]))


def nested_predictions(
    root: str | os.PathLike[str],
    variant: str | None = None,
    temperature: float | None = 1.0,
    repeats: Sequence[int] | None = None,
) -> dict[int, dict[str, int]]:
    """Per repeat (of ``repeats`` only, where given), every out-of-fold clip's score by the
    ``expected`` rule, its thresholds fitted by prevalence on the other folds' clips of
    that repeat. ``temperature`` None: the frame probabilities' temperature is nested
    too, fitted for each fold on the other folds' frames of that repeat (nothing about a
    fold's clips, not even one number, is fitted on them)."""
    by_rep: dict[int, list[tuple[int, str, int, float | np.ndarray]]] = {}
    for run, rec in fold_runs(root, variant):
        rep = _repeat(rec, run)
        if repeats is not None and rep not in repeats:
            continue
        clips = rec["clips"]
        assert isinstance(clips, list)
        values = frame_probabilities(run, clips) if temperature is None else severities(run, clips, temperature)
        rows = by_rep.setdefault(rep, [])
        for c, v in zip(clips, values, strict=True):
            rows.append((int(rec["fold"]), Path(str(c["clip"])).name, int(c["score"]), v))  # type: ignore[call-overload]
    out: dict[int, dict[str, int]] = {}
    for rep, rows in by_rep.items():
        fold = np.array([r[0] for r in rows])
        y = np.array([r[2] for r in rows])
        pred = np.zeros(len(rows), dtype=np.int64)
        probs = [np.asarray(r[3]) for r in rows] if temperature is None else []
        for f in np.unique(fold):
            if (fold != f).sum() == 0:
                raise ValueError(f"{root}: one fold only; nested thresholds need at least two")
            if temperature is None:
                t = _nested_temperature([p for p, g in zip(probs, fold, strict=True) if g != f], y[fold != f])
                x = np.array([calibrated_mean(p, t) @ np.arange(p.shape[1]) for p in probs])
            else:
                x = np.array([float(r[3]) for r in rows])
            pred[fold == f] = cut(x[fold == f], prevalence_thresholds(x[fold != f], y[fold != f]))
        out[rep] = {r[1]: int(p) for r, p in zip(rows, pred, strict=True)}
    return out


def card_rule(root: str | os.PathLike[str], variant: str | None = None, temperature: float = 1.0) -> dict[str, object]:
    """The ``inference.clip_rule`` of a model trained with a cross-validated recipe: the
    expected rule with thresholds fitted by prevalence on all its out-of-fold clips."""
    xs, ys = [], []
    for run, rec in fold_runs(root, variant):
        clips = rec["clips"]
        assert isinstance(clips, list)
        xs.append(severities(run, clips, temperature))
        ys.append(np.array([int(c["score"]) for c in clips]))  # type: ignore[call-overload]
    x, y = np.concatenate(xs), np.concatenate(ys)
    t = prevalence_thresholds(x, y)
    return {
        "rule": "expected",
        "thresholds": [round(v, 4) for v in t],
        "fitted": (
            f"by prevalence on {len(x)} out-of-fold clip predictions of {Path(root).name} "
            f"(temperature {temperature:g}): each score as common as among the experts' scores"
        ),
    }
