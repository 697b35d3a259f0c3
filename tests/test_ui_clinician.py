"""What an ICU clinician's walk through the viewer with the shipped model and real clips
(COVID-BLUeS, POCUS) found wrong or unclear, checked here (offscreen, tiny models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")


def test_one_frame_is_counted_in_the_singular() -> None:
    """The Clip tab read "1 frames (1 %), all weak" (patient_19_L3, a POCUS .mov)."""
    from lusviewer.ui.summary_panel import count_text

    assert count_text(1, 101, 1) == "1 frame (1 %), all weak"
    assert count_text(0, 101, 0) == "0 frames (0 %)"
    assert count_text(2, 101, 1) == "2 frames (2 %), 1 weak"


def test_worst_frame_skips_frames_with_no_picture() -> None:
    """patient_6_R1 (clip score 0, every frame scored 0) opens with two black frames: its worst
    frame was frame 0, black, and so was the exam report's picture (12 of the 287 COVID-BLUeS
    clips). Only the frames chosen are read."""
    import numpy as np

    from lusviewer.report.exam_report import blank_frame, most_severe_frame, pictured_frame

    black, grey = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 128, np.uint8)
    picture = np.arange(192, dtype=np.uint8).reshape(8, 8, 3)
    assert blank_frame(black) and blank_frame(grey) and not blank_frame(picture)
    frames = [black, black] + [picture] * 8
    reads: list[int] = []

    def read(i: int) -> np.ndarray:
        reads.append(i)
        return frames[i]

    scores = np.zeros(10, np.int64)
    assert most_severe_frame(scores, None, 0) == 0  # the frame behind the clip score: black
    assert pictured_frame(scores, None, 0, read) == 5  # the middle of the frames left
    assert reads == [0, 5]
    # a more severe frame that is blank gives way to the most severe frame with a picture
    scores = np.array([3, 3, 1, 1, 2, 2, 2, 0, 0, 0])
    assert pictured_frame(scores, None, 0, lambda i: frames[i]) == 5
    # a clip with no picture at all: its worst frame as scored
    assert pictured_frame(scores, None, 0, lambda i: black) == most_severe_frame(scores, None, 0, range(16))


pytest.importorskip("pytestqt")


def test_viewer_and_pdf_picture_a_frame_with_a_picture(qtbot: Any, tiny_model: Path, tmp_path: Path) -> None:
    """The Clip tab's worst frame, its button, and the exam report's picture and caption all
    skip the clip's blank opening frames."""
    from dataclasses import replace

    import numpy as np
    from conftest import shown_window
    from PySide6.QtCore import QSettings

    from lusviewer.io.synthetic import synthetic_frames, write_video
    from lusviewer.report.aggregate import summarize_clip
    from lusviewer.report.exam_report import blank_frame, build_exam_report

    frames = [np.zeros((96, 96, 3), np.uint8)] * 2 + list(synthetic_frames(18, size=96, seed=3))
    clip = write_video(tmp_path / "patient_6_R1.mp4", frames, fps=20.0)
    w = shown_window(qtbot, tiny_model, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert w.open_clip(str(clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=60_000)
    assert blank_frame(w.controller.frame(0)) and not blank_frame(w.controller.frame(2))
    # as the shipped model scores patient_6_R1: every frame 0, the frame behind the clip score 0
    r = w.controller.result
    zeros = np.zeros(len(r.scores), np.int64)
    probs = np.tile(np.array([[0.9, 0.05, 0.03, 0.02]], np.float32), (len(zeros), 1))
    s = summarize_clip(zeros, probs, fps=20.0, rule="expected")
    r0 = replace(r, scores=zeros, probs=probs, summary=s)
    assert s.worst_frame == 0  # the frame behind the clip score: black (the CSV's worst_frame)
    w.scoring.finished(r0)
    assert w.summary.worst_frame >= 2, w.summary.rule.text()
    assert f"Worst frame: {w.summary.worst_frame} (score 0)" in w.summary.rule.text()
    # the frame behind the clip score (the CSV's worst_frame) is frame 0 still: said to be blank
    assert "the clip score's frame: 0 (a blank frame)." in w.summary.rule.text()
    w.summary.worst.click()
    assert w.controller.index == w.summary.worst_frame
    session = w.controller.exam_session
    session.clear()
    session.scored(r0)
    assert w.exporter.export_report_to(str(tmp_path / "exam.pdf"), overwrite=True)
    detail = session.details[str(clip)]
    assert detail.thumbnail is not None and not blank_frame(detail.thumbnail)
    assert detail.thumbnail_frame == w.summary.worst_frame  # the Clip tab's worst frame
    (row,) = build_exam_report(session).rows
    assert row.severe_frame == detail.thumbnail_frame  # the caption names the frame pictured
    w.close()


def test_report_note_ends_in_one_mark() -> None:
    """The exam report's note ended "clips from 2 folders: one patient?." (an exam with a POCUS
    clip beside COVID-BLUeS clips)."""
    from lusviewer.ui.exam_report import note_line

    assert note_line(["2 uncertain scores (weak calls): counted", "clips from 2 folders: one patient?"]) == (
        "Note: 2 uncertain scores (weak calls): counted; clips from 2 folders: one patient?"
    )
    assert note_line(["1 clip not placed on the chest"]) == "Note: 1 clip not placed on the chest."


def test_timeline_title_of_a_clip_unlike_the_training_clips(qtbot: Any, tmp_path: Path, synthetic_clip: Path) -> None:
    """A POCUS clip (no reliable score: "do not read it as a finding") kept the timeline's
    usual title above its grey step line; the title now says its frame scores are no finding,
    and the next clip's timeline has its usual title again."""
    from conftest import shown_window
    from PySide6.QtCore import QSettings
    from test_findings import BOTH, findings_model

    from lusviewer.model.weights import record_in_card
    from lusviewer.ui.timeline import UNFAMILIAR_TITLE

    card = findings_model(tmp_path / "m", shown=BOTH)
    record_in_card(card, "inference", {"recon_error_limit": 0.0})  # every clip is unlike its training clips
    w = shown_window(qtbot, card, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=60_000)
    assert w.controller.result.unfamiliar
    assert w.timeline.score_plot.titleLabel.text == UNFAMILIAR_TITLE
    w.timeline.reset(10)  # another clip opened
    assert w.timeline.score_plot.titleLabel.text.startswith("Score per frame")
    w.close()


def test_clip_tab_lines_are_never_squeezed_at_1024x600(qtbot: Any, tiny_model: Path, tmp_path: Path) -> None:
    """At 1024x600 the Clip tab of a POCUS clip unlike the training clips (warning, model
    output, rule, four rows, findings) was squeezed: each row cut through its letters. Its
    lines now keep their height and the tab scrolls."""
    import numpy as np
    from conftest import shown_window
    from PySide6.QtCore import QSettings

    w = shown_window(qtbot, tiny_model, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    w.resize(1024, 600)
    s = w.summary
    s.set_summary(
        1,
        "expected: the frames' mean severity 1.52, cut at 1.46/1.63/1.72 (fitted in cross-validation)",
        (0, 96, 41, 1),
        31,
        138,
        22.7,
        "withheld",
        (0, 96, 41, 1),
        (64, 3, True),
    )
    s.set_confidence(np.ones(138, bool))
    s.set_familiarity(
        "This clip looks unlike the model's training clips (another device, preset or organ?): mean "
        "reconstruction error 0.354 > 0.115; its scores are unreliable."
    )
    s.set_findings({"a_lines": 0.4}, {"a_lines": 0.67})
    w.side_tabs.setCurrentWidget(s)
    qtbot.wait(100)
    assert (w.width(), w.height()) == (1024, 600)
    for label in [*s.count_names, *s.count_labels, s.rule, s.familiarity]:
        want = label.heightForWidth(label.width()) if label.wordWrap() else label.sizeHint().height()
        assert label.height() >= want, (label.text()[:40], label.height(), want)
    w.close()


def test_frame_line_never_prints_the_same_p_for_two_scores() -> None:
    """patient_19_R1 frame 88 read "score 3 (p = 0.30; most probable 2, p = 0.30)"."""
    import numpy as np

    from lusviewer.ui.summary_panel import frame_score_text

    tie = np.array([0.18, 0.22, 0.3012, 0.2988])
    assert frame_score_text(3, tie) == "score 3 (p = 0.299; most probable 2, p = 0.301), low confidence"
    apart = np.array([0.1, 0.2, 0.38, 0.32])
    assert frame_score_text(3, apart) == "score 3 (p = 0.32; most probable 2, p = 0.38), low confidence"
    assert frame_score_text(2, apart) == "score 2 (p = 0.38), low confidence"


def test_export_failures_are_one_line_naming_the_file_once(
    qtbot: Any, tiny_model: Path, tmp_path: Path, synthetic_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON export that could not be written said "/proc/x.json: /proc/x.json: the report cannot
    be written ..."; a PDF report given a folder said "[Errno 21] Is a directory:
    '/.tmp.12087.tmp' -> '/tmp'" (a temporary file's name, not the user's)."""
    import logging

    from conftest import shown_window
    from PySide6.QtCore import QSettings

    w = shown_window(qtbot, tiny_model, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=60_000)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, logger="lusviewer.ui.main_window")
    for path in (blocker / "x.json", blocker / "x.csv"):
        caplog.clear()
        assert not w.export_to(str(path), overwrite=True)
        (line,) = [r.getMessage() for r in caplog.records if "Export failed" in r.getMessage()]
        assert line.count(str(path)) == 1 and "\n" not in line, line
    w.controller.exam_session.scored(w.controller.result)
    caplog.clear()
    folder = tmp_path / "reports"
    folder.mkdir()
    assert not w.exporter.export_report_to(str(folder), overwrite=True)
    (line,) = [r.getMessage() for r in caplog.records if "Export failed" in r.getMessage()]
    assert line == f"Export failed: {folder}: is a folder; give the report a file name (exam.pdf)", line
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))
    w.close()


def test_exam_note_reads_whole_in_its_tooltip(qtbot: Any) -> None:
    """At 1280x800 the Exam table's notes were cut ("you 2, model 3; weak calls: ...") with no
    way to read the rest."""
    from lusviewer.report.exam import ExamEntry
    from lusviewer.ui.exam_panel import COL_NOTE, ExamPanel

    panel = ExamPanel()
    qtbot.addWidget(panel)
    entry = ExamEntry("a/patient_19_R1.mp4", "patient_19_R1", 3, 100, 96, False, "m", "ab" * 32, "uncertain")
    panel.set_exam([entry], "LUS score 3 of 3 (1 zone)", clinician={entry.clip: 2})
    item = panel.table.item(0, COL_NOTE)
    assert item.text() == "you 2, model 3; weak calls: counted in the total, a guess"
    assert item.toolTip() == item.text()


def test_pdf_export_shows_a_busy_cursor(
    qtbot: Any, tiny_model: Path, tmp_path: Path, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a 14-zone exam's PDF held the window still for 1.6 s with the arrow cursor; now
    a busy cursor meanwhile, gone before a warning and after the report is written."""
    from conftest import shown_window
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    import lusviewer.ui.exam_report as pdf

    w = shown_window(qtbot, tiny_model, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=60_000)
    w.controller.exam_session.scored(w.controller.result)
    seen: list[object] = []
    write = pdf.write_exam_pdf

    def watched(path: str, report: Any) -> Path:
        cursor = QApplication.overrideCursor()
        seen.append(None if cursor is None else cursor.shape())
        return write(path, report)

    monkeypatch.setattr(pdf, "write_exam_pdf", watched)
    assert w.exporter.export_report_to(str(tmp_path / "exam.pdf"), overwrite=True)
    assert seen == [Qt.CursorShape.WaitCursor] and QApplication.overrideCursor() is None
    warned: list[object] = []
    monkeypatch.setattr(w, "_warn", lambda _t, _x: warned.append(QApplication.overrideCursor()))
    folder = tmp_path / "reports"
    folder.mkdir()
    assert not w.exporter.export_report_to(str(folder), overwrite=True)
    assert warned == [None] and QApplication.overrideCursor() is None
    w.close()
