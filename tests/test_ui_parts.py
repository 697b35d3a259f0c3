"""The main window's collaborators on their own (playback, status bar, preferences,
export, overlay, timeline), each against a stand-in for the controller: no model, no thread."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QComboBox, QMenu, QSlider, QToolButton, QWidget

from lusviewer.ui.export import Exporter
from lusviewer.ui.frame_view import OVERLAY_MODES, FrameView
from lusviewer.ui.overlay import OverlayPresenter
from lusviewer.ui.playback import Playback
from lusviewer.ui.preferences import MAX_RECENT, Preferences
from lusviewer.ui.status_bar import StatusBar


class StubController(QObject):
    """What the collaborators read from and call on the controller, and nothing else."""

    scoring_finished = Signal(object)

    def __init__(self, scores: list[int], fps: float = 20.0) -> None:
        super().__init__()
        self.scores = np.asarray(scores, dtype=np.int64)
        self.n_scored = len(scores)
        self.index = 0
        self.info = SimpleNamespace(path="/clips/a.mp4", frame_count=len(scores), fps=fps)
        self.seeks: list[int] = []
        self.reader: object | None = None
        self.model_status: object | None = None
        self.overlay_requests: list[bool] = []
        self.result: object | None = None
        self.running = False
        self.exported: list[str] = []

    @property
    def frame_count(self) -> int:  # as Controller.frame_count: the clip's frames, one source of truth
        return int(self.info.frame_count)

    def seek(self, index: int) -> None:
        self.index = max(0, min(int(index), len(self.scores) - 1))
        self.seeks.append(self.index)

    def step(self, delta: int) -> None:
        self.seek(self.index + delta)

    def request_overlay(self, want_cam: bool) -> None:
        self.overlay_requests.append(want_cam)

    def export(self, path: str) -> tuple[Path, Path]:
        self.exported.append(path)
        return Path(path), Path(path).with_name("x_clips.csv")


def as_controller(c: StubController) -> Any:
    return c


def test_playback_jumps_to_each_change_of_score(qtbot) -> None:  # type: ignore[no-untyped-def]
    c = StubController([0, 0, 1, 1, 1, 3, 3, 0, 0])  # new runs start at 2, 5, 7
    p = Playback(as_controller(c), QToolButton())
    targets = []
    for _ in range(4):
        p.jump_to_change(1)
        targets.append(c.index)
    assert targets == [2, 5, 7, 8]  # past the last change: the last scored frame
    targets = []
    for _ in range(4):
        p.jump_to_change(-1)
        targets.append(c.index)
    assert targets == [7, 5, 2, 0]


def test_playback_rate_limits_drag_seeks(qtbot) -> None:  # type: ignore[no-untyped-def]
    c = StubController([0] * 40)
    p = Playback(as_controller(c), QToolButton())
    for i in (3, 4, 5, 6):
        p.seek(i)
    assert c.seeks == [3]  # the first at once, the rest wait for the display refresh
    qtbot.waitUntil(lambda: c.seeks == [3, 6], timeout=1000)  # only the newest one follows
    qtbot.wait(50)
    p.seek(9)
    p.seek(10)  # waits for the display refresh...
    p.jump(30)  # ...but a jump goes at once and drops it
    qtbot.wait(50)
    assert c.seeks[-2:] == [9, 30] and c.index == 30


def test_playback_plays_at_the_clip_rate_and_stops_at_the_end(qtbot) -> None:  # type: ignore[no-untyped-def]
    c = StubController([0] * 10, fps=100.0)
    button = QToolButton()
    p = Playback(as_controller(c), button)
    play_icon = button.icon().cacheKey()
    p.toggle()
    assert p.playing and button.icon().cacheKey() != play_icon
    qtbot.waitUntil(lambda: not p.playing, timeout=3000)
    assert c.index == 9 and button.icon().cacheKey() == play_icon
    p.toggle()  # at the last frame: plays again from the first
    assert c.seeks[-1] == 0 and p.playing
    p.stop()
    assert not p.playing and button.icon().cacheKey() == play_icon


def test_status_bar_progress_queue_and_messages(qtbot) -> None:  # type: ignore[no-untyped-def]
    sb = StatusBar()
    qtbot.addWidget(sb)
    sb.show()
    sb.scoring_started(100)
    assert sb.progress.isVisible() and sb.cancel_button.isVisible() and sb.rate_label.text() == "Scoring…"
    sb.show_progress(25, 100, 12.5)
    assert sb.progress.value() == 25
    assert sb.rate_label.text() == "25/100 frames · 12.5 frames/s · 6 s left"
    sb.scoring_over("Scoring cancelled")
    assert not sb.progress.isVisible() and not sb.cancel_button.isVisible()
    assert sb.rate_label.text() == "Scoring cancelled"
    sb.show_queue(1)
    assert sb.queue_label.text() == "1 more clip queued"
    sb.show_queue(3)
    assert sb.queue_label.text() == "3 more clips queued"
    sb.show_queue(0)
    assert sb.queue_label.text() == ""
    sb.notify("hello", 20)
    assert sb.message_label.text() == "hello"
    qtbot.waitUntil(lambda: sb.message_label.text() == "", timeout=1000)


def test_preferences_keep_the_recent_clips(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    opened: list[str] = []
    window = SimpleNamespace(recent_menu=QMenu(), open_clip=opened.append)
    prefs = Preferences(window, settings)  # type: ignore[arg-type]
    assert prefs.recent_files() == []
    settings.setValue("recent_files", "/clips/only.mp4")  # one item: INI files give back a string
    assert prefs.recent_files() == ["/clips/only.mp4"]
    for i in range(MAX_RECENT + 2):
        prefs.add_recent(f"/clips/{i}.mp4")
    prefs.add_recent("/clips/5.mp4")  # again: to the top, not twice
    recent = prefs.recent_files()
    assert len(recent) == MAX_RECENT and recent[0] == "/clips/5.mp4" and recent.count("/clips/5.mp4") == 1
    actions = window.recent_menu.actions()
    assert [a.text() for a in actions] == recent and window.recent_menu.isEnabled()
    actions[1].trigger()
    assert opened == [recent[1]]


def test_exporter_waits_for_scoring_to_finish(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = StubController([0] * 5)
    asked: list[str] = []
    warned: list[str] = []
    notes: list[str] = []
    answer = {"yes": False}

    def ask(title: str, text: str) -> bool:
        asked.append(text)
        return answer["yes"]

    parent = QWidget()
    qtbot.addWidget(parent)
    ex = Exporter(
        parent,
        as_controller(c),
        QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
        ask=ask,
        warn=lambda title, text: warned.append(title),
        notify=lambda text, ms: notes.append(text),
    )
    out = str(tmp_path / "r.csv")
    assert not ex.request_export(out) and warned == ["Nothing to export"] and not c.exported
    c.running = True
    assert not ex.request_export(out)  # asked, and the answer is no
    c.scoring_finished.emit(object())
    assert "a.mp4 is still being scored (5 of 5 frames)" in asked[0] and not c.exported
    answer["yes"] = True
    assert not ex.request_export(out)
    assert notes == ["The report will be written when scoring finishes"] and not c.exported
    c.scoring_finished.emit(object())
    c.scoring_finished.emit(object())  # once only
    assert c.exported == [out] and notes[-1] == f"Wrote {out} and x_clips.csv"


def test_overlay_presenter_asks_for_the_frame_on_screen(qtbot) -> None:  # type: ignore[no-untyped-def]
    c = StubController([0] * 5)
    view = FrameView()
    qtbot.addWidget(view)
    modes = QComboBox()
    modes.addItems(list(OVERLAY_MODES))
    opacity = QSlider()
    opacity.setRange(0, 100)
    opacity.setValue(40)
    notes: list[str] = []
    ov = OverlayPresenter(as_controller(c), view, modes, opacity, lambda text, ms: notes.append(text))
    frame = np.full((8, 8, 3), 100, np.uint8)
    modes.setCurrentIndex(1)
    modes.currentIndexChanged.connect(ov.mode_changed)  # as the window wires it
    ov.frame_shown(frame)
    assert ov.mode == "reconstruction" and c.overlay_requests == []  # no clip reader, no model: nothing asked
    c.reader, c.model_status = object(), object()
    ov.frame_shown(frame)
    assert c.overlay_requests == [False]
    ov.arrived(0, np.zeros_like(frame), None)
    assert view.overlay.isVisible() and view.overlay.opacity() == pytest.approx(0.4)
    assert ov.cache is not None and ov.cache[0] == 0
    ov.frame_shown(frame)  # the same frame again: drawn from the cache, not asked again
    assert c.overlay_requests == [False]
    modes.setCurrentIndex(3)  # Grad-CAM: the cached frame has none, so it is asked for
    assert ov.cache is None and c.overlay_requests == [False, True]
    c.index = 1
    ov.arrived(0, np.zeros_like(frame), np.zeros((8, 8), np.float32))  # for a frame no longer on screen
    assert not view.overlay.isVisible()
    ov.cycle()
    assert ov.mode == "off"
    ov.reset()
    assert ov.cache is None and not view.overlay.isVisible() and notes == []


def test_exam_summary_keeps_its_wrapped_height(qtbot: Any) -> None:
    """A three-line exam summary reserves its wrapped height, so the layout never draws
    the buttons over the table (seen under Xvfb at 1280x800 before the fix)."""
    from lusviewer.ui.exam_panel import ExamPanel

    panel = ExamPanel()
    qtbot.addWidget(panel)
    panel.resize(600, 300)
    panel.show()
    qtbot.waitExposed(panel)
    summary = (
        "LUS score 8 of 18, INCOMPLETE: 1 zone with no reliable score (unlike the training clips; not in "
        "total); clinician 7, agrees on 3 of 6; 3 uncertain (counted)"
    )
    panel.set_exam([], summary)
    one_line = panel.total.fontMetrics().height()
    assert panel.total.minimumHeight() >= panel.total.heightForWidth(panel.total.width()) > 2 * one_line


def test_timeline_grows_in_place_when_the_clip_has_more_frames(qtbot) -> None:  # type: ignore[no-untyped-def]
    """A clip whose header under-stated its frames: the axis and the cursor's range grow,
    the curves drawn and the cursor stay (no reset while the clip is being scored)."""
    from lusviewer.ui.timeline import ScoreTimeline

    timeline = ScoreTimeline()
    qtbot.addWidget(timeline)
    timeline.reset(10)
    scores = np.r_[np.zeros(4, np.int64), np.full(6, 2, np.int64), np.ones(15, np.int64)]
    probs = np.eye(4, dtype=np.float32)[scores] * 0.9 + 0.025
    recon = np.linspace(0.1, 1.0, 25, dtype=np.float32)
    timeline.update_scores(scores, probs, recon, 10)
    timeline.set_cursor(7)
    drawn = [np.copy(a) for a in timeline.score_line.getData()]
    timeline.set_frame_count(25)
    assert all(np.array_equal(a, b) for a, b in zip(timeline.score_line.getData(), drawn, strict=True))
    assert timeline.prob_curves[0].getData()[0] is not None
    assert timeline._n == 25 and timeline.cursors[0].value() == 7
    assert all(list(cur.maxRange) == [0, 24] for cur in timeline.cursors)
    assert timeline.score_plot.viewRange()[0][1] >= 24.5
    timeline.update_scores(scores, probs, recon, 25)
    x, y = timeline.score_line.getData()
    assert x[-1] == 24.5 and list(y) == [0, 2, 1]
