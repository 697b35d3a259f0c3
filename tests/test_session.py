"""The exam session: the exam bookkeeping that ``lusviewer score --exam`` and the viewer's
controller share (scored, failed, removed, clinician's scores, protocol, exported)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lusviewer.report import ExamSession
from lusviewer.report.aggregate import summarize_clip


def _result(clip: str, scores: list[int], unfamiliar: bool | None = False, sha: str = "a" * 64) -> Any:
    """What the session reads of a scored clip (``inference.ClipResult`` has it)."""
    return SimpleNamespace(
        clip=clip,
        probs=np.eye(4, dtype=np.float32)[scores],  # sure of every frame: confident
        scores=np.array(scores),
        summary=summarize_clip(scores, fps=25.0),
        unfamiliar=unfamiliar,
        model_name="m 1",
        weights_sha256=sha,
    )


def test_scored_clips_join_and_replace_their_entry() -> None:
    session = ExamSession()
    assert session.exported and not session.unsaved and len(session.exam) == 0
    entry = session.scored(_result("x/L1.mp4", [1] * 10))
    assert (entry.clip, entry.zone, entry.clip_score, entry.frames) == ("x/L1.mp4", "L1", 1, 10)
    assert not session.exported and not session.unsaved  # one clip alone is no exam worth a question
    session.scored(_result("x/L2.mp4", [3] * 10))
    assert session.unsaved
    session.scored(_result("x/L1.mp4", [2] * 8), zone="left 1")  # scored again: replaced in place
    assert [(e.zone, e.clip_score, e.frames) for e in session.exam.entries] == [("left 1", 2, 8), ("L2", 3, 10)]
    assert session.exam.total == 5


def test_failed_clips_counted_once_and_forgotten_when_scored() -> None:
    session = ExamSession()
    assert session.failed("x/L1.mp4") and not session.exported
    assert not session.failed("x/L1.mp4")  # recorded once, however often it fails
    assert session.exam.not_scored == ["x/L1.mp4"]
    session.scored(_result("x/L1.mp4", [1] * 10))  # scored after all
    assert session.exam.not_scored == []
    assert not session.failed("x/L1.mp4")  # in the exam already: it keeps its earlier score
    assert session.exam.not_scored == [] and len(session.exam) == 1
    session.failed("x/L2.mp4")
    assert session.exam.summary() == "LUS score 1 of 3 (1 zone); 1 clip could not be scored (not in the total)"


def test_remove_clear_and_what_counts_as_exported(tmp_path: Path) -> None:
    session = ExamSession()
    for clip, score in (("x/L1.mp4", 1), ("x/L2.mp4", 3)):
        session.scored(_result(clip, [score] * 10))
    session.failed("x/R1.mp4")
    out = session.export(tmp_path / "exam.csv")
    assert session.exported and not session.unsaved
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip_score"] for r in rows] == ["1", "3", "4"] and "1 more could not be scored" in rows[-1]["zone"]
    assert not session.remove("x/R9.mp4") and session.exported  # not in the exam: nothing changes
    assert session.remove("x/L2.mp4") and not session.exported and len(session.exam) == 1
    assert session.remove("x/L1.mp4") and session.exported  # an empty exam has nothing left to lose
    session.scored(_result("x/L1.mp4", [1] * 10))
    exam = session.exam
    session.clear()
    assert session.exported and session.exam is exam and len(exam) == 0 and exam.not_scored == []
    with pytest.raises(ValueError, match="no scored clip"):
        session.export(tmp_path / "empty.csv")


def test_clinician_scores_and_protocol() -> None:
    session = ExamSession(zones=6)
    assert session.exam.zones == 6
    assert not session.set_zones(6)  # the same protocol: no change
    assert session.set_zones(14) and session.exported  # nothing scored yet: nothing to export
    assert not session.set_clinician_score("x/L1.mp4", 2)  # not in the exam
    session.scored(_result("x/L1.mp4", [1] * 10))
    session.exported = True
    assert session.set_clinician_score("x/L1.mp4", 2) and not session.exported
    assert session.unsaved  # one clip with the clinician's own score is worth a question
    session.exported = True
    assert not session.set_clinician_score("x/L1.mp4", 2) and session.exported  # the same score again
    assert session.clinician_scores == {"x/L1.mp4": 2}
    assert session.set_clinician_score("x/L1.mp4", None) and session.clinician_scores == {}
    with pytest.raises(ValueError):
        session.set_clinician_score("x/L1.mp4", 4)
    session.exported = True
    assert session.set_zones(None) and not session.exported and session.exam.maximum == 3
    with pytest.raises(ValueError, match="protocol"):
        session.set_zones(7)
    assert session.exam.zones is None
