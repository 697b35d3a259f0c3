"""What a clinician's review of the viewer with the shipped model found misleading, each
checked here through the real window (tiny models, offscreen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings

from lusviewer.ui.main_window import MainWindow

TIMEOUT = 60_000

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def test_findings_of_an_unfamiliar_clip_are_not_drawn(qtbot: Any, tmp_path: Path, synthetic_clip: Path) -> None:
    """A clip unlike the training clips has its findings withheld: the summary said "A-lines
    withheld" while the timeline still drew p(A-lines) (seen in viewer-unfamiliar.png, a POCUS clip)."""
    from test_findings import BOTH, findings_model

    from lusviewer.model.weights import record_in_card

    card = findings_model(tmp_path / "m", shown=BOTH)
    record_in_card(card, "inference", {"recon_error_limit": 0.0})  # every clip is unlike its training clips
    w = MainWindow(str(card), QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), quiet=True)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.controller.model_status is not None, timeout=TIMEOUT)
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=TIMEOUT)
    qtbot.wait(50)
    r = w.controller.result
    assert r is not None and r.unfamiliar and r.findings is not None  # the result (and the CSV) keep them
    assert "withheld" in w.summary.findings.text()
    assert w.timeline.findings_toggle.isHidden()
    assert all(not c.isVisible() or len(c.getData()[0] or []) == 0 for c in w.timeline.finding_curves.values())
    # and the exam of that one clip counts nothing: no "LUS 0", which reads as normal lungs
    assert w.side_tabs.tabText(w.side_tabs.indexOf(w.exam_panel)) == "Exam · ⚠ no reliable score"
    w.close()
    assert not w.controller.thread_running


def test_cursor_label_sits_on_no_scores_line(qtbot: Any) -> None:
    """The cursor's frame/time label lay on the score-3 line (y 3.13 of -0.4..3.4), the shipped
    model's most common score: now between two levels, away from every line."""
    from lusviewer.ui.timeline import ScoreTimeline

    t = ScoreTimeline()
    qtbot.addWidget(t)
    lo, hi = -0.4, 3.4
    y = lo + t.cursor_label.orthoPos * (hi - lo)
    assert min(abs(y - k) for k in range(4)) >= 0.4, y


def test_exam_tab_marks_a_total_of_guesses(qtbot: Any, tiny_model: Path, tmp_path: Path) -> None:
    """The tab read "Exam · LUS 3 of 3" for one uncertain clip: a guess titled as a finding,
    beside the Clip tab's grey "Score 3, uncertain". Now "LUS 3? of 3", as the diagram's "3?"."""
    from lusviewer.report.exam import ExamEntry

    w = MainWindow(str(tiny_model), QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), quiet=True)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.controller.model_status is not None, timeout=TIMEOUT)
    exam = w.controller.exam
    for conf, clip in (("uncertain", "a/patient_1_R1.mp4"), ("confident", "a/patient_1_R2.mp4")):
        exam.add(ExamEntry(clip, clip[-6:-4], 3 if conf == "uncertain" else 1, 10, 0, False, "m", "ab" * 32, conf))
    w.controller.exam_changed.emit()
    tab = w.side_tabs.tabText(w.side_tabs.indexOf(w.exam_panel))
    assert tab.endswith(f"LUS {exam.total}? of {exam.maximum}"), tab
    w.close()
    assert not w.controller.thread_running


def test_pdf_headline_of_guesses_says_so(qapp: Any, tmp_path: Path) -> None:
    """The report's headline ("LUS score 4 / 18, 6 of 6 zones", large and bold) read as a
    finding when every zone was uncertain; the note saying so was small, further down.
    Now the headline itself says it, in the neutral grey."""
    import shutil
    import subprocess

    from test_exam_report import _result

    from lusviewer.report import ExamSession
    from lusviewer.report.exam_report import ExamFields, build_exam_report
    from lusviewer.report.zones import BLUE_ZONES
    from lusviewer.ui.exam_report import write_exam_pdf

    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")

    def headline_of(weak: list[bool]) -> str:
        session = ExamSession(6)
        for k, zone in enumerate(BLUE_ZONES):
            session.scored(_result(f"e/patient_7_{zone.code}.mp4", [k % 4] * 20, weak=weak[k]))
        pdf = write_exam_pdf(tmp_path / f"r{sum(weak)}.pdf", build_exam_report(session, ExamFields("p", "", "")))
        text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
        return next(line for line in text.stdout.splitlines() if "LUS score" in line)

    assert "every zone uncertain (6 of 6): a guess" in headline_of([True] * 6)
    assert "2 of 6 counted zones uncertain" in headline_of([True, True, False, False, False, False])
    assert "uncertain" not in headline_of([False] * 6)
