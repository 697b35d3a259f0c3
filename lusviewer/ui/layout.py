"""The main window's layout: its widgets, menus and keyboard shortcuts, built here and
handed to :class:`~lusviewer.ui.main_window.MainWindow`, which wires them.

Nothing here knows the controller: the menus are given what to call
(:class:`MenuActions`), the shortcuts the :class:`~lusviewer.ui.playback.Playback`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QSlider,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lusviewer.ui.exam_panel import ExamPanel
from lusviewer.ui.frame_view import OVERLAY_MODES, FrameView
from lusviewer.ui.playback import Playback
from lusviewer.ui.summary_panel import SummaryPanel
from lusviewer.ui.timeline import ScoreTimeline

#: The frame label before a clip is open.
NO_CLIP = "No clip open — File › Open (Ctrl+O) or drop a clip here"

#: The devices offered in Scoring › Device: the setting's value and its label.
DEVICES = (("auto", "Automatic (CUDA when present)"), ("cpu", "CPU"), ("cuda", "CUDA"))


class SideSplitter(QSplitter):
    """The right pane: the timeline above, its toggles and the clip / exam tabs below. Until
    the user moves the handle (or a saved layout is restored), the tabs get
    :data:`BELOW_SHARE` of the height, never less than they need: by its stretch factors
    alone the splitter gave the timeline everything above the tabs' minimum, 726 px at
    1920x1080 while the exam table showed four rows."""

    BELOW_SHARE = 0.45
    #: The share of the height the timeline keeps when a tab wants more (:attr:`wanted_below`).
    TIMELINE_KEEPS = 0.5

    def __init__(self) -> None:
        super().__init__(Qt.Orientation.Vertical)
        self.user_set = False
        #: The height the tabs want now (the Exam tab: every row whole), 0: none; given where
        #: the timeline keeps its minimum (6 zones at 1280x800: 4 rows and a half before).
        self.wanted_below: Callable[[], int] = lambda: 0
        self.splitterMoved.connect(self._moved)

    def _moved(self, _pos: int, _index: int) -> None:
        self.user_set = True

    def restoreState(self, state: QByteArray | bytes | bytearray | memoryview, /) -> bool:
        ok = super().restoreState(state)
        self.user_set = self.user_set or ok
        return ok

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if not self.user_set and self.count() == 2:
            self.share()

    def share(self) -> None:
        """Give the tabs their share of the height (their minimum at least), the timeline the rest."""
        top, bottom = self.widget(0), self.widget(1)
        if top is None or bottom is None:
            return
        h = self.height() - self.handleWidth()
        below_min = bottom.minimumSizeHint().height()
        top_min = top.minimumHeight()
        # what the tabs want, where the timeline keeps half the height (its plots readable)
        wanted = min(self.wanted_below(), round(h * (1 - self.TIMELINE_KEEPS)))
        below = min(max(below_min, round(h * self.BELOW_SHARE), wanted), max(h - top_min, below_min))
        self.setSizes([h - below, below])

    def reshare(self) -> None:
        """What the tabs want changed (another tab, more rows): share again, unless the user set the handle."""
        if not self.user_set and self.count() == 2:
            self.share()


@dataclass(frozen=True, eq=False)
class Views:
    """The window's widgets; ``splitter`` is its central widget."""

    frame_view: FrameView
    slider: QSlider
    play_button: QToolButton
    frame_label: QLabel
    #: An incomplete clip (cut short, frames that stop decoding) and the readers' warnings about it.
    clip_notice: QLabel
    timeline: ScoreTimeline
    summary: SummaryPanel
    overlay_mode: QComboBox
    opacity: QSlider
    show_probs: QCheckBox
    show_recon: QCheckBox
    exam_panel: ExamPanel
    side_tabs: QTabWidget
    right_splitter: SideSplitter
    splitter: QSplitter


def build_views() -> Views:
    """The frame with its controls (play, slider, overlay) on the left; the timeline above
    its curves' toggles and the clip / exam tabs on the right."""
    frame_view = FrameView()
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    slider.setEnabled(False)
    play_button = QToolButton()
    play_button.setToolTip("Play / pause (Space)")
    play_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    frame_label = QLabel(NO_CLIP)
    frame_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    # wraps instead of widening the window: "... score 3 (p = 0.67), clip unlike the
    # training clips" pushed the window past a 1024 px screen (seen under Xvfb)
    frame_label.setWordWrap(True)
    fit = QPushButton("Fit")
    fit.setToolTip("Fit the frame to the window (F)")
    fit.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    fit.clicked.connect(frame_view.fit)
    overlay_mode = QComboBox()
    overlay_mode.addItems([m.capitalize() if m != "grad-cam" else "Grad-CAM" for m in OVERLAY_MODES])
    overlay_mode.setToolTip("Overlay on the frame (O cycles)")
    opacity = QSlider(Qt.Orientation.Horizontal)
    opacity.setRange(0, 100)
    opacity.setValue(50)
    opacity.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    # The overlay's controls under the frame they act on (they were on the right, under the
    # timeline, where their row cost the plots height at 1024x600: docs/screenshots).
    ov = QHBoxLayout()
    ov.addWidget(QLabel("Overlay:"))
    ov.addWidget(overlay_mode)
    ov.addWidget(QLabel("Opacity:"))
    ov.addWidget(opacity, 1)
    controls = QHBoxLayout()
    controls.addWidget(play_button)
    controls.addWidget(slider, 1)
    controls.addWidget(fit)
    left = QWidget()
    lv = QVBoxLayout(left)
    lv.setContentsMargins(0, 0, 0, 0)
    lv.addWidget(frame_view, 1)
    lv.addLayout(controls)
    lv.addLayout(ov)
    lv.addWidget(frame_label)
    clip_notice = QLabel("")
    clip_notice.setWordWrap(True)
    clip_notice.setStyleSheet(
        "color: #6a4a00; background: #fff4d6; border: 1px solid #d9b25c; padding: 3px; font-weight: bold;"
    )
    clip_notice.hide()
    lv.addWidget(clip_notice)

    timeline = ScoreTimeline()
    summary = SummaryPanel()
    show_probs = QCheckBox("Probabilities p0–p3")
    show_recon = QCheckBox("Reconstruction error")
    show_probs.setChecked(True)
    show_recon.setChecked(True)
    toggles = QHBoxLayout()
    toggles.addWidget(show_probs)
    toggles.addWidget(show_recon)
    toggles.addWidget(timeline.findings_toggle)  # shown only with a clip's findings
    toggles.addStretch(1)
    below = QWidget()
    rv = QVBoxLayout(below)
    rv.setContentsMargins(0, 0, 0, 0)
    rv.addLayout(toggles)
    exam_panel = ExamPanel()
    side_tabs = QTabWidget()
    side_tabs.addTab(summary, "Clip")
    side_tabs.addTab(exam_panel, "Exam")
    rv.addWidget(side_tabs)
    # Timeline above, summary below, with a handle between them: on a small screen
    # the timeline keeps a readable height and the user chooses the balance.
    timeline.setMinimumHeight(220)
    right_splitter = SideSplitter()
    right_splitter.setChildrenCollapsible(False)
    right_splitter.addWidget(timeline)
    right_splitter.addWidget(below)

    def exam_wants() -> int:
        """The Exam tab, current, with rows: the height below the timeline that shows them all."""
        rows = exam_panel.wanted_height() if side_tabs.currentWidget() is exam_panel else 0
        if not rows:
            return 0
        return rows + below.height() - exam_panel.height()  # the toggles, the tab bar and frame

    right_splitter.wanted_below = exam_wants
    side_tabs.currentChanged.connect(lambda _i: right_splitter.reshare())
    exam_panel.rows_changed.connect(right_splitter.reshare)

    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.addWidget(left)
    splitter.addWidget(right_splitter)
    splitter.setStretchFactor(0, 1)
    splitter.setStretchFactor(1, 1)
    return Views(
        frame_view=frame_view,
        slider=slider,
        play_button=play_button,
        frame_label=frame_label,
        clip_notice=clip_notice,
        timeline=timeline,
        summary=summary,
        overlay_mode=overlay_mode,
        opacity=opacity,
        show_probs=show_probs,
        show_recon=show_recon,
        exam_panel=exam_panel,
        side_tabs=side_tabs,
        right_splitter=right_splitter,
        splitter=splitter,
    )


@dataclass(frozen=True)
class MenuActions:
    """What the menus' entries call."""

    open_dialog: Callable[[], None]
    export: Callable[[], None]
    export_exam: Callable[[], None]
    export_report: Callable[[], None]
    quit: Callable[[], object]
    fit: Callable[[], None]
    cycle_overlay: Callable[[], None]
    timeline_in_seconds: Callable[[bool], None]
    score_again: Callable[[], None]
    cancel: Callable[[], None]
    device_chosen: Callable[[QAction], None]
    about: Callable[[], object]
    model_card: Callable[[], object]


@dataclass(frozen=True, eq=False)
class Menus:
    """The menu entries the window enables, checks or fills later."""

    act_open: QAction
    recent_menu: QMenu
    act_export: QAction
    act_export_exam: QAction
    act_export_report: QAction
    act_seconds: QAction
    act_rescore: QAction
    act_cancel: QAction
    device_group: QActionGroup


def build_menus(window: QMainWindow, on: MenuActions, *, device: str) -> Menus:
    """File, View, Scoring (with the devices, ``device`` checked) and Help, in ``window``'s menu bar."""
    mb = window.menuBar()
    fm = mb.addMenu("&File")
    act_open = fm.addAction("&Open…", on.open_dialog)
    act_open.setShortcut(QKeySequence.StandardKey.Open)
    recent_menu = fm.addMenu("Open &Recent")
    act_export = fm.addAction("&Export clip scores (CSV or JSON)…", on.export)
    act_export.setShortcut(QKeySequence("Ctrl+E"))
    act_export.setEnabled(False)
    act_export_exam = fm.addAction("Export e&xam CSV…", on.export_exam)
    act_export_exam.setShortcut(QKeySequence("Ctrl+Shift+E"))
    act_export_exam.setEnabled(False)
    act_export_report = fm.addAction("Export exam re&port (PDF)…", on.export_report)
    act_export_report.setShortcut(QKeySequence("Ctrl+P"))
    act_export_report.setEnabled(False)
    fm.addSeparator()
    quit_act = fm.addAction("&Quit", on.quit)
    quit_act.setShortcut(QKeySequence.StandardKey.Quit)

    vm = mb.addMenu("&View")
    fit = vm.addAction("&Fit to window", on.fit)
    fit.setShortcut(QKeySequence("F"))
    vm.addAction("Cycle &overlay", on.cycle_overlay).setShortcut(QKeySequence("O"))
    act_seconds = vm.addAction("Timeline in &seconds")
    act_seconds.setCheckable(True)
    act_seconds.setShortcut(QKeySequence("T"))
    act_seconds.toggled.connect(on.timeline_in_seconds)

    sm = mb.addMenu("&Scoring")
    act_rescore = sm.addAction("&Score again", on.score_again)
    act_cancel = sm.addAction("&Cancel scoring", on.cancel)
    act_cancel.setShortcut(QKeySequence(Qt.Key.Key_Escape))
    dm = sm.addMenu("&Device")
    device_group = QActionGroup(window)
    for name, label in DEVICES:
        a = QAction(label, window, checkable=True)
        a.setData(name)
        a.setChecked(name == device)
        device_group.addAction(a)
        dm.addAction(a)
    device_group.triggered.connect(on.device_chosen)

    hm = mb.addMenu("&Help")
    hm.addAction("&About LUS Viewer", on.about)
    hm.addAction("&Model card", on.model_card)
    return Menus(
        act_open=act_open,
        recent_menu=recent_menu,
        act_export=act_export,
        act_export_exam=act_export_exam,
        act_export_report=act_export_report,
        act_seconds=act_seconds,
        act_rescore=act_rescore,
        act_cancel=act_cancel,
        device_group=device_group,
    )


def build_shortcuts(window: QWidget, playback: Playback) -> list[QShortcut]:
    """The keys that move through the clip (the menus' own shortcuts are with their entries)."""
    p = playback
    keys: list[tuple[QKeySequence, Callable[[], None]]] = [
        (QKeySequence(Qt.Key.Key_Right), lambda: p.step(1)),
        (QKeySequence(Qt.Key.Key_Left), lambda: p.step(-1)),
        (QKeySequence("Shift+Right"), lambda: p.step(10)),
        (QKeySequence("Shift+Left"), lambda: p.step(-10)),
        (QKeySequence("."), lambda: p.step(1)),
        (QKeySequence(","), lambda: p.step(-1)),
        (QKeySequence(Qt.Key.Key_Home), lambda: p.jump(0)),
        (QKeySequence(Qt.Key.Key_End), lambda: p.jump(10**12)),
        (QKeySequence(Qt.Key.Key_Space), p.toggle),
        (QKeySequence(Qt.Key.Key_PageDown), lambda: p.jump_to_change(1)),
        (QKeySequence(Qt.Key.Key_PageUp), lambda: p.jump_to_change(-1)),
    ]
    shortcuts = []
    for seq, fn in keys:
        sc = QShortcut(seq, window)
        sc.activated.connect(fn)
        shortcuts.append(sc)
    return shortcuts
