"""Clip metrics in training score each clip at its own frame rate, as `lusviewer
evaluate` (the scoring engine) does (issue 14: they used 25 fps for every clip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lusviewer.io import open_clip
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.report.aggregate import summarize_clip
from lusviewer.training.data import LabelledClip, clip_fps
from lusviewer.training.validation import clip_metrics


def _probs(scores: list[int], confidence: float = 0.97) -> np.ndarray:
    p = np.full((len(scores), 4), (1 - confidence) / 3)
    p[np.arange(len(scores)), scores] = confidence
    return p


def test_clip_metrics_use_the_clips_own_frame_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "patient_1_L1.mp4", synthetic_frames(10, size=32, seed=3), fps=10.0)
    with open_clip(path) as reader:
        engine_fps = reader.info.fps
    assert engine_fps == clip_fps(str(path)) == 10.0
    # Score 3 held for 3 frames: 0.3 s at 10 fps (persistent: it counts), 0.12 s at 25 fps (it does not).
    frame_scores = [3, 3, 3, 0, 0, 0, 0, 0, 0, 0]
    probs = _probs(frame_scores)
    at_own_fps = summarize_clip(np.array(frame_scores), probs, fps=engine_fps).clip_score
    assert at_own_fps == 3 != summarize_clip(np.array(frame_scores), probs, fps=25.0).clip_score
    clip = LabelledClip(str(path), score=3, group="1")
    res = clip_metrics([clip], lambda c: probs, per_clip=True)
    assert res["clips"][0]["pred"] == at_own_fps
    assert res["clip"]["accuracy"] == 1.0
    # The clip's risk of a score >= 3 averages over its own 0.2 s (3 frames here, not 5).
    assert res["clips"][0]["risk"][2] > 0.9
