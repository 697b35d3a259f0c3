"""The main window: lays out the views, menus, shortcuts and status bar, and
forwards everything to the :class:`~lusviewer.ui.controller.Controller`.

Its collaborators, each in its own module: :class:`~lusviewer.ui.playback.Playback`
(play, seek, step), :class:`~lusviewer.ui.overlay.OverlayPresenter` (the overlay over
the frame), :class:`~lusviewer.ui.export.Exporter` (the CSV exports and their
questions), :class:`~lusviewer.ui.preferences.Preferences` (what is remembered between
sessions), and the :class:`~lusviewer.ui.status_bar.StatusBar`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QSettings, QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QPaintEvent,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSlider,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lusviewer.io import DICOM_EXTENSIONS, VIDEO_EXTENSIONS, ClipInfo
from lusviewer.report.aggregate import LOW_CONFIDENCE, clip_confidence, low_confidence
from lusviewer.report.exam_report import diagram_cells
from lusviewer.report.zones import choices_for
from lusviewer.ui.controller import Controller
from lusviewer.ui.dialogs import show_about, show_model_card, warning_box
from lusviewer.ui.exam_panel import ExamPanel
from lusviewer.ui.export import Exporter
from lusviewer.ui.frame_view import OVERLAY_MODES, FrameView
from lusviewer.ui.overlay import OverlayPresenter
from lusviewer.ui.playback import Playback
from lusviewer.ui.preferences import Preferences
from lusviewer.ui.status_bar import StatusBar
from lusviewer.ui.summary_panel import SummaryPanel
from lusviewer.ui.timeline import ScoreTimeline

if TYPE_CHECKING:
    from lusviewer.inference import ClipResult

log = logging.getLogger(__name__)

FILE_FILTER = (
    "Clips ("
    + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS + DICOM_EXTENSIONS)
    + ");;Videos ("
    + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
    + ");;DICOM ("
    + " ".join(f"*{e}" for e in DICOM_EXTENSIONS)
    + ");;All files (*)"
)

#: A clip opened while the model loads: its job waits behind the model on the worker.
WAITING_FOR_MODEL = "Waiting for the model to load; scoring starts as soon as it is ready."
#: A window shown but not painted by then loads the model anyway (ms).
LOAD_AFTER_SHOW_MS = 1000


class MainWindow(QMainWindow):
    #: The window has painted once (or was shown and not painted within LOAD_AFTER_SHOW_MS);
    #: the model is loading from then on.
    first_painted = Signal()

    def __init__(self, model_path: str, settings: QSettings | None = None, *, quiet: bool = False) -> None:
        super().__init__()
        self.settings = settings or QSettings()
        self.quiet = quiet  # tests: log dialogs instead of blocking on them
        self.setWindowTitle("LUS Viewer")
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        device = str(self.settings.value("device", "auto"))
        # The model loads once the window has painted (see paintEvent): never a black first paint.
        self.controller = Controller(model_path, device, self, load=False)
        self._frame: np.ndarray | None = None
        self._paint_seen = self._painted = False
        self._build_views()
        self.playback = Playback(self.controller, self.play_button, self)
        self.overlays = OverlayPresenter(self.controller, self.frame_view, self.overlay_mode, self.opacity, self.notify)
        # ask and warn late-bound: what the window answers is what the exports are told
        self.exporter = Exporter(
            self,
            self.controller,
            self.settings,
            ask=lambda title, text: self._ask(title, text),
            warn=lambda title, text: self._warn(title, text),
            notify=self.notify,
        )
        self.prefs = Preferences(self, self.settings)
        self._build_menus()
        self._build_status()
        self._build_shortcuts()
        self._wire()
        self.prefs.restore()

    # ------------------------------------------------------------------ layout
    def _build_views(self) -> None:
        self.frame_view = FrameView()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setEnabled(False)
        self.play_button = QToolButton()
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.frame_label = QLabel("No clip open — File › Open (Ctrl+O) or drop a clip here")
        self.frame_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # wraps instead of widening the window: "... score 3 (p = 0.67), clip unlike the
        # training clips" pushed the window past a 1024 px screen (seen under Xvfb)
        self.frame_label.setWordWrap(True)
        fit = QPushButton("Fit")
        fit.setToolTip("Fit the frame to the window (F)")
        fit.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        fit.clicked.connect(self.frame_view.fit)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(fit)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.frame_view, 1)
        lv.addLayout(controls)
        lv.addWidget(self.frame_label)
        # An incomplete clip (cut short, frames that stop decoding) and the readers' warnings about it.
        self.clip_notice = QLabel("")
        self.clip_notice.setWordWrap(True)
        self.clip_notice.setStyleSheet(
            "color: #6a4a00; background: #fff4d6; border: 1px solid #d9b25c; padding: 3px; font-weight: bold;"
        )
        self.clip_notice.hide()
        self._notices: list[str] = []
        lv.addWidget(self.clip_notice)

        self.timeline = ScoreTimeline()
        self.summary = SummaryPanel()
        self.overlay_mode = QComboBox()
        self.overlay_mode.addItems([m.capitalize() if m != "grad-cam" else "Grad-CAM" for m in OVERLAY_MODES])
        self.overlay_mode.setToolTip("Overlay on the frame (O cycles)")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.show_probs = QCheckBox("Probabilities p0–p3")
        self.show_recon = QCheckBox("Reconstruction error")
        self.show_probs.setChecked(True)
        self.show_recon.setChecked(True)
        ov = QHBoxLayout()
        ov.addWidget(QLabel("Overlay:"))
        ov.addWidget(self.overlay_mode)
        ov.addWidget(QLabel("Opacity:"))
        ov.addWidget(self.opacity, 1)
        toggles = QHBoxLayout()
        toggles.addWidget(self.show_probs)
        toggles.addWidget(self.show_recon)
        toggles.addWidget(self.timeline.findings_toggle)  # shown only with a clip's findings
        toggles.addStretch(1)
        below = QWidget()
        rv = QVBoxLayout(below)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addLayout(toggles)
        rv.addLayout(ov)
        self.exam_panel = ExamPanel()
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.summary, "Clip")
        self.side_tabs.addTab(self.exam_panel, "Exam")
        rv.addWidget(self.side_tabs)
        # Timeline above, summary below, with a handle between them: on a small screen
        # the timeline keeps a readable height and the user chooses the balance.
        self.timeline.setMinimumHeight(220)
        self.right_splitter = QSplitter(Qt.Orientation.Vertical)
        self.right_splitter.setChildrenCollapsible(False)
        self.right_splitter.addWidget(self.timeline)
        self.right_splitter.addWidget(below)
        self.right_splitter.setStretchFactor(0, 3)
        self.right_splitter.setStretchFactor(1, 2)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.right_splitter)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        self.act_open = fm.addAction("&Open…", self.open_dialog)
        self.act_open.setShortcut(QKeySequence.StandardKey.Open)
        self.recent_menu = fm.addMenu("Open &Recent")
        self.act_export = fm.addAction("&Export CSV…", self.exporter.export_dialog)
        self.act_export.setShortcut(QKeySequence("Ctrl+E"))
        self.act_export.setEnabled(False)
        self.act_export_exam = fm.addAction("Export e&xam CSV…", self.exporter.export_exam_dialog)
        self.act_export_exam.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.act_export_exam.setEnabled(False)
        self.act_export_report = fm.addAction("Export exam re&port (PDF)…", self.exporter.export_report_dialog)
        self.act_export_report.setShortcut(QKeySequence("Ctrl+P"))
        self.act_export_report.setEnabled(False)
        fm.addSeparator()
        quit_act = fm.addAction("&Quit", self.close)
        quit_act.setShortcut(QKeySequence.StandardKey.Quit)

        vm = mb.addMenu("&View")
        fit = vm.addAction("&Fit to window", self.frame_view.fit)
        fit.setShortcut(QKeySequence("F"))
        vm.addAction("Cycle &overlay", self.overlays.cycle).setShortcut(QKeySequence("O"))
        self.act_seconds = vm.addAction("Timeline in &seconds")
        self.act_seconds.setCheckable(True)
        self.act_seconds.setShortcut(QKeySequence("T"))
        self.act_seconds.toggled.connect(self.timeline.set_seconds)

        sm = mb.addMenu("&Scoring")
        self.act_rescore = sm.addAction("&Score again", self.controller.start_scoring)
        self.act_cancel = sm.addAction("&Cancel scoring", self.controller.cancel_all)
        self.act_cancel.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        dm = sm.addMenu("&Device")
        self.device_group = QActionGroup(self)
        current = str(self.settings.value("device", "auto"))
        for name, label in (("auto", "Automatic (CUDA when present)"), ("cpu", "CPU"), ("cuda", "CUDA")):
            a = QAction(label, self, checkable=True)
            a.setData(name)
            a.setChecked(name == current)
            self.device_group.addAction(a)
            dm.addAction(a)
        self.device_group.triggered.connect(self._device_chosen)

        hm = mb.addMenu("&Help")
        hm.addAction("&About LUS Viewer", lambda: show_about(self, self.controller.model_status))
        hm.addAction(
            "&Model card",
            lambda: show_model_card(self, self.controller.model_status, self._warn, self.controller.model_warnings),
        )

    def _build_status(self) -> None:
        self.status_bar = StatusBar()
        self.setStatusBar(self.status_bar)
        self.status_bar.cancel_button.clicked.connect(self.controller.cancel_all)
        # the window's names for them (tests and scripts read these)
        self.model_label = self.status_bar.model_label
        self.rate_label = self.status_bar.rate_label
        self.queue_label = self.status_bar.queue_label
        self.cancel_button = self.status_bar.cancel_button

    def _build_shortcuts(self) -> None:
        p = self.playback
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
        self._shortcuts = []
        for seq, fn in keys:
            sc = QShortcut(seq, self)
            sc.activated.connect(fn)
            self._shortcuts.append(sc)

    def _wire(self) -> None:
        c, sb = self.controller, self.status_bar
        c.clip_opened.connect(self._on_clip_opened)
        c.clip_failed.connect(self._on_clip_failed)
        c.frame_changed.connect(self._on_frame)
        c.model_ready.connect(sb.show_model)
        c.model_ready.connect(self._on_model_ready)
        c.model_failed.connect(self._on_model_failed)
        c.scoring_started.connect(self._on_scoring_started)
        c.scores_updated.connect(self._on_scores)
        c.scoring_progress.connect(sb.show_progress)
        c.scoring_finished.connect(self._on_finished)
        c.scoring_failed.connect(self._on_scoring_failed)
        c.scoring_cancelled.connect(self._on_cancelled)
        c.overlay_ready.connect(self.overlays.arrived)
        c.overlay_failed.connect(lambda msg: self.notify(msg, 5000))
        c.exam_changed.connect(self._on_exam_changed)
        c.same_patient = self._same_patient
        c.queue_changed.connect(sb.show_queue)
        c.clip_notice.connect(self._add_notice)
        c.clip_warning.connect(self._on_clip_warning)
        self.exam_panel.open_requested.connect(self.open_clip)
        self.exam_panel.remove_requested.connect(c.remove_from_exam)
        self.exam_panel.clear_requested.connect(self.clear_exam)
        self.exam_panel.export_requested.connect(self.exporter.export_exam_dialog)
        self.exam_panel.clinician_score_changed.connect(c.set_clinician_score)
        self.exam_panel.body_zone_changed.connect(c.set_body_zone)
        self.exam_panel.zones_changed.connect(self._zones_chosen)
        self.slider.valueChanged.connect(self.playback.seek)
        self.play_button.clicked.connect(self.playback.toggle)
        self.timeline.seek_requested.connect(self.playback.seek)
        self.summary.jump_to_worst.connect(self.playback.jump)
        self.overlay_mode.currentIndexChanged.connect(self.overlays.mode_changed)
        self.opacity.valueChanged.connect(lambda v: self.frame_view.set_overlay_opacity(v / 100))
        self.show_probs.toggled.connect(self.timeline.set_probabilities_visible)
        self.show_recon.toggled.connect(self.timeline.set_recon_visible)
        self._redraw = QTimer(self)  # timeline redraws are coalesced: at most ~10 per second
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(100)
        self._redraw.timeout.connect(self._redraw_timeline)
        c.frame_count_changed.connect(self._on_frame_count_changed)

    def _on_frame_count_changed(self, n: int) -> None:
        """Scoring decoded ``n`` frames where the reader said otherwise: the slider and
        the timeline span those (the frame label reads the controller's count)."""
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, n - 1)
        self.timeline.reset(n)
        self.timeline.set_cursor(self.controller.index)

    # ----------------------------------------------------------------- actions
    def recent_files(self) -> list[str]:
        return self.prefs.recent_files()

    def open_dialog(self) -> None:
        recent = self.recent_files()
        start = str(Path(recent[0]).parent) if recent else ""
        paths, _ = QFileDialog.getOpenFileNames(self, "Open clips (several: one exam)", start, FILE_FILTER)
        if paths:
            self.open_clips(paths)

    def open_clip(self, path: str) -> bool:
        """Open one clip, the user's choice. Clips still queued for the exam are dropped,
        after asking, and only once this clip has opened: a file that cannot be opened
        leaves the queue as it was."""
        self.playback.stop()
        queued = self.controller.queued
        if queued and not self._ask(
            "Stop scoring the queued clips?",
            f"{len(queued)} clip{'s are' if len(queued) != 1 else ' is'} still waiting to be scored: "
            f"{', '.join(Path(p).name for p in queued)}.\n\nOpen {Path(path).name} instead and leave "
            f"{'them' if len(queued) != 1 else 'it'} unscored?",
        ):
            return False
        return self.controller.open(path, replace_queue=True)

    def open_clips(self, paths: list[str]) -> None:
        """Open and score several clips in turn (e.g. the zones of one exam)."""
        if len(paths) == 1:
            self.open_clip(paths[0])
            return
        self.playback.stop()
        self.side_tabs.setCurrentWidget(self.exam_panel)
        self.controller.open_many(paths)

    def seek(self, index: int) -> None:
        """Go to frame ``index``; drags are rate-limited to the display rate."""
        self.playback.seek(index)

    def jump(self, index: int) -> None:
        """Stop playing and go to frame ``index`` now."""
        self.playback.jump(index)

    def step(self, delta: int) -> None:
        """Stop playing and move ``delta`` frames."""
        self.playback.step(delta)

    def notify(self, text: str, ms: int = 5000) -> None:
        """A passing message in the status bar (the model and progress stay visible)."""
        self.status_bar.notify(text, ms)

    @property
    def overlay(self) -> str:
        """The overlay mode chosen, one of :data:`~lusviewer.ui.frame_view.OVERLAY_MODES`."""
        return self.overlays.mode

    @property
    def _overlay_cache(self) -> tuple[int, np.ndarray | None, np.ndarray | None] | None:
        """The last overlay that came back (tests read it)."""
        return self.overlays.cache

    def _device_chosen(self, action: QAction) -> None:
        self.status_bar.show_model_loading()
        self.controller.set_device(str(action.data()))
        self.settings.setValue("device", str(action.data()))

    def request_export(self, path: str) -> bool:
        """Export now, or, while scoring runs, offer to export when it finishes."""
        return self.exporter.request_export(path)

    def export_to(self, path: str, *, overwrite: bool | None = None) -> bool:
        """The clip's CSV report; ``overwrite`` None: ask when the files exist."""
        return self.exporter.export_to(path, overwrite=overwrite)

    def export_exam_to(self, path: str, *, overwrite: bool | None = None) -> bool:
        """The exam's CSV; asks when clips are still to be scored, and (``overwrite`` None) before replacing."""
        return self.exporter.export_exam_to(path, overwrite=overwrite)

    def clear_exam(self) -> None:
        c = self.controller
        if len(c.exam) and (
            not c.exam_unsaved or self._ask("Clear the exam?", f"{c.exam.summary()}. It has not been exported.")
        ):
            c.clear_exam()

    def _same_patient(self, reason: str) -> bool:
        """A scored clip seems another patient's: add it to this exam (yes), or start a new exam with it."""
        c = self.controller
        drop = " The current exam has not been exported and is dropped." if c.exam_unsaved else ""
        return self._ask(
            "Another patient?",
            f"{reason}.\n\nAdd it to this exam anyway? Its LUS score would sum two patients.\n\n"
            f"No: start a new exam with this clip.{drop}",
        )

    def _zones_chosen(self, zones: int | None) -> None:
        self.controller.set_exam_zones(zones)
        self.settings.setValue("exam_zones", zones or 0)

    def _on_exam_changed(self) -> None:
        c = self.controller
        exam = c.exam
        self.exam_panel.set_exam(
            exam.entries,
            exam.summary(),
            c.info.path if c.info else None,
            c.clinician_scores,
            zones={e.clip: z for e in exam.entries if (z := exam.body_zone(e.clip))},
            zone_choices=choices_for(exam.zones),
            cells=diagram_cells(exam),
            zone_names={z.code: z.name for z in exam.scheme},
        )
        warn = "⚠ " if exam.incomplete or exam.n_unfamiliar or exam.not_scored else ""
        title = f"Exam · {warn}LUS {exam.total} of {exam.maximum}" if len(exam) else "Exam"
        self.side_tabs.setTabText(self.side_tabs.indexOf(self.exam_panel), title)
        self.act_export_exam.setEnabled(bool(len(exam)))
        self.act_export_report.setEnabled(bool(len(exam)))

    # ------------------------------------------------------------- dialogs
    def _warn(self, title: str, text: str) -> None:
        """One warning dialog: wrapped, long paths elided in the middle, the whole text in its details."""
        log.warning("%s: %s", title, text)
        if not self.quiet:
            warning_box(self, title, text).exec()

    def _ask(self, title: str, text: str) -> bool:
        if self.quiet:
            return True
        return QMessageBox.question(self, title, text) == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------- controller slots
    def _on_clip_opened(self, info: ClipInfo) -> None:
        log.info(
            "opened %s: %d frames, %.1f fps, %dx%d", info.path, info.frame_count, info.fps, info.width, info.height
        )
        self.setWindowTitle(f"{Path(info.path).name} — LUS Viewer")
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, info.frame_count - 1)
            self.slider.setValue(0)
        self.slider.setEnabled(True)
        self.timeline.set_fps(info.fps)
        self.timeline.reset(info.frame_count)
        self.summary.clear("No model" if self.controller.model_error else "Scoring…")
        self._notices = []
        self.clip_notice.hide()
        self.overlays.reset()
        self.prefs.add_recent(info.path)
        self.act_export.setEnabled(True)

    def _on_clip_failed(self, path: str, reason: str) -> None:
        self._warn("Cannot open clip", f"{path}\n\n{reason}")

    def _on_frame(self, index: int, frame: np.ndarray) -> None:
        self._frame = frame
        self.frame_view.set_frame(frame)
        with QSignalBlocker(self.slider):
            self.slider.setValue(index)
        self.timeline.set_cursor(index)
        self._update_frame_label()
        self.overlays.frame_shown(frame)

    def _update_frame_label(self) -> None:
        c = self.controller
        info, index = c.info, c.index
        if info is None:
            return
        s = int(c.scores[index]) if index < len(c.scores) else -1
        if s < 0:
            score = "not scored (scoring failed)" if c.failure else "not scored yet"
        else:
            p = float(c.probs[index, s])
            score = f"score {s} (p = {p:.2f}{', low confidence' if p < LOW_CONFIDENCE else ''})"
            if c.result is not None and c.result.unfamiliar:
                score += ", clip unlike the training clips"
        self.frame_label.setText(
            f"Frame {index} (0–{info.frame_count - 1})   ·   {index / info.fps:.2f} s   ·   "
            f"{info.fps:.1f} fps   ·   {info.width}×{info.height}   ·   {score}"
        )

    def _on_model_failed(self, message: str) -> None:
        self.status_bar.show_no_model()
        if self.controller.info is not None and self.controller.result is None:
            self.summary.clear("No model")
        self._warn("Cannot load the model", f"The viewer shows clips but cannot score them.\n\n{message}")

    def _add_notice(self, text: str) -> None:
        """A notice about the open clip, kept until another clip opens."""
        if text.startswith("Incomplete clip:"):  # the one after scoring replaces the one at opening
            self._notices = [n for n in self._notices if not n.startswith("Incomplete clip:")]
            self._notices.insert(0, text)
        elif text not in self._notices:
            self._notices.append(text)
        self.clip_notice.setText("⚠ " + "\n⚠ ".join(self._notices))
        self.clip_notice.show()

    def _on_clip_warning(self, message: str) -> None:
        """The clip reader's warning about the open clip: in the notice and, passing, in the status bar."""
        self._add_notice(f"Reader: {message}")
        self.notify(f"⚠ {message}", 10000)

    def _on_scores(self, start: int, n_done: int) -> None:
        if not self._redraw.isActive():
            self._redraw.start()

    def _redraw_timeline(self) -> None:
        c = self.controller
        weak = low_confidence(c.probs[: c.n_scored])  # once per redraw, for the timeline and the summary
        self.timeline.update_scores(c.scores, c.probs, c.recon_error, c.n_scored, weak)
        if c.running and c.n_scored:
            counts = np.bincount(c.scores[: c.n_scored], minlength=4)[:4]
            self.summary.set_progress(counts, c.n_scored, c.frame_count)
            self.summary.set_confidence(weak)
        self._update_frame_label()

    def _on_finished(self, result: ClipResult) -> None:
        self._redraw.stop()
        self._redraw_timeline()
        s = result.summary
        log.info(
            "scored %s: %d frames in %.1f s on %s, clip score %d (%s rule)%s",
            result.clip,
            len(result.scores),
            result.elapsed_s,
            result.device,
            s.clip_score,
            s.rule,
            "; UNLIKE the training clips (scores unreliable)" if result.unfamiliar else "",
        )
        self.summary.set_summary(
            s.clip_score, s.rule, s.counts, s.worst_frame, len(result.scores), result.info.fps, clip_confidence(result)
        )
        self.summary.set_confidence(low_confidence(result.probs))
        self.summary.set_familiarity(result.familiarity_warning)
        self.summary.set_findings(
            result.finding_means, dict(zip(result.finding_names, result.finding_auc, strict=True))
        )
        self.timeline.set_findings(result.finding_names, result.findings)
        self.timeline.set_unreliable(bool(result.unfamiliar))
        self.status_bar.scoring_over(f"Scored {len(result.scores)} frames in {result.elapsed_s:.1f} s")
        if self._frame is not None:
            self._on_frame(self.controller.index, self._frame)

    def _on_scoring_started(self, total: int) -> None:
        self.status_bar.scoring_started(total)
        self.timeline.set_partial(None)  # scoring again after a failure or a cancel
        self.timeline.set_findings((), None)  # the next result's, when it is in
        loading = self.controller.model_loading  # the job waits behind the model on the worker
        if self.controller.result is None:
            self.summary.clear("Waiting…" if loading else "Scoring…")
        if loading:
            self.status_bar.rate_label.setText("Waiting for the model…")
            self.summary.rule.setText(WAITING_FOR_MODEL)

    def _on_model_ready(self) -> None:
        c = self.controller
        if c.running and not c.n_scored and self.summary.rule.text() == WAITING_FOR_MODEL:
            self.status_bar.rate_label.setText("Scoring…")
            self.summary.clear("Scoring…")

    def _on_scoring_failed(self, message: str) -> None:
        """No stale progress: the summary says it failed and why, the frames scored before
        the failure stay on the timeline marked partial (greyed, the frames never scored shaded)."""
        c = self.controller
        self._redraw.stop()
        self.exporter.scoring_stopped(f"scoring failed: {message}")
        if c.model_error is not None:  # the model dialog has said it; no second dialog
            self.status_bar.scoring_over("No model: not scored")
            self.summary.clear("No model")
            return
        self._redraw_timeline()
        n, total = c.n_scored, c.frame_count
        self.status_bar.scoring_over(f"Scoring failed after {n} of {total} frames")
        self.summary.set_failed(message, n, total)
        if n:
            self.timeline.set_partial(n, total, "scoring failed")
        self._warn("Scoring failed", f"Scoring stopped after {n} of {total} frames; no clip score.\n\n{message}")

    def _on_cancelled(self) -> None:
        c = self.controller
        self._redraw.stop()
        self.status_bar.scoring_over("Scoring cancelled")
        self.exporter.scoring_stopped("scoring was cancelled")
        if c.result is None:
            self.summary.clear("Cancelled")
            if c.n_scored:
                self._redraw_timeline()
                self.timeline.set_partial(c.n_scored, c.frame_count, "cancelled")

    # ------------------------------------------------------------ drag & drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_clips(urls)
            event.acceptProposedAction()

    # -------------------------------------------------------------- first paint
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        # Shown but not painted (minimised, or a platform that paints late): carry on all the same.
        QTimer.singleShot(LOAD_AFTER_SHOW_MS, self, self._after_first_paint)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        # The window's first paint is under way (its children paint in the same pass, then it
        # is flushed); what would hold it up waits for the next turn of the event loop.
        if not self._paint_seen:
            self._paint_seen = True
            QTimer.singleShot(0, self, self._after_first_paint)

    def _after_first_paint(self) -> None:
        """Now torch and the model load, on the worker: importing torch holds the GIL for
        long stretches and, started before, kept the window black for 0.5-1 s."""
        if self._painted:
            return
        self._painted = True
        self.controller.load_model()
        self.first_painted.emit()

    # ------------------------------------------------------------------ close
    def closeEvent(self, event: QCloseEvent) -> None:
        c = self.controller
        if c.exam_unsaved and not self._ask(
            "Quit without exporting the exam?", f"{c.exam.summary()}. It has not been exported."
        ):
            event.ignore()
            return
        self.playback.stop()
        self._redraw.stop()
        self.prefs.save()
        self.controller.shutdown()
        super().closeEvent(event)
