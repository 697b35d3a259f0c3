"""What a clinician's review of the viewer with the shipped model found misleading, each
checked here through the real window (tiny models, offscreen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import shown_window
from PySide6.QtCore import QSettings

from lusviewer.ui.main_window import MainWindow

TIMEOUT = 60_000


def _window(qtbot: Any, model: Path, tmp_path: Path) -> MainWindow:
    """The viewer, shown, with its model loaded."""
    return shown_window(qtbot, model, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))


def _scored(qtbot: Any, model: Path, tmp_path: Path, clip: Path) -> MainWindow:
    """The viewer with ``clip`` opened and scored to the end."""
    w = _window(qtbot, model, tmp_path)
    assert w.open_clip(str(clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=TIMEOUT)
    return w


pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def test_findings_of_an_unfamiliar_clip_are_not_drawn(qtbot: Any, tmp_path: Path, synthetic_clip: Path) -> None:
    """A clip unlike the training clips has its findings withheld: the summary said "A-lines
    withheld" while the timeline still drew p(A-lines) (seen in viewer-unfamiliar.png, a POCUS clip)."""
    from test_findings import BOTH, findings_model

    from lusviewer.model.weights import record_in_card

    card = findings_model(tmp_path / "m", shown=BOTH)
    record_in_card(card, "inference", {"recon_error_limit": 0.0})  # every clip is unlike its training clips
    w = _scored(qtbot, card, tmp_path, synthetic_clip)
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


@pytest.mark.parametrize("width", [640, 1000])
def test_cursor_label_stays_inside_the_plot_at_the_last_frames(qtbot: Any, width: int) -> None:
    """Stepping to the last frames of a 60-frame clip at 1280x800, the cursor's label ran past
    the plot's right edge and was cut to "frame 53": it now turns to the cursor's left there,
    and stays right of it at the start, readable whole at either end."""
    import numpy as np

    from lusviewer.ui.timeline import ScoreTimeline

    t = ScoreTimeline()
    qtbot.addWidget(t)
    t.resize(width, 400)
    t.show()
    qtbot.waitExposed(t)
    t.set_fps(25.0)
    n = 60
    probs = np.full((n, 4), 0.25, np.float32)
    t.reset(n)
    t.update_scores(np.zeros(n, np.int64), probs, np.zeros(n, np.float32), n)
    vb = t.score_plot.vb.sceneBoundingRect()
    for frame in (0, n // 2, n - 7, n - 1):
        t.set_cursor(frame)
        qtbot.wait(20)
        label = t.cursor_label.sceneBoundingRect()
        assert vb.left() <= label.left() and label.right() <= vb.right() + 1, (frame, label, vb)
        assert t.cursor_label.textItem.toPlainText().strip() == t.cursor_text(frame).strip()
    t.set_cursor(0)
    qtbot.wait(20)
    assert t.cursor_label.sceneBoundingRect().left() >= t.cursors[0].scenePos().x() - 1  # right of the line


def test_exam_tab_marks_a_total_of_guesses(qtbot: Any, tiny_model: Path, tmp_path: Path) -> None:
    """The tab read "Exam · LUS 3 of 3" for one uncertain clip: a guess titled as a finding,
    beside the Clip tab's grey "Score 3, uncertain". Now "LUS 3? of 3", as the diagram's "3?"."""
    from lusviewer.report.exam import ExamEntry

    w = _window(qtbot, tiny_model, tmp_path)
    exam = w.controller.exam
    for conf, clip in (("uncertain", "a/patient_1_R1.mp4"), ("confident", "a/patient_1_R2.mp4")):
        exam.add(ExamEntry(clip, clip[-6:-4], 3 if conf == "uncertain" else 1, 10, 0, False, "m", "ab" * 32, conf))
    w.controller.exam_changed.emit()
    tab = w.side_tabs.tabText(w.side_tabs.indexOf(w.exam_panel))
    assert tab.endswith(f"LUS {exam.total}? of {exam.maximum}"), tab
    assert "5a5a5a" not in w.exam_panel.total.styleSheet()  # one confident zone: the total is not all guesses
    exam.remove("a/patient_1_R2.mp4")
    w.controller.exam_changed.emit()
    # every counted zone uncertain: the total in the uncertain grey, as the PDF's headline (it was bold black)
    assert "5a5a5a" in w.exam_panel.total.styleSheet().lower()
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


def test_pdf_continued_headline_of_guesses_is_grey(qapp: Any) -> None:
    """Page 2's "LUS score 36 / 42, 14 of 14 zones (continued)" was bold black under page 1's grey
    headline of the same guesses (seen in exam-report-14zones-2.png)."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter
    from test_exam_report import _result

    from lusviewer.report import ExamSession
    from lusviewer.report.exam_report import ExamFields, build_exam_report
    from lusviewer.report.zones import BLUE_ZONES
    from lusviewer.ui.exam_report import MARGIN, PAGE_W, _header

    def darkest(weak: bool) -> int:
        session = ExamSession(6)
        for k, zone in enumerate(BLUE_ZONES):
            session.scored(_result(f"e/patient_7_{zone.code}.mp4", [k % 4] * 20, weak=weak))
        report = build_exam_report(session, ExamFields("p", "", ""))
        k = 4  # drawn 4x: at 1 px per point the 9 pt text is antialiased to grey
        img = QImage(int(PAGE_W) * k, 200 * k, QImage.Format.Format_RGB32)
        img.fill(QColor("#ffffff"))
        p = QPainter(img)
        p.scale(k, k)
        y = _header(p, report, first=False) - 16  # the continued headline's row
        p.end()
        row = QRectF(MARGIN * k, y * k, 200 * k, 14 * k)
        return min(
            img.pixelColor(x, yy).lightness()
            for x in range(int(row.left()), int(row.right()))
            for yy in range(int(row.top()), int(row.bottom()))
        )

    assert darkest(False) < 40  # black text: a confident total
    assert darkest(True) >= 80  # the uncertain grey, #5a5a5a (lightness 90)


# --------------------------------------------------------------- second review: guesses drawn as guesses
def _weak_and_confident(n_conf: int = 5, n_weak: int = 5) -> tuple[Any, Any]:
    """Frames scored 0 with p 0.9, then frames scored 3 with p 0.4 (a weak call: no score reaches 0.5)."""
    import numpy as np

    probs = np.array([[0.9, 0.05, 0.03, 0.02]] * n_conf + [[0.2, 0.2, 0.2, 0.4]] * n_weak, dtype=np.float32)
    return probs, probs.argmax(1).astype(np.int64)


def test_timeline_draws_weak_runs_grey_not_in_the_scores_colour(qtbot: Any) -> None:
    """The shipped (calibrated) model's weak calls were dashed but red at "3 white lung" on
    most clips: a guess painted as a finding. Now grey and dashed, as the diagram draws an
    uncertain zone; confident runs keep their score's colour; the tooltip says what grey means."""
    import numpy as np
    from PySide6.QtCore import Qt

    from lusviewer.ui.palette import SCORE_COLOURS
    from lusviewer.ui.timeline import ScoreTimeline

    t = ScoreTimeline()
    qtbot.addWidget(t)
    probs, scores = _weak_and_confident()
    t.reset(len(scores))
    t.update_scores(scores, probs, np.zeros(len(scores), np.float32), len(scores))
    weak3, strong0 = t.weak_levels[3], t.score_levels[0]
    assert np.isfinite(weak3.getData()[1]).any() and np.isfinite(strong0.getData()[1]).any()
    assert not np.isfinite(t.score_levels[3].getData()[1]).any()  # no solid run at 3
    weak_pen, strong_pen = weak3.opts["pen"], strong0.opts["pen"]
    grey = weak_pen.color()
    assert grey.name() != SCORE_COLOURS[3] and grey.red() == grey.green() == grey.blue(), grey.name()
    assert weak_pen.style() == Qt.PenStyle.DashLine
    assert strong_pen.color().name() == SCORE_COLOURS[0] and strong_pen.style() == Qt.PenStyle.SolidLine
    t.set_unreliable(False)  # the score colours back (after a partial or unfamiliar clip): weak runs stay grey
    assert all(p.opts["pen"].color().name() == grey.name() for p in t.weak_levels)
    assert "Grey dashes" in t.toolTip() and "grey dashes" in t.score_plot.titleLabel.text
    # after a partial (failed) clip, the next clip's title is no longer bold (seen in viewer-incomplete-1280.png)
    t.set_partial(3, 10)
    t.set_partial(None)
    assert not t.score_plot.titleLabel.opts.get("bold")


def _count_rows(panel: Any) -> list[Any]:
    """The Clip tab's colour swatches, top (score 0) to bottom, found as the 14x14 labels."""
    from PySide6.QtWidgets import QLabel

    swatches = [w for w in panel.findChildren(QLabel) if w.minimumSize().width() == w.maximumSize().width() == 14]
    return sorted(swatches, key=lambda w: w.y())


def test_clip_tab_counts_of_guesses_are_not_in_the_scores_colour(qtbot: Any) -> None:
    """The counts read "3 white lung 100 %" with a red swatch beside "Score 3, uncertain". Now every row of an
    uncertain (or withheld) clip is grey and dashed; in a confident clip, a score whose frames
    are all weak calls is too, and the count says how many are weak."""
    from lusviewer.ui.palette import SCORE_COLOURS
    from lusviewer.ui.summary_panel import SummaryPanel

    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_summary(3, "expected", (0, 0, 0, 64), 10, 64, 20.0, "uncertain")
    rows = _count_rows(panel)
    assert len(rows) == 4
    assert all(c.lower() not in r.styleSheet().lower() for r, c in zip(rows, SCORE_COLOURS, strict=True))
    assert "dashed" in rows[3].styleSheet()
    panel.set_summary(3, "expected", (0, 0, 0, 64), 10, 64, 20.0, "uncertain", (0, 0, 0, 64))
    assert panel.count_labels[3].text() == "64 frames (100 %), all weak"
    # confident clip: the confident score coloured, the score made of weak calls only in grey
    panel.set_summary(0, "persistent", (50, 0, 0, 14), 3, 64, 20.0, "confident", (5, 0, 0, 14))
    assert SCORE_COLOURS[0] in rows[0].styleSheet() and SCORE_COLOURS[3] not in rows[3].styleSheet()
    assert panel.count_labels[0].text() == "50 frames (78 %), 5 weak"
    assert panel.guess_rows == [False, False, False, True]
    panel.set_summary(0, "persistent", (64, 0, 0, 0), 3, 64, 20.0, "withheld", (0, 0, 0, 0))
    assert all(panel.guess_rows)


def test_frame_line_and_progress_follow_the_csv_and_the_timeline(
    qtbot: Any, tiny_model: Path, tmp_path: Path, synthetic_clip: Path
) -> None:
    """The line under the frame said "low confidence" from the shown score's probability; the
    timeline's dashes and the CSV's low_confidence_frames from the most probable score's.
    Under the expected rule the two differ: a frame shown as 1 whose most probable score, 0,
    has p 0.55 is no weak call. And the status bar's progress followed the worker's signal,
    not the frames drawn: it read 96/100 beside a timeline of 64 frames."""
    import numpy as np

    w = _scored(qtbot, tiny_model, tmp_path, synthetic_clip)
    c = w.controller
    # the worker's progress alone does not move the status bar's count away from the timeline's
    drawn = w.timeline.n_drawn if hasattr(w.timeline, "n_drawn") else c.n_scored
    assert drawn == c.n_scored
    c.scoring_progress.emit(drawn // 2, drawn, 5.0)
    assert f"{drawn // 2}/" not in w.status_bar.rate_label.text()
    c.seek(0)
    c._probs_buf[0] = np.array([0.55, 0.0, 0.0, 0.45], dtype=np.float32)
    c._scores_buf[0] = 1  # the expected rule at rounding thresholds: severity 1.35 is cut to 1
    w._update_frame_label()
    text = w.frame_label.text()
    assert "score 1 (p = 0.00; most probable 0, p = 0.55)" in text and "low confidence" not in text, text
    c._probs_buf[0] = np.array([0.3, 0.4, 0.2, 0.1], dtype=np.float32)  # most probable 1 at 0.4: weak
    w._update_frame_label()
    assert "score 1 (p = 0.40), low confidence" in w.frame_label.text()
    w.close()
    assert not w.controller.thread_running


def test_exam_report_timeline_draws_weak_calls_grey(qapp: Any) -> None:
    """The PDF's per-clip timeline drew weak calls dotted in the score's colour (red at 3 for
    the shipped model): a guess in a finding's colour. Now grey and dotted, as the viewer's."""
    import numpy as np
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter

    from lusviewer.ui.exam_report import _timeline
    from lusviewer.ui.palette import SCORE_COLOURS

    def colours(weak: bool) -> set[str]:
        img = QImage(200, 60, QImage.Format.Format_RGB32)
        img.fill(QColor("#ffffff"))
        p = QPainter(img)
        _timeline(p, QRectF(0, 0, 200, 60), np.full(20, 3, np.int64), np.full(20, weak), 20.0, 5, "confident")
        p.end()
        return {img.pixelColor(x, y).name() for x in range(img.width()) for y in range(img.height())}

    assert SCORE_COLOURS[3] in colours(False)  # a confident run: the score's colour
    assert not colours(True) & {c.lower() for c in SCORE_COLOURS}


def test_exam_report_strip_frames_all_four_levels_alike(qapp: Any) -> None:
    """The PDF's per-frame strip outlined the levels 1-3 in black (a text pen left set) and
    not level 0, whose bars then read as drawn below the chart (seen in the walk's report).
    Now no level has an edge of its own and one light frame holds all four: down the strip's
    left edge, every level's band is the same."""
    import numpy as np
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter

    from lusviewer.ui.exam_report import _timeline

    img = QImage(400, 120, QImage.Format.Format_RGB32)
    img.fill(QColor("white"))
    painter = QPainter(img)
    r = QRectF(0, 0, 400, 120)
    _timeline(painter, r, np.full(50, 3), np.zeros(50, bool), 25.0, 10, "confident")
    painter.end()
    top, height = 2.0, 120 - 13.0
    # the strip's left edge (x 8, right of the level labels), at the middle of each level's band
    edge = [img.pixelColor(8, round(top + height * (k + 0.5) / 4)).value() for k in range(4)]
    assert max(edge) - min(edge) <= 24, edge  # the old: 64 beside levels 1-2, 250 (no edge) beside 0
    assert max(edge) < 230, edge  # a frame is there


def test_cancelling_an_exam_queue_says_which_clips_went_unscored(qtbot: Any, tiny_model: Path, tmp_path: Path) -> None:
    """Esc while an exam's clips were scored one after the other dropped the clip being scored
    and those still queued without a word: the total read "INCOMPLETE: 1 of 6 zones scored" and
    the PDF called their zones "not scanned" (seen in the walk: patient 17, Esc on the 4th of 6).
    They are now recorded as not scored and the total names them."""
    from lusviewer.io.synthetic import synthetic_frames, write_video

    clips = [
        str(write_video(tmp_path / f"zone{k}.avi", synthetic_frames(40, size=64, seed=k), fps=20.0, fourcc="MJPG"))
        for k in range(3)
    ]
    w = _window(qtbot, tiny_model, tmp_path)
    c = w.controller
    cancelled: list[int] = []

    def on_scores(_start: int, _n: int) -> None:
        if len(c.exam) == 1 and c.running and not cancelled:
            cancelled.append(1)
            w.status_bar.cancel_button.click()  # the user's Cancel (as Esc)

    c.scores_updated.connect(on_scores)
    w.open_clips(clips)
    qtbot.waitUntil(lambda: bool(cancelled) and not c.running, timeout=TIMEOUT)
    qtbot.wait(50)
    assert [e.clip for e in c.exam.entries] == clips[:1]
    assert c.exam.not_scored == clips[1:]
    assert "2 clips could not be scored (not in the total)" in c.exam.summary()
    assert not c.queued
    w.close()


def test_opening_a_clip_by_hand_during_an_exam_queue_records_the_clips_left_unscored(
    qtbot: Any, tiny_model: Path, tmp_path: Path
) -> None:
    """Opening another clip by hand while an exam's clips were scored one after the other
    dropped the clip being scored and those still queued without a note (Esc records them
    since 1627b80): they are now recorded as not scored and the exam's total says so."""
    from PySide6.QtCore import QTimer

    from lusviewer.io.synthetic import synthetic_frames, write_video

    clips = [
        str(write_video(tmp_path / f"zone{k}.avi", synthetic_frames(40, size=64, seed=k), fps=20.0, fourcc="MJPG"))
        for k in range(4)
    ]
    other = clips.pop()
    w = _window(qtbot, tiny_model, tmp_path)
    c = w.controller
    opened: list[bool] = []

    def on_scores(_start: int, _n: int) -> None:
        if len(c.exam) == 1 and c.running and not opened:
            opened.append(True)
            QTimer.singleShot(0, lambda: opened.append(w.open_clip(other)))  # the user's own clip

    c.scores_updated.connect(on_scores)
    w.open_clips(clips)
    qtbot.waitUntil(lambda: len(opened) == 2 and c.result is not None, timeout=TIMEOUT)
    qtbot.wait(50)
    assert opened[1] and c.info is not None and c.info.path == other
    assert not c.queued
    assert [e.clip for e in c.exam.entries] == [clips[0], other]
    assert c.exam.not_scored == clips[1:]
    assert "2 clips could not be scored (not in the total)" in c.exam.summary()
    assert "⚠" in w.side_tabs.tabText(w.side_tabs.indexOf(w.exam_panel))
    w.close()


def test_worst_frame_is_the_most_severe_finding(
    qtbot: Any, tiny_model: Path, tmp_path: Path, synthetic_clip: Path
) -> None:
    """A clip scored 0 with many frames scored 1 (the real patient_11_R2: clip score 0, 27
    frames score 1) had "Worst frame: 47", a frame scored 0, behind "Jump to worst frame": the
    frame behind the clip score. The worst frame is now the most severe finding (a frame of the
    highest frame score); the frame behind the clip score (the CSV's worst_frame, unchanged) has
    its own button where it is another."""
    from dataclasses import replace

    import numpy as np

    from lusviewer.report.aggregate import summarize_clip

    w = _scored(qtbot, tiny_model, tmp_path, synthetic_clip)
    r = w.controller.result
    assert r is not None
    n = len(r.scores)
    scores = np.zeros(n, dtype=np.int64)
    scores[1::3] = 1  # every third frame scores 1: mean severity 0.3, clip score 0
    probs = (np.eye(4, dtype=np.float32)[scores] * 0.9 + 0.025).astype(np.float32)
    summary = summarize_clip(scores, probs, fps=r.info.fps, rule="expected")  # the shipped model's rule
    assert summary.clip_score == 0 and scores[summary.worst_frame] == 0  # the CSV's frame: behind the clip score
    w.scoring.finished(replace(r, scores=scores, probs=probs, summary=summary))
    qtbot.wait(20)
    jumped: list[int] = []
    w.summary.jump_to_worst.connect(jumped.append)
    w.summary.worst.click()
    assert jumped and scores[jumped[-1]] == 1, jumped  # the most severe finding
    qtbot.waitUntil(lambda: w.controller.index == jumped[-1], timeout=TIMEOUT)
    assert f"Worst frame: {jumped[-1]} (score 1)" in w.summary.rule.text()
    assert f"the clip score's frame: {summary.worst_frame}" in w.summary.rule.text()
    assert w.summary.clip_frame.isVisible()
    w.summary.clip_frame.click()
    assert jumped[-1] == summary.worst_frame
    w.close()


def test_most_severe_frame_prefers_confident_calls_and_the_longest_run() -> None:
    import numpy as np

    from lusviewer.report.exam_report import most_severe_frame

    s = np.array([0, 2, 0, 1, 2, 2, 2, 0, 2, 2])
    assert most_severe_frame(s) == 5  # the middle of the longest run of 2s (4..6)
    weak = np.zeros(10, dtype=bool)
    weak[4:7] = True
    assert most_severe_frame(s, weak) == 8  # confident 2s first: 1, 8..9 -> the run 8..9
    assert most_severe_frame(np.zeros(5, dtype=np.int64), np.ones(5, dtype=bool)) == 2
    # the frame behind the clip score, where it is of the highest score: one frame, not two
    assert most_severe_frame(s, None, prefer=9) == 9
    assert most_severe_frame(s, weak, prefer=4) == 8  # a weak call where confident ones are
    assert most_severe_frame(s, None, prefer=3) == 5  # a 1: not the worst


@pytest.mark.parametrize("findings", [False, True])
def test_timeline_legend_is_compact_and_evenly_spaced(qtbot: Any, findings: bool) -> None:
    """With a finding shown (two legend lines), p0 sat far left of p1-p3: one grid, stretched
    over the plot's width, whose first column "recon error (÷ clip max)" under p0 set
    (viewer-error-overlay.png: p0 at x 650, p1 955, p2 1112, p3 1190). Each line is now its
    own legend, as wide as its entries: p0-p3 evenly spaced, close together, at the plots' edge."""
    import numpy as np

    from lusviewer.ui.timeline import ScoreTimeline

    tl = ScoreTimeline()
    qtbot.addWidget(tl)
    tl.resize(1000, 440)
    tl.show()
    n = 100
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), n).astype(np.float32)
    tl.reset(n)
    tl.update_scores(probs.argmax(1), probs, rng.random(n).astype(np.float32), n)
    if findings:
        tl.set_findings(("a_lines",), rng.random((n, 1)).astype(np.float32))
    qtbot.wait(50)
    samples = {}
    for legend in (tl.legend, getattr(tl, "legend2", tl.legend)):
        for sample, label in legend.items:
            samples[label.text] = sample.sceneBoundingRect().left()
    xs = np.array([samples[f"p{k}"] for k in range(4)])
    gaps = np.diff(xs)
    assert gaps.min() > 0 and gaps.max() - gaps.min() <= 3, xs  # evenly spaced
    assert xs[-1] - xs[0] < 240, xs  # compact: not spread over the 1000 px plot
    plot_left = tl.prob_plot.vb.sceneBoundingRect().left()
    assert abs(xs[0] - plot_left) <= 12, (xs[0], plot_left)  # from the plots' left edge
    if findings:
        assert "p(A-lines)" in samples and "recon error (÷ clip max)" in samples
    # in a 1024 px window's timeline (510 px) the legend moves left rather than stretch the
    # plots past the view's right edge (indented, p0-p3 and recon error on one line did)
    tl.resize(510, 250)
    qtbot.wait(50)
    assert tl.ci.geometry().width() <= tl.width(), (tl.ci.geometry().width(), tl.width())
    box = tl.legend_box.sceneBoundingRect()
    assert box.left() >= 0 and tl.legend.sceneBoundingRect().right() <= tl.width()
