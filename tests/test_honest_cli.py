"""Issue 17 items 1, 3 and 4 in ``lusviewer score``: the per-clip line words the clip score
as the viewer does, a withheld clip stays out of the exam's total, and an exam of clips of
two patients gets one warning line."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, make_tiny_model

from lusviewer.report.aggregate import clip_score_text


def _score(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lusviewer", "score", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_score_words_the_clip_score_and_warns_of_two_patients(
    tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    a, b = tmp_path / "patient_17_L3.mp4", tmp_path / "patient_20_R1.mp4"
    for p in (a, b):
        p.write_bytes(synthetic_clip.read_bytes())
    out = _score(
        str(a), str(b), "--model", str(tiny_model), "-o", str(tmp_path / "r.csv"), "--exam", str(tmp_path / "e.csv")
    )
    assert out.returncode == 0, out.stderr
    clips = _rows(tmp_path / "r_clips.csv")
    for row in clips:  # the line's words are the CSV's confidence, worded as in the viewer
        assert clip_score_text(int(row["clip_score"]), row["confidence"]) in out.stderr
    assert "uncertain" in {r["confidence"] for r in clips}  # a random-init model is unsure of everything
    warnings = [line for line in out.stderr.splitlines() if line.startswith("lusviewer: warning:")]
    assert warnings == [
        "lusviewer: warning: patient_20_R1.mp4 is of patient 20; the exam holds patient 17: "
        "the exam's LUS score sums clips of more than one patient"
    ]
    assert "clips of 2 patients (17, 20)" in out.stderr  # and the exam's summary line names them


def test_withheld_clip_is_left_out_of_the_exam_total(tmp_path: Path, synthetic_clip: Path) -> None:
    strict = make_tiny_model(tmp_path / "strict", recon_error_limit=0.0)  # every clip is unlike the training clips
    exam = tmp_path / "e.csv"
    out = _score(str(synthetic_clip), "--model", str(strict), "-o", str(tmp_path / "r.csv"), "--exam", str(exam))
    assert out.returncode == 0, out.stderr
    assert "No reliable score" in out.stderr
    rows = _rows(exam)
    assert rows[0]["confidence"] == "withheld" and rows[0]["unfamiliar"] == "yes"
    assert rows[-1]["clip_score"] == "0" and "INCOMPLETE, 1 zone with no reliable score" in rows[-1]["zone"]
    assert "INCOMPLETE: 1 zone with no reliable score" in out.stderr
