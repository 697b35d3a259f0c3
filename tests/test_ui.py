"""The viewer, driven through pytest-qt, offscreen, with a tiny random-init model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import shown_window
from PySide6.QtCore import QSettings, Qt

from lusviewer.io import open_clip
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.ui.main_window import MainWindow

TIMEOUT = 60_000  # ms: scoring under a loaded CI machine


pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.avi"
    return write_video(path, synthetic_frames(1500, size=64, seed=5), fps=25.0, fourcc="MJPG")


def wait_scored(qtbot, w: MainWindow) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=TIMEOUT)


def shown(w: MainWindow) -> np.ndarray:
    img = w.frame_view.image.image
    assert img is not None
    return np.asarray(img)


def test_open_score_and_timeline(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    assert window.open_clip(str(synthetic_clip))
    wait_scored(qtbot, window)
    c = window.controller
    assert c.n_scored == 40 and (c.scores >= 0).all()
    assert window.summary.familiarity.isHidden()  # the tiny card gives no limit: no warning
    window.scoring.redraw()
    x, y = window.timeline.score_line.getData()
    # One step per run of equal scores, covering every frame exactly once.
    assert x[0] == -0.5 and x[-1] == 39.5 and len(x) == len(y) + 1
    expanded = np.repeat(y, np.diff(x).astype(int))
    assert np.array_equal(expanded, c.scores)
    assert window.slider.maximum() == 39
    assert window.summary.score.text().startswith("Score ")
    assert window.summary.worst.isEnabled()
    assert "CPU" in window.model_label.text()


def test_keys_step_jump_and_frame_accuracy(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))
    with open_clip(synthetic_clip) as clip:
        frames = list(clip.iter_frames())
    c = window.controller
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert c.index == 1
    qtbot.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert c.index == 11
    qtbot.keyClick(window, Qt.Key.Key_Period)
    assert c.index == 12
    qtbot.keyClick(window, Qt.Key.Key_Comma)
    qtbot.keyClick(window, Qt.Key.Key_Left)
    assert c.index == 10
    assert np.array_equal(shown(window), frames[10])
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert c.index == 39 and np.array_equal(shown(window), frames[39])
    qtbot.keyClick(window, Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier)
    assert c.index == 29 and np.array_equal(shown(window), frames[29])
    qtbot.keyClick(window, Qt.Key.Key_Home)
    assert c.index == 0 and np.array_equal(shown(window), frames[0])
    for i in [17, 3, 38, 22]:  # random access shows exactly frame i
        window.seek(i)
        qtbot.wait(20)
        assert c.index == i and np.array_equal(shown(window), frames[i])


def test_play_at_clip_rate(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))  # 40 frames at 20 fps: 2 s
    qtbot.keyClick(window, Qt.Key.Key_Space)
    t0 = time.perf_counter()
    qtbot.waitUntil(lambda: window.controller.index >= 10, timeout=5000)
    elapsed = time.perf_counter() - t0
    assert elapsed >= 0.4  # not faster than the clip's own rate (10 frames at 20 fps = 0.5 s)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    stopped = window.controller.index
    qtbot.wait(200)
    assert window.controller.index == stopped


def test_cursor_and_slider_sync_both_ways(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))
    window.slider.setValue(12)
    qtbot.waitUntil(lambda: window.controller.index == 12)
    assert all(round(cur.value()) == 12 for cur in window.timeline.cursors)
    window.timeline.seek_requested.emit(30)
    qtbot.waitUntil(lambda: window.controller.index == 30)
    assert window.slider.value() == 30
    window.timeline.cursors[0].setValue(7)
    window.timeline.cursors[0].sigDragged.emit(window.timeline.cursors[0])
    qtbot.waitUntil(lambda: window.controller.index == 7)
    assert window.slider.value() == 7 and round(window.timeline.cursors[1].value()) == 7


def test_overlay_modes(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))
    fv = window.frame_view
    for mode in (1, 2, 3):
        window.overlay_mode.setCurrentIndex(mode)
        qtbot.waitUntil(lambda: fv.overlay.isVisible(), timeout=TIMEOUT)
        ov = fv.overlay.image
        assert ov is not None and ov.shape[:2] == shown(window).shape[:2]
        assert fv.legend.isVisible()  # every overlay has its legend (the reconstruction's grey levels too)
    window.opacity.setValue(30)
    assert fv.overlay.opacity() == pytest.approx(0.3)
    qtbot.keyClick(window, Qt.Key.Key_O)  # grad-cam -> off
    assert window.overlay == "off" and not fv.overlay.isVisible()


def test_export_equals_cli(qtbot, window: MainWindow, synthetic_clip: Path, tiny_model: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))
    wait_scored(qtbot, window)
    gui = tmp_path / "gui.csv"
    assert window.export_to(str(gui))
    cli = tmp_path / "cli.csv"
    out = subprocess.run(
        [sys.executable, "-m", "lusviewer", "score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(cli)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert gui.read_text() == cli.read_text()
    assert (tmp_path / "gui_clips.csv").read_text() == (tmp_path / "cli_clips.csv").read_text()
    assert not window.export_to(str(gui), overwrite=False)  # asks before overwriting
    # a name ending .json: one JSON report, as `score -o x.json` writes (was CSV text in a .json file)
    assert window.export_to(str(tmp_path / "gui.json"))
    out = subprocess.run(
        [sys.executable, "-m", "lusviewer", "score", str(synthetic_clip), "--model", str(tiny_model),
         "-o", str(tmp_path / "cli.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    gui_json, cli_json = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("gui", "cli"))
    assert gui_json["clips"] == cli_json["clips"] and not (tmp_path / "gui_clips.json").exists()


def test_exam_collects_scored_clips_and_exports_like_the_cli(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, synthetic_clip: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = tmp_path / "R1.mp4"
    second.write_bytes(synthetic_clip.read_bytes())
    tab = window.side_tabs.indexOf(window.exam_panel)
    assert window.side_tabs.tabText(tab) == "Exam" and not window.act_export_exam.isEnabled()
    for clip in (synthetic_clip, second, synthetic_clip):  # the first again: replaced, not added
        with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
            assert window.open_clip(str(clip))
    exam = window.controller.exam
    assert [e.clip for e in exam.entries] == [str(synthetic_clip), str(second)]
    assert window.exam_panel.table.rowCount() == 2
    assert window.exam_panel.table.item(1, 0).text() == "R1"
    guess = "?" if exam.n_uncertain else ""  # a total with uncertain zones is marked, as the diagram's zones
    assert window.side_tabs.tabText(tab) == f"Exam · LUS {exam.total}{guess} of 6"
    assert window.exam_panel.total.text() == exam.summary() and window.act_export_exam.isEnabled()
    assert window.exam_panel.table.currentRow() == 0  # the clip on screen is selected
    gui = tmp_path / "gui-exam.csv"
    assert window.export_exam_to(str(gui))
    cli = tmp_path / "cli-exam.csv"
    out = subprocess.run(
        [sys.executable, "-m", "lusviewer", "score", str(synthetic_clip), str(second), "--model", str(tiny_model),
         "-o", str(tmp_path / "cli.csv"), "--exam", str(cli), "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert gui.read_text() == cli.read_text()
    # Remove the selected row; an unexported change makes quitting ask first.
    window.exam_panel.table.selectRow(1)
    window.exam_panel.remove_button.click()
    assert [e.clip for e in exam.entries] == [str(synthetic_clip)] and window.exam_panel.table.rowCount() == 1
    with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
        window.open_clip(str(second))
    asked: list[str] = []
    monkeypatch.setattr(window, "_ask", lambda title, text: asked.append(text) or False)
    window.close()
    assert window.isVisible() and window.controller.thread_running and "has not been exported" in asked[0]
    window.exam_panel.clear_button.click()  # asks too, and the answer is no
    assert len(exam) == 2
    monkeypatch.setattr(window, "_ask", lambda title, text: True)
    window.exam_panel.clear_button.click()
    assert len(exam) == 0 and window.side_tabs.tabText(tab) == "Exam" and not window.act_export_exam.isEnabled()


def test_several_clips_are_scored_in_turn_into_the_exam(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, synthetic_clip: Path, long_clip: Path, tmp_path: Path
) -> None:
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    a, b = tmp_path / "L1.mp4", tmp_path / "L2.mp4"
    for p in (a, b):
        p.write_bytes(synthetic_clip.read_bytes())
    bad = tmp_path / "L3.mp4"
    bad.write_text("not a video")
    failed: list[str] = []
    window.controller.clip_failed.connect(lambda path, _reason: failed.append(path))
    mime = QMimeData()  # several files dropped at once: one exam
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in (a, bad, b)])
    drop = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(drop)
    assert window.side_tabs.currentWidget() is window.exam_panel
    qtbot.waitUntil(lambda: len(window.controller.exam) == 2 and window.controller.result is not None, timeout=TIMEOUT)
    assert [e.zone for e in window.controller.exam.entries] == ["L1", "L2"]
    assert failed == [str(bad)]  # reported, and the next clip followed
    assert window.controller.exam.not_scored == [str(bad)]  # and the exam says a zone is missing
    assert "1 clip could not be scored" in window.exam_panel.total.text()
    assert window.controller.queued == [] and window.queue_label.text() == ""
    # Cancel stops the queue too; opening a clip by hand drops what is still queued.
    window.open_clips([str(long_clip), str(a)])
    qtbot.waitUntil(lambda: window.controller.running, timeout=TIMEOUT)
    assert window.queue_label.text() == "1 more clip queued"
    window.cancel_button.click()
    assert window.controller.queued == [] and not window.controller.running
    qtbot.wait(300)
    assert window.controller.info is not None and window.controller.info.path == str(long_clip)
    window.open_clips([str(long_clip), str(b)])
    assert not window.open_clip(str(bad))  # a file that cannot be opened keeps the queue
    assert window.controller.queued == [str(b)] and window.controller.running
    window.open_clip(str(a))
    assert window.controller.queued == []
    wait_scored(qtbot, window)
    qtbot.wait(300)
    assert window.controller.info.path == str(a)


def test_export_before_scoring_finished_waits(qtbot, window: MainWindow, long_clip: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(long_clip))
    assert window.controller.result is None
    with pytest.raises(RuntimeError, match="not finished"):
        window.controller.export(str(tmp_path / "early.csv"))
    out = tmp_path / "early.csv"
    assert not window.request_export(str(out))  # offers to wait (auto-accepted in tests)
    assert not out.exists()
    wait_scored(qtbot, window)
    qtbot.waitUntil(out.exists, timeout=TIMEOUT)
    assert len(out.read_text().splitlines()) == 1501


def test_cancel_mid_run(qtbot, window: MainWindow, long_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(long_clip))
    c = window.controller
    qtbot.waitUntil(lambda: c.n_scored > 0, timeout=TIMEOUT)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not c.running
    n = c.n_scored
    qtbot.wait(500)
    assert c.n_scored == n < 1500  # nothing lands after the cancel
    assert c.result is None
    assert "cancelled" in window.rate_label.text().lower()


def test_open_second_clip_mid_run_drops_stale_results(
    qtbot, window: MainWindow, long_clip: Path, synthetic_clip: Path
) -> None:  # type: ignore[no-untyped-def]
    c = window.controller
    window.open_clip(str(long_clip))
    qtbot.waitUntil(lambda: c.n_scored > 0, timeout=TIMEOUT)
    old_job = c.job_id
    window.open_clip(str(synthetic_clip))
    assert c.job_id > old_job
    wait_scored(qtbot, window)
    assert len(c.scores) == 40 and c.n_scored == 40
    qtbot.wait(300)  # any in-flight batch of the old job arrives now, and is dropped
    assert len(c.scores) == 40 and (c.scores >= 0).all()
    assert c.result is not None and c.result.info.path == str(synthetic_clip)  # type: ignore[attr-defined]


def test_close_during_scoring(qtbot, tiny_model: Path, settings: QSettings, long_clip: Path) -> None:  # type: ignore[no-untyped-def]
    w = shown_window(qtbot, tiny_model, settings)
    w.open_clip(str(long_clip))
    qtbot.waitUntil(lambda: w.controller.n_scored > 0, timeout=TIMEOUT)
    w.close()
    assert not w.controller.thread_running


def test_bad_file_keeps_current_clip(qtbot, window: MainWindow, synthetic_clip: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    with qtbot.waitSignal(window.controller.clip_failed) as sig:
        assert not window.open_clip(str(bad))
    assert sig.args[0] == str(bad) and sig.args[1]
    assert window.controller.info is not None and window.controller.info.path == str(synthetic_clip)
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert window.controller.index == 1  # still usable


def test_drop_opens_clip(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(synthetic_clip))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    assert window.controller.info is not None and window.controller.info.path == str(synthetic_clip)


def test_settings_persist(qtbot, tiny_model: Path, settings: QSettings, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    w = MainWindow(str(tiny_model), settings, quiet=True)
    qtbot.addWidget(w)
    w.open_clip(str(synthetic_clip))
    w.overlay_mode.setCurrentIndex(2)
    w.opacity.setValue(70)
    w.show_probs.setChecked(False)
    w.close()
    w2 = MainWindow(str(tiny_model), settings, quiet=True)
    qtbot.addWidget(w2)
    assert w2.overlay_mode.currentIndex() == 2 and w2.opacity.value() == 70
    assert not w2.show_probs.isChecked()
    assert w2.recent_files()[0] == str(synthetic_clip)
    w2.close()


def test_missing_model_is_reported_not_fatal(qtbot, settings: QSettings, tmp_path: Path, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    w = MainWindow(str(tmp_path / "none.json"), settings, quiet=True)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.model_label.text() == "No model loaded", timeout=TIMEOUT)
    assert w.open_clip(str(synthetic_clip))  # the clip still opens for viewing
    qtbot.keyClick(w, Qt.Key.Key_Right)
    assert w.controller.index == 1
    assert not w.controller.running and w.summary.score.text() == "No model"
    w.close()


def test_uncaught_error_is_logged_and_shown(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import logging

    from PySide6.QtWidgets import QMessageBox

    from lusviewer.ui import app as app_module

    monkeypatch.setattr(app_module, "log_dir", lambda: tmp_path / "logs")
    shown_dialogs: list[str] = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown_dialogs.append(self.text()) or 0)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    root = logging.getLogger()
    handlers = list(root.handlers)
    log_path = app_module.setup_logging()
    try:
        app_module.install_excepthook(log_path)
        try:
            raise ValueError("boom in a slot")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                h.close()
                root.removeHandler(h)
    assert shown_dialogs and "boom in a slot" in shown_dialogs[0]
    text = log_path.read_text()
    assert "ValueError: boom in a slot" in text and "Traceback" in text


def test_overlay_requests_are_coalesced_while_scrubbing(qtbot, window: MainWindow, long_clip: Path) -> None:  # type: ignore[no-untyped-def]
    sent: list[int] = []
    window.controller._request_overlay.connect(lambda req, index, frame, cam: sent.append(index))
    window.overlay_mode.setCurrentIndex(1)
    window.open_clip(str(long_clip))  # the worker is now busy scoring 1500 frames
    for _ in range(30):
        qtbot.keyClick(window, Qt.Key.Key_Right)
    assert window.controller.index == 30
    assert len(sent) <= 2  # one in flight, the newest wish waiting: not thirty queued
    qtbot.waitUntil(lambda: window._overlay_cache is not None and window._overlay_cache[0] == 30, timeout=TIMEOUT)
    assert sent[-1] == 30


def test_overlay_is_served_between_batches_while_scoring(qtbot, window: MainWindow, long_clip: Path) -> None:  # type: ignore[no-untyped-def]
    """An overlay does not wait for a long clip's scoring to finish."""
    c = window.controller
    at_overlay: list[tuple[int, bool]] = []
    c.overlay_ready.connect(lambda index, rec, cam: at_overlay.append((c.n_scored, c.result is None)))
    window.open_clip(str(long_clip))  # the worker is now busy scoring 1500 frames
    window.overlay_mode.setCurrentIndex(1)  # reconstruction error of frame 0
    qtbot.waitUntil(lambda: bool(at_overlay), timeout=TIMEOUT)
    scored, still_scoring = at_overlay[0]
    assert still_scoring and scored < 1500, at_overlay
    wait_scored(qtbot, window)
    assert c.n_scored == 1500


def test_unfamiliar_clip_is_flagged_in_the_summary(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, settings: QSettings, synthetic_clip: Path
) -> None:
    from conftest import make_tiny_model

    strict = make_tiny_model(tmp_path / "strict", recon_error_limit=0.0)  # every clip is "unlike"
    w = shown_window(qtbot, strict, settings)
    assert w.open_clip(str(synthetic_clip))
    wait_scored(qtbot, w)
    assert not w.summary.familiarity.isHidden()
    assert "unlike the model's training clips" in w.summary.familiarity.text()
    # No number shown as a finding: the output is named, greyed, as what it would be.
    result = w.controller.result
    assert w.summary.score.text() == "No reliable score"
    assert f"would be score {result.summary.clip_score}" in w.summary.rule.text()
    assert "clip unlike the training clips" in w.frame_label.text()
    grey = w.timeline.score_levels[0].opts["pen"].color().name()
    assert grey == "#9a9a9a"
    w.close()
    assert not w.controller.thread_running


def test_timeline_stays_light_on_long_clips(qtbot) -> None:  # type: ignore[no-untyped-def]
    from lusviewer.ui.timeline import ScoreTimeline

    t = ScoreTimeline()
    qtbot.addWidget(t)
    n = 100_000
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, n)
    scores[50_000:50_010] = 3  # a short worst pattern must survive the overview
    t.reset(n)
    t.update_scores(scores, rng.dirichlet(np.ones(4), n).astype(np.float32), rng.random(n).astype(np.float32), n)
    x, y = t.score_line.getData()
    assert x[0] == -0.5 and x[-1] == n - 0.5
    assert len(y) <= t.MAX_POINTS and y.max() == 3
    px, _ = t.prob_curves[0].getData()
    assert len(px) <= t.MAX_POINTS


def test_asked_before_dropping_the_queue(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, synthetic_clip: Path, long_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(window, "_ask", lambda title, text: asked.append(text) or False)
    window.open_clips([str(long_clip), str(synthetic_clip)])
    assert not window.open_clip(str(synthetic_clip))  # the answer is no: nothing changes
    assert "synthetic.mp4" in asked[0] and window.controller.queued == [str(synthetic_clip)]
    assert window.controller.info is not None and window.controller.info.path == str(long_clip)
    window.controller.cancel_all()


def test_clinician_scores_beside_the_models(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, synthetic_clip: Path, tmp_path: Path
) -> None:
    import csv

    second = tmp_path / "R1.mp4"
    second.write_bytes(synthetic_clip.read_bytes())
    for clip in (synthetic_clip, second):
        with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
            assert window.open_clip(str(clip))
    exam, panel = window.controller.exam, window.exam_panel
    model = [e.clip_score for e in exam.entries]
    mine = [(model[0] + 1) % 4, model[1]]  # one disagreement, one agreement
    panel.clinician_box(0).setCurrentIndex(mine[0] + 1)
    assert exam.clinician_score(str(synthetic_clip)) == mine[0] and window.controller.exam_unsaved
    assert f"you {mine[0]}, model {model[0]}" in panel.table.item(0, 3).text()
    assert "clinician 1 of 2 zones scored" in exam.summary()
    panel.clinician_box(1).setCurrentIndex(mine[1] + 1)
    assert f"clinician {sum(mine)}, agrees on 1 of 2" in panel.total.text()
    out = tmp_path / "exam.csv"
    assert window.export_exam_to(str(out))
    rows = list(csv.DictReader(out.open()))
    assert [r["clinician_score"] for r in rows] == [str(mine[0]), str(mine[1]), str(sum(mine))]
    assert "agreeing with the model on 1 of 2 zones" in rows[-1]["zone"]
    # Scoring a clip again keeps the clinician's score; "—" forgets it.
    with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
        window.controller.start_scoring()
    assert exam.clinician_score(str(second)) == mine[1] and panel.clinician_box(1).currentIndex() == mine[1] + 1
    panel.clinician_box(0).setCurrentIndex(0)
    assert exam.clinician_score(str(synthetic_clip)) is None and exam.clinician_total is None
    # The protocol: 6 zones makes the total "of 18" and marks the exam incomplete.
    panel.protocol.setCurrentIndex(panel.protocol.findData(6))
    assert exam.zones == 6 and "INCOMPLETE: 2 of 6 zones scored" in panel.total.text()
    assert "⚠ LUS" in window.side_tabs.tabText(window.side_tabs.indexOf(panel)) and "of 18" in panel.total.text()
    assert window.settings.value("exam_zones") in (6, "6")


def test_confidence_and_frame_label_follow_scoring(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    from lusviewer.report import LOW_CONFIDENCE

    window.open_clip(str(synthetic_clip))
    assert "not scored yet" in window.frame_label.text()
    wait_scored(qtbot, window)
    c = window.controller
    # Frame 0 was on screen all along: its label now shows its score and probability.
    s0 = int(c.scores[0])
    assert f"score {s0} (p = {c.probs[0, s0]:.2f}" in window.frame_label.text()
    weak = c.probs.max(1) < LOW_CONFIDENCE
    assert f"{100 * weak.mean():.0f} % of frames" in window.summary.confidence.text()
    drawn = [
        np.isfinite(item.getData()[1]).sum() for item in (*window.timeline.score_levels, *window.timeline.weak_levels)
    ]
    assert sum(drawn) > 0
    assert (sum(drawn[4:]) > 0) == bool(weak.any())  # dashed runs exactly where the model is unsure


def test_page_keys_jump_between_score_changes(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))
    wait_scored(qtbot, window)
    c = window.controller
    c.scores[:] = 0
    c.scores[10:20] = 2  # changes at frames 10 and 20
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert c.index == 10
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert c.index == 20
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert c.index == len(c.scores) - 1  # no further change: the last frame
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    assert c.index == 20
    window.jump(15)
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    assert c.index == 10


def test_overlay_of_another_frame_is_never_shown(qtbot, window: MainWindow, long_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(long_clip))
    window.overlay_mode.setCurrentIndex(2)  # error map of frame 0
    qtbot.waitUntil(lambda: window.frame_view.overlay.isVisible(), timeout=TIMEOUT)
    window.step(1)  # frame 1's map is not there yet: frame 0's must not stay up
    assert window.controller.index == 1
    assert not window.frame_view.overlay.isVisible() or (window._overlay_cache or (None,))[0] == 1
    qtbot.waitUntil(lambda: window.frame_view.overlay.isVisible(), timeout=TIMEOUT)
    assert window._overlay_cache is not None and window._overlay_cache[0] == 1
    window.controller.cancel_all()


def test_window_saved_on_a_larger_screen_fits_this_one(qtbot, tiny_model: Path, settings: QSettings) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import QApplication

    avail = QApplication.primaryScreen().availableGeometry()
    big = MainWindow(str(tiny_model), settings, quiet=True)
    qtbot.addWidget(big)
    big.setGeometry(QRect(avail.x() + 200, avail.y() + 100, avail.width() + 900, avail.height() + 700))
    settings.setValue("geometry", big.saveGeometry())
    big.controller.shutdown()
    w = MainWindow(str(tiny_model), settings, quiet=True)
    qtbot.addWidget(w)
    assert avail.contains(w.geometry()), (w.geometry(), avail)
    w.controller.shutdown()


def test_wrong_header_frame_count_slider_timeline_and_csv_agree(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    from test_frame_count import rle_dicom

    clip = rle_dicom(tmp_path / "over.dcm", 12, claimed=20)
    c = window.controller
    window.open_clip(str(clip))
    wait_scored(qtbot, window)
    assert c.result is not None and len(c.result.scores) == 12
    assert c.info is not None and c.reader is not None
    assert c.info.frame_count == c.reader.info.frame_count == 12
    assert window.slider.maximum() == 11 and window.slider.value() == c.index <= 11
    assert window.timeline._n == 12
    assert all(list(cur.maxRange) == [0, 11] for cur in window.timeline.cursors)
    x, _ = window.timeline.score_line.getData()
    assert x[0] == -0.5 and x[-1] == 11.5
    assert "(0–11)" in window.frame_label.text()
    window.jump(11)
    assert c.index == 11 and window.slider.value() == 11
    out = tmp_path / "over.csv"
    assert window.export_to(str(out))
    assert len(out.read_text().splitlines()) == 1 + 12


def test_header_understating_the_frames_grows_the_timeline_in_place(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header that says fewer frames than decode (the display reader believes it): the
    clip's frame count grows as the frames past it are scored, and the timeline grows with
    it, in place. It was reset at each batch (its curves cleared and the cursor sent to
    frame 0, then put back), so a long clip's timeline kept blanking while it was scored."""
    from dataclasses import replace

    import lusviewer.ui.controller as controller_module

    real_open = controller_module.open_clip

    def understated(path: str):  # type: ignore[no-untyped-def]
        reader = real_open(path)
        reader.info = replace(reader.info, frame_count=10)
        return reader

    monkeypatch.setattr(controller_module, "open_clip", understated)
    c, timeline = window.controller, window.timeline
    grown: list[int] = []
    c.frame_count_changed.connect(grown.append)
    assert window.open_clip(str(synthetic_clip))
    assert c.frame_count == 10 and timeline._n == 10 and window.slider.maximum() == 9
    resets: list[int] = []
    reset = timeline.reset
    monkeypatch.setattr(timeline, "reset", lambda n: (resets.append(n), reset(n)))
    wait_scored(qtbot, window)
    assert grown and grown[-1] == 40 and grown == sorted(grown), grown
    assert resets == [], "the timeline was reset while the clip's frame count grew"
    assert timeline._n == 40 and window.slider.maximum() == 39
    assert all(list(cur.maxRange) == [0, 39] for cur in timeline.cursors)
    assert timeline.score_plot.viewRange()[0][1] >= 39.5
    x, _ = timeline.score_line.getData()
    assert x[0] == -0.5 and x[-1] == 39.5
    assert "(0–39)" in window.frame_label.text()
    window.jump(39)
    assert c.index == 39 and window.slider.value() == 39 and timeline.cursors[0].value() == 39


def test_dicom_claiming_two_billion_frames_allocates_by_frames_present(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    from test_frame_count import rle_dicom

    clip = rle_dicom(tmp_path / "huge.dcm", 5, claimed=2**31 - 1)
    assert clip.stat().st_size < 10_000
    c = window.controller
    assert window.open_clip(str(clip))
    assert len(c.scores) <= 5 and c.probs.nbytes <= 5 * 4 * 4  # nothing sized by the header
    wait_scored(qtbot, window)
    assert (
        c.info is not None
        and c.info.frame_count == len(c.scores) == 5
        and window.slider.maximum() == 4
        and window.timeline._n == 5
    )


def test_uncertain_clip_score_is_worded_and_grey_in_both_tabs(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 item 1: a guess does not look like a finding (the random-init model is unsure of every frame)."""
    from lusviewer.report.aggregate import clip_confidence
    from lusviewer.ui.palette import SCORE_COLOURS, UNCERTAIN_COLOUR

    with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
        assert window.open_clip(str(synthetic_clip))
    result = window.controller.result
    score = result.summary.clip_score
    assert clip_confidence(result) == "uncertain"
    assert window.summary.score.text() == f"Score {score}, uncertain"
    style = window.summary.score.styleSheet()
    assert UNCERTAIN_COLOUR in style and SCORE_COLOURS[score] not in style
    assert "a guess, not a finding" in window.summary.rule.text()
    cell = window.exam_panel.table.item(0, 1)
    assert cell.text() == window.summary.score.text() and cell.foreground().color().name() == UNCERTAIN_COLOUR
    assert "counted in the total" in window.exam_panel.table.item(0, 3).text()
    assert window.controller.exam.total == score  # uncertain zones count


def test_withheld_clip_stays_out_of_the_exam_total(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, settings: QSettings, synthetic_clip: Path
) -> None:
    """Issue 17 item 3: "No reliable score" in the Clip tab is no green 0 in the Exam tab, nor in its total."""
    from conftest import make_tiny_model

    strict = make_tiny_model(tmp_path / "strict", recon_error_limit=0.0)  # every clip is "unlike"
    w = shown_window(qtbot, strict, settings)
    with qtbot.waitSignal(w.controller.exam_changed, timeout=TIMEOUT):
        assert w.open_clip(str(synthetic_clip))
    exam = w.controller.exam
    assert w.summary.score.text() == "No reliable score" == w.exam_panel.table.item(0, 1).text()
    assert exam.n_withheld == 1 and exam.total == 0 and exam.incomplete
    assert "INCOMPLETE: 1 zone with no reliable score" in w.exam_panel.total.text()
    assert "not in the total" in w.exam_panel.table.item(0, 3).text()
    # nothing counted: the tab says so rather than "LUS 0 of 3", which reads as normal lungs
    assert w.side_tabs.tabText(w.side_tabs.indexOf(w.exam_panel)) == "Exam · ⚠ no reliable score"
    w.close()
    assert not w.controller.thread_running


def test_exam_table_marks_each_confidence(qtbot) -> None:  # type: ignore[no-untyped-def]
    from lusviewer.report.exam import ExamEntry
    from lusviewer.ui.exam_panel import ExamPanel
    from lusviewer.ui.palette import SCORE_COLOURS, UNCERTAIN_COLOUR, WITHHELD_COLOUR

    panel = ExamPanel()
    qtbot.addWidget(panel)
    entries = [
        ExamEntry(f"p/{z}.mp4", z, 2, 10, 0, False, "m", "a" * 64, confidence=c)
        for z, c in (("L1", "confident"), ("L2", "uncertain"), ("L3", "withheld"))
    ]
    panel.set_exam(entries, "summary")
    cells = [panel.table.item(row, 1) for row in range(3)]
    assert [c.text() for c in cells] == ["Score 2", "Score 2, uncertain", "No reliable score"]
    swatches = [c.icon().pixmap(12, 12).toImage().pixelColor(5, 5).name() for c in cells]
    assert swatches == [SCORE_COLOURS[2], UNCERTAIN_COLOUR, WITHHELD_COLOUR]  # coloured only when confident


def test_clip_of_another_patient_offers_a_new_exam(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, synthetic_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 item 4: clips of two patients are not summed into one LUS score without a word."""
    l3, r1, r2 = (tmp_path / f"patient_{n}.mp4" for n in ("17_L3", "20_R1", "20_R2"))
    for p in (l3, r1, r2):
        p.write_bytes(synthetic_clip.read_bytes())
    asked: list[str] = []
    answer = [False]  # no: a new exam
    monkeypatch.setattr(window, "_ask", lambda title, text: asked.append(text) or answer[0])
    exam = window.controller.exam
    for clip in (l3, r1):
        with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
            assert window.open_clip(str(clip))
    assert len(asked) == 1 and "patient_20_R1.mp4 is of patient 20; the exam holds patient 17" in asked[0]
    assert [e.clip for e in exam.entries] == [str(r1)]  # a new exam, of patient 20
    with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
        assert window.open_clip(str(r2))  # the same patient: no question
    assert len(asked) == 1 and len(exam) == 2
    answer[0] = True  # yes: add it to this exam anyway; the total says so
    with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
        assert window.open_clip(str(l3))
    assert len(asked) == 2 and len(exam) == 3 and "not been exported" in asked[1]
    assert "clips of 2 patients (17, 20)" in window.exam_panel.total.text()


def test_a_long_frame_label_never_widens_the_window(window: MainWindow) -> None:
    """The line under the image wraps: at full length (a clip unlike the training clips)
    it pushed the window's minimum width past a 1024x600 screen."""
    window.frame_label.setText(
        "Frame 3 (0–59)  ·  0.12 s  ·  25.0 fps  ·  350×350  ·  score 3 (p = 0.67), clip unlike the training clips"
    )
    assert window.minimumSizeHint().width() <= 800  # 1002 before, with the offscreen fonts
