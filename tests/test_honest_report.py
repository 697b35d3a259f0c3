"""Issue 17 items 1, 3 and 4 without Qt: one confidence rule and one wording for every
place a clip score is shown; withheld zones out of the exam total; clips of several
patients in one exam are named."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lusviewer.report import CLIP_COLUMNS, EXAM_COLUMNS, ExamSession, write_report
from lusviewer.report.aggregate import LOW_CONFIDENCE, clip_confidence, clip_score_text, summarize_clip
from lusviewer.report.exam import Exam, ExamEntry, patient_of

SURE = [[0.9, 0.04, 0.03, 0.03], [0.03, 0.9, 0.04, 0.03], [0.03, 0.04, 0.9, 0.03], [0.03, 0.03, 0.04, 0.9]]


def _clip(clip: str, probs: list[list[float]], unfamiliar: bool | None = False) -> Any:
    """A scored clip as the reports read it (``inference.ClipResult`` has these members)."""
    p = np.asarray(probs, dtype=np.float32)
    scores = p.argmax(1)
    return SimpleNamespace(
        clip=clip,
        probs=p,
        scores=scores,
        recon_error=np.full(len(p), 0.01, np.float32),
        summary=summarize_clip(scores, p, fps=25.0),
        info=SimpleNamespace(fps=25.0, complete=True),
        recon_error_mean=0.01,
        unfamiliar=unfamiliar,
        model_name="m 1",
        weights_sha256="a" * 64,
        device="cpu",
        precision="fp32",
    )


def test_a_guess_is_not_a_finding() -> None:
    # The clip: 67 % of frames unsure (a weak 3), the rest a sure 3: shown "Score 3" in red.
    most_weak = _clip("a.mp4", [[0.2, 0.2, 0.15, 0.45]] * 20 + [SURE[3]] * 10)
    assert most_weak.summary.clip_score == 3 and clip_confidence(most_weak) == "uncertain"
    # Every probability between 0.25 and 0.33: shown as a plain "Score 1".
    flat = _clip("b.mp4", [[0.25, 0.33, 0.22, 0.20]] * 30)
    assert flat.summary.clip_score == 1 and clip_confidence(flat) == "uncertain"
    # Most frames a sure 0, but the clip score 2 rests on weak calls: its own probability is low.
    weak_score = _clip("c.mp4", [SURE[0]] * 95 + [[0.2, 0.1, 0.45, 0.25]] * 10)
    assert weak_score.summary.clip_score == 2 and clip_confidence(weak_score) == "uncertain"
    sure = _clip("d.mp4", [SURE[0]] * 20 + [SURE[2]] * 10)
    assert sure.summary.clip_score == 2 and clip_confidence(sure) == "confident"
    # Half the frames weak is not "most"; the clip score's frames sure: confident.
    half = _clip("e.mp4", [[0.4, 0.3, 0.2, 0.1]] * 10 + [SURE[1]] * 10)
    assert half.summary.clip_score == 1 and clip_confidence(half) == "confident"
    assert clip_confidence(_clip("f.mp4", [SURE[0]] * 10, unfamiliar=True)) == "withheld"
    assert LOW_CONFIDENCE == 0.5
    assert [clip_score_text(1, c) for c in ("confident", "uncertain", "withheld")] == [
        "Score 1",
        "Score 1, uncertain",
        "No reliable score",
    ]


def test_clip_report_appends_the_confidence(tmp_path: Path) -> None:
    assert CLIP_COLUMNS[15:19] == ("complete", "device", "precision", "confidence")
    clips = [
        _clip("a.mp4", [[0.25, 0.33, 0.22, 0.20]] * 30),
        _clip("b.mp4", [SURE[0]] * 30),
        _clip("c.mp4", [SURE[3]] * 30, unfamiliar=True),
    ]
    _, clips_csv = write_report(tmp_path / "r.csv", clips)
    rows = list(csv.DictReader(clips_csv.open(newline="")))
    assert [r["confidence"] for r in rows] == ["uncertain", "confident", "withheld"]
    assert [r["clip_score"] for r in rows] == ["1", "0", "3"]  # the model's output stays, marked


def test_withheld_zone_leaves_the_total_and_uncertain_zones_are_marked(tmp_path: Path) -> None:
    """The issue's exam: five real zones (1+0+1+1+0) and a clip of noise, unfamiliar and scored 3:
    the total was 6; now 3, INCOMPLETE, the withheld zone named."""
    session = ExamSession()
    for zone, k in (("L1", 1), ("L2", 0), ("L3", 1), ("R1", 1), ("R2", 0)):
        session.scored(_clip(f"p/{zone}.mp4", [SURE[k]] * 20))
    noise = session.scored(_clip("p/R3.mp4", [SURE[3]] * 20, unfamiliar=True))
    assert noise.confidence == "withheld" and noise.clip_score == 3
    exam = session.exam
    assert exam.total == 3 and exam.n_withheld == 1 and exam.incomplete and exam.maximum == 18
    assert exam.summary() == (
        "LUS score 3 of 18, INCOMPLETE: 1 zone with no reliable score (unlike the training clips; not in total)"
    )
    guess = session.scored(_clip("p/R2.mp4", [[0.25, 0.33, 0.22, 0.20]] * 20))  # R2 again, now a guess
    assert guess.confidence == "uncertain" and exam.total == 4 and exam.n_uncertain == 1
    assert exam.summary().endswith("; 1 uncertain (counted)")
    rows = list(csv.DictReader(session.export(tmp_path / "exam.csv").open(newline="")))
    assert EXAM_COLUMNS[8:10] == ("clinician_score", "confidence")  # appended in this order (body_zone after)
    assert [r["confidence"] for r in rows[:-1]] == ["confident"] * 4 + ["uncertain", "withheld"]
    total = rows[-1]
    assert total["clip_score"] == "4" and total["confidence"] == "1 uncertain, 1 withheld"
    assert "INCOMPLETE, 1 zone with no reliable score" in total["zone"]
    # With a protocol: a zone not scored and a withheld zone both make it incomplete.
    session.set_zones(14)
    assert exam.summary().startswith("LUS score 4 of 42, INCOMPLETE: 6 of 14 zones scored, 1 zone with no reliable")
    with pytest.raises(ValueError, match="confidence"):
        ExamEntry("x.mp4", "x", 1, 10, 0, False, "m", "a" * 64, confidence="sure")


def test_clips_of_several_patients_are_named() -> None:
    assert patient_of("/data/patient_17_L3.mp4") == "17" and patient_of("/data/patient_17/L3.mp4") == "17"
    assert patient_of("/data/L3.mp4") is None
    exam = Exam()
    assert exam.other_patient("/d/patient_17_L3.mp4") is None  # an empty exam holds no patient
    exam.add(ExamEntry.from_result(_clip("/d/patient_17_L3.mp4", [SURE[1]] * 10)))
    assert exam.other_patient("/d/patient_17_L3.mp4") is None  # the same clip scored again
    assert exam.other_patient("/e/patient_17_R1.mp4") is None  # the same patient, another folder
    assert exam.other_patient("/d/patient_20_R1.mp4") == "patient_20_R1.mp4 is of patient 20; the exam holds patient 17"
    assert exam.other_patient("/e/R1.mp4") == "R1.mp4 is in /e; the exam's clips are in /d"
    assert exam.other_patient("/d/R1.mp4") is None
    exam.add(ExamEntry.from_result(_clip("/d/patient_20_R1.mp4", [SURE[1]] * 10)))
    assert exam.summary().endswith("; clips of 2 patients (17, 20)")
    plain = Exam()
    for clip in ("/a/L1.mp4", "/b/L2.mp4"):
        plain.add(ExamEntry.from_result(_clip(clip, [SURE[0]] * 10)))
    assert plain.summary().endswith("; clips from 2 folders: one patient?")
