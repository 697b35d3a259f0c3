"""Clip-level scores from per-frame scores.

Default rule, ``persistent``: a clip is scored by the worst pattern that persists,
as clinicians score a clip by the worst finding they see in it rather than by its
average frame. Precisely: the clip score is the highest score ``s`` such that at
least ``k`` consecutive frames have a score ``>= s``, where ``k`` is the number of
frames in ``min_duration_s`` (0.2 s: 5 frames at 25 fps), at least ``min_frames``
(3), and at most the clip's length. A single-frame flicker to a higher score does
not raise the clip score; a pattern held for a fifth of a second does.

Other rules: ``majority`` (most frequent frame score, ties to the higher score),
``max`` (the highest frame score) and ``expected``: the clip's expected severity
(the sum of ``k * p_k`` over the frames' mean probabilities, a number from 0 to 3) cut
at three thresholds. By default the thresholds round it (0.5, 1.5, 2.5); a model card
may carry thresholds fitted on the model's cross-validation (``inference.clip_rule``),
set so that each score is as common among the model's clip scores as among the
experts' (see ``lusviewer.training.cliprule``). Cross-validated on COVID-BLUeS, the
persistent rule called too many clips 2 and 3 (docs/model.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

RULES = ("persistent", "majority", "max", "expected")

#: Thresholds of the ``expected`` rule without fitted ones: rounding to the nearest score.
ROUNDING = (0.5, 1.5, 2.5)


def expected_severity(probs: np.ndarray) -> float:
    """A clip's expected severity: ``sum_k k * mean_t p_t(k)`` over its frames (NaN rows,
    frames not scored, left out); 0 to C-1."""
    p = np.asarray(probs, dtype=np.float64)
    p = p[np.isfinite(p).all(1)] if p.ndim == 2 else p
    if p.ndim != 2 or not len(p):
        raise ValueError("the expected rule needs the frames' probabilities")
    return float(p.mean(0) @ np.arange(p.shape[1], dtype=np.float64))


def check_thresholds(thresholds: Sequence[float], num_classes: int = 4) -> tuple[float, ...]:
    """``thresholds`` as a tuple, or ValueError saying why they cannot cut a severity:
    C-1 finite numbers, strictly increasing, within 0..C-1."""
    t = tuple(float(x) for x in thresholds)
    if len(t) != num_classes - 1:
        raise ValueError(f"{len(t)} thresholds; {num_classes} scores need {num_classes - 1}")
    if not all(np.isfinite(t)) or any(b <= a for a, b in itertools.pairwise(t)):
        raise ValueError(f"thresholds {list(t)} are not finite and strictly increasing")
    if t[0] <= 0 or t[-1] >= num_classes - 1:
        raise ValueError(f"thresholds {list(t)} lie outside 0..{num_classes - 1}: a score could never be given")
    return t


def frame_scores(probs: np.ndarray, rule: str = "persistent", thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Each frame's score. Its most probable score; but under the ``expected`` rule, the
    frame's own expected severity cut at the clip rule's thresholds, so that frames and
    clip are scored alike: with calibrated, flat probabilities the most probable score of
    every frame can be 3 while their mean severity is cut to 1, a clip score that
    contradicts its own timeline. The clip's expected severity is the mean of its frames'
    (the sum is linear), so a clip whose every frame scores s is scored s."""
    p = np.asarray(probs, dtype=np.float64)
    if rule != "expected" or p.ndim != 2 or not len(p):
        return np.asarray(p.argmax(1) if p.ndim == 2 and len(p) else np.zeros(0), dtype=np.int64)
    t = check_thresholds(ROUNDING if thresholds is None else thresholds, p.shape[1])
    severity = p @ np.arange(p.shape[1], dtype=np.float64)
    return np.asarray((severity[:, None] >= np.asarray(t)[None, :]).sum(axis=1), dtype=np.int64)


def cut_severity(value: float, thresholds: Sequence[float]) -> int:
    """The score an expected severity falls on: how many thresholds it reaches."""
    return int(sum(value >= t for t in thresholds))


#: A frame's score is a weak call when the model gives it a probability below this: with
#: four scores, chance is 0.25, and below 0.5 the other three scores together are more
#: likely than the one shown.
LOW_CONFIDENCE = 0.5


def low_confidence(probs: np.ndarray) -> np.ndarray:
    """Per frame: True where the most probable score has a probability below
    :data:`LOW_CONFIDENCE` (frames not scored yet, all-NaN rows, are False)."""
    p = np.asarray(probs, dtype=np.float32)
    if p.size == 0:
        return np.zeros(len(p), dtype=bool)
    top = np.nanmax(np.where(np.isnan(p), -np.inf, p), axis=1)
    return np.asarray(np.isfinite(top) & (top < LOW_CONFIDENCE), dtype=bool)


#: How far a clip score may be read as a finding (:func:`clip_confidence`).
Confidence = Literal["confident", "uncertain", "withheld"]
CONFIDENCES: tuple[Confidence, ...] = ("confident", "uncertain", "withheld")


class _HasClipScore(Protocol):
    @property
    def clip_score(self) -> int: ...


class ScoredClip(Protocol):
    """What :func:`clip_confidence` reads of a scored clip (``inference.ClipResult`` has it)."""

    @property
    def probs(self) -> np.ndarray: ...
    @property
    def scores(self) -> np.ndarray: ...
    @property
    def summary(self) -> _HasClipScore: ...
    @property
    def unfamiliar(self) -> bool | None: ...


def clip_confidence(result: ScoredClip) -> Confidence:
    """The one rule for how a clip score is shown, in the viewer, the CSVs and the CLI.

    * ``withheld``: the clip is unlike the model's training clips (``unfamiliar``): its
      score is no finding and is left out of an exam's total ("No reliable score").
    * ``uncertain``: the model is unsure of it: more than half of the scored frames are
      low-confidence (their most probable score has a probability below
      :data:`LOW_CONFIDENCE`, 0.5), or, on the frames scored as the clip score, the
      model's mean probability of that score is below :data:`LOW_CONFIDENCE` (a clip
      score made by weak calls, however few). Shown as "Score N, uncertain", counted.
    * ``confident`` otherwise.

    The rule takes the probabilities it is given (the model's softmax today)."""
    if result.unfamiliar:
        return "withheld"
    p = np.asarray(result.probs, dtype=np.float64)
    s = np.asarray(result.scores, dtype=np.int64)
    weak = low_confidence(p)
    if len(weak) and int(np.count_nonzero(weak)) * 2 > len(weak):
        return "uncertain"
    clip = int(result.summary.clip_score)
    made = s == clip
    if p.ndim == 2 and clip < p.shape[1] and made.any():
        support = p[made, clip]
        support = support[np.isfinite(support)]
        if support.size and float(support.mean()) < LOW_CONFIDENCE:
            return "uncertain"
    return "confident"


def clip_score_text(clip_score: int, confidence: str) -> str:
    """The clip score in words, the same in the viewer's tabs and the CLI's lines:
    "Score 2", "Score 2, uncertain", or "No reliable score" (withheld)."""
    if confidence == "withheld":
        return "No reliable score"
    if confidence == "uncertain":
        return f"Score {clip_score}, uncertain"
    return f"Score {clip_score}"


@dataclass(frozen=True)
class ClipSummary:
    clip_score: int
    rule: str
    counts: tuple[int, ...]  # frames per score
    worst_frame: int  # of the frames that made the clip score, the one of highest expected severity


def persistence_frames(n_frames: int, fps: float, *, min_duration_s: float = 0.2, min_frames: int = 3) -> int:
    k = max(min_frames, round(min_duration_s * fps))
    return max(1, min(k, n_frames))


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def _run_mask(mask: np.ndarray, k: int) -> np.ndarray:
    """Frames that belong to runs of at least ``k`` consecutive True values."""
    out = np.zeros_like(mask, dtype=bool)
    start = None
    for i, m in enumerate([*mask.tolist(), False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start >= k:
                out[start:i] = True
            start = None
    return out


def persistent_risk(
    probs: np.ndarray, fps: float = 25.0, *, min_duration_s: float = 0.2, min_frames: int = 3
) -> np.ndarray:
    """A clip's risk of each score ``>= k`` (k = 1..C-1), in the spirit of the persistent
    rule: the frames' ``P(score >= k)`` averaged over runs of the persistence length
    (0.2 s), and the largest of those averages. A threshold-free companion of the clip
    score, for ROC analysis: (C-1,) values in [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    at_least = np.flip(np.cumsum(np.flip(p, 1), 1), 1)[:, 1:]  # (T, C-1)
    k = persistence_frames(len(p), fps, min_duration_s=min_duration_s, min_frames=min_frames)
    c = np.cumsum(np.vstack([np.zeros((1, at_least.shape[1])), at_least]), 0)
    return np.asarray(((c[k:] - c[:-k]) / k).max(0))


def summarize_clip(
    scores: Sequence[int] | np.ndarray,
    probs: np.ndarray | None = None,
    *,
    fps: float = 25.0,
    rule: str = "persistent",
    num_classes: int = 4,
    min_duration_s: float = 0.2,
    min_frames: int = 3,
    thresholds: Sequence[float] | None = None,
) -> ClipSummary:
    """Score a clip from its frame scores (``probs`` (T, C) picks the worst frame; the
    ``expected`` rule needs them, and cuts at ``thresholds``, default :data:`ROUNDING`)."""
    s = np.asarray(scores, dtype=np.int64)
    if s.size == 0:
        raise ValueError("a clip needs at least one scored frame")
    counts = tuple(int(c) for c in np.bincount(s, minlength=num_classes)[:num_classes])
    if rule == "persistent":
        k = persistence_frames(s.size, fps, min_duration_s=min_duration_s, min_frames=min_frames)
        clip = 0
        for level in range(num_classes - 1, -1, -1):
            if _longest_run(s >= level) >= k:
                clip = level
                break
        label = f"persistent: highest score held >= {k} consecutive frames"
    elif rule == "majority":
        c = np.asarray(counts)
        clip = int(np.flatnonzero(c == c.max()).max())
        label = "majority: most frequent frame score"
    elif rule == "max":
        clip = int(s.max())
        label = "max: highest frame score"
    elif rule == "expected":
        if probs is None:
            raise ValueError("the expected rule needs the frames' probabilities")
        t = check_thresholds(ROUNDING if thresholds is None else thresholds, num_classes)
        severity = expected_severity(probs)
        clip = cut_severity(severity, t)
        cuts = "/".join(f"{x:.2f}" for x in t)
        how = "rounded" if t == ROUNDING else f"cut at {cuts} (fitted in cross-validation)"
        label = f"expected: the frames' mean severity {severity:.2f}, {how}"
    else:
        raise ValueError(f"unknown clip rule {rule!r}; expected one of {RULES}")
    if rule == "persistent":
        candidates = np.flatnonzero(_run_mask(s >= clip, k))
    elif rule in ("majority", "expected"):
        candidates = np.flatnonzero(s == clip)
    else:
        candidates = np.flatnonzero(s >= clip)
    if candidates.size == 0:
        candidates = np.arange(s.size)
    if probs is not None:
        # Of the frames that made the clip score, the one with the highest expected
        # severity (sum of k * p_k): the frame that shows the worst of the clip best.
        p = np.asarray(probs, dtype=np.float64)
        expected = p[candidates] @ np.arange(p.shape[1], dtype=np.float64)
        worst = int(candidates[int(np.argmax(expected))])
    else:
        worst = int(candidates[candidates.size // 2])
    return ClipSummary(clip, label, counts, worst)
