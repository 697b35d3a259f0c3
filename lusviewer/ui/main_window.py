"""The main window: lays out the views, menus, shortcuts and status bar, and
forwards everything to the :class:`~lusviewer.ui.controller.Controller`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QSignalBlocker, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QStyle,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lusviewer import __version__
from lusviewer.io import DICOM_EXTENSIONS, VIDEO_EXTENSIONS, ClipInfo
from lusviewer.report.aggregate import LOW_CONFIDENCE, low_confidence
from lusviewer.ui.controller import Controller
from lusviewer.ui.views import OVERLAY_MODES, ExamPanel, FrameView, ScoreTimeline, SummaryPanel
from lusviewer.ui.worker import ModelStatus

log = logging.getLogger(__name__)

DISCLAIMER = "Research use only — not a medical device"
MAX_RECENT = 10
FILE_FILTER = (
    "Clips ("
    + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS + DICOM_EXTENSIONS)
    + ");;Videos ("
    + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
    + ");;DICOM ("
    + " ".join(f"*{e}" for e in DICOM_EXTENSIONS)
    + ");;All files (*)"
)


class MainWindow(QMainWindow):
    def __init__(self, model_path: str, settings: QSettings | None = None, *, quiet: bool = False) -> None:
        super().__init__()
        self.settings = settings or QSettings()
        self.quiet = quiet  # tests: log dialogs instead of blocking on them
        self.setWindowTitle("LUS Viewer")
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        device = str(self.settings.value("device", "auto"))
        self.controller = Controller(model_path, device, self)
        self._last_seek = 0.0
        self._pending_seek: int | None = None
        self._playing = False
        self._play_t0 = 0.0
        self._play_i0 = 0
        self._frame: np.ndarray | None = None
        self._overlay_cache: tuple[int, np.ndarray | None, np.ndarray | None] | None = None
        self._build_views()
        self._build_menus()
        self._build_status()
        self._build_shortcuts()
        self._wire()
        self._restore()

    # ------------------------------------------------------------------ layout
    def _build_views(self) -> None:
        self.frame_view = FrameView()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setEnabled(False)
        self.play_button = QToolButton()
        self._play_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
        self._pause_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause)
        self.play_button.setIcon(self._play_icon)
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.frame_label = QLabel("No clip open — File › Open (Ctrl+O) or drop a clip here")
        self.frame_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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
        self.act_export = fm.addAction("&Export CSV…", self.export_dialog)
        self.act_export.setShortcut(QKeySequence("Ctrl+E"))
        self.act_export.setEnabled(False)
        self.act_export_exam = fm.addAction("Export e&xam CSV…", self.export_exam_dialog)
        self.act_export_exam.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.act_export_exam.setEnabled(False)
        fm.addSeparator()
        quit_act = fm.addAction("&Quit", self.close)
        quit_act.setShortcut(QKeySequence.StandardKey.Quit)

        vm = mb.addMenu("&View")
        fit = vm.addAction("&Fit to window", self.frame_view.fit)
        fit.setShortcut(QKeySequence("F"))
        vm.addAction("Cycle &overlay", self.cycle_overlay).setShortcut(QKeySequence("O"))

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
        hm.addAction("&About LUS Viewer", self.show_about)
        hm.addAction("&Model card", self.show_model_card)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.model_label = QLabel("Loading model…")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setVisible(False)
        self.rate_label = QLabel("")
        self.queue_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel scoring (Esc)")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.controller.cancel_all)
        # Messages go to their own label: QStatusBar.showMessage would hide the model,
        # the progress and the queue while they show.
        self.message_label = QLabel("")
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(self.message_label.clear)
        disclaimer = QLabel(DISCLAIMER)
        disclaimer.setStyleSheet("color: #a00; font-weight: bold;")
        sb.addWidget(self.model_label)
        sb.addWidget(self.progress)
        sb.addWidget(self.rate_label)
        sb.addWidget(self.cancel_button)
        sb.addWidget(self.queue_label)
        sb.addWidget(self.message_label, 1)
        sb.addPermanentWidget(disclaimer)

    def _build_shortcuts(self) -> None:
        keys: list[tuple[QKeySequence | Qt.Key | str, object]] = [
            (QKeySequence(Qt.Key.Key_Right), lambda: self.step(1)),
            (QKeySequence(Qt.Key.Key_Left), lambda: self.step(-1)),
            (QKeySequence("Shift+Right"), lambda: self.step(10)),
            (QKeySequence("Shift+Left"), lambda: self.step(-10)),
            (QKeySequence("."), lambda: self.step(1)),
            (QKeySequence(","), lambda: self.step(-1)),
            (QKeySequence(Qt.Key.Key_Home), lambda: self.jump(0)),
            (QKeySequence(Qt.Key.Key_End), lambda: self.jump(10**12)),
            (QKeySequence(Qt.Key.Key_Space), self.toggle_play),
            (QKeySequence(Qt.Key.Key_PageDown), lambda: self.jump_to_change(1)),
            (QKeySequence(Qt.Key.Key_PageUp), lambda: self.jump_to_change(-1)),
        ]
        self._shortcuts = []
        for seq, fn in keys:
            sc = QShortcut(seq, self)
            sc.activated.connect(fn)
            self._shortcuts.append(sc)

    def _wire(self) -> None:
        c = self.controller
        c.clip_opened.connect(self._on_clip_opened)
        c.clip_failed.connect(self._on_clip_failed)
        c.frame_changed.connect(self._on_frame)
        c.model_ready.connect(self._on_model_ready)
        c.model_failed.connect(self._on_model_failed)
        c.scoring_started.connect(self._on_scoring_started)
        c.scores_updated.connect(self._on_scores)
        c.scoring_progress.connect(self._on_progress)
        c.scoring_finished.connect(self._on_finished)
        c.scoring_failed.connect(self._on_scoring_failed)
        c.scoring_cancelled.connect(self._on_cancelled)
        c.overlay_ready.connect(self._on_overlay)
        c.overlay_failed.connect(lambda msg: self.notify(msg, 5000))
        c.exam_changed.connect(self._on_exam_changed)
        c.queue_changed.connect(self._on_queue_changed)
        self.exam_panel.open_requested.connect(self.open_clip)
        self.exam_panel.remove_requested.connect(c.remove_from_exam)
        self.exam_panel.clear_requested.connect(self.clear_exam)
        self.exam_panel.export_requested.connect(self.export_exam_dialog)
        self.exam_panel.clinician_score_changed.connect(c.set_clinician_score)
        self.exam_panel.zones_changed.connect(self._zones_chosen)
        self.slider.valueChanged.connect(self.seek)
        self.play_button.clicked.connect(self.toggle_play)
        self.timeline.seek_requested.connect(self.seek)
        self.summary.jump_to_worst.connect(self.jump)
        self.overlay_mode.currentIndexChanged.connect(self._overlay_changed)
        self.opacity.valueChanged.connect(lambda v: self.frame_view.set_overlay_opacity(v / 100))
        self.show_probs.toggled.connect(self.timeline.set_probabilities_visible)
        self.show_recon.toggled.connect(self.timeline.set_recon_visible)
        self.play_timer = QTimer(self)
        self.play_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.play_timer.timeout.connect(self._play_tick)
        self._redraw = QTimer(self)  # timeline redraws are coalesced: at most ~10 per second
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(100)
        self._redraw.timeout.connect(self._redraw_timeline)
        self._seek_timer = QTimer(self)  # rate-limit drag seeks to the display rate
        self._seek_timer.setSingleShot(True)
        self._seek_timer.setInterval(15)
        self._seek_timer.timeout.connect(self._flush_seek)
        c.frame_count_changed.connect(self._on_frame_count_changed)

    def _on_frame_count_changed(self, n: int) -> None:
        """Scoring decoded ``n`` frames where the reader said otherwise: the slider and
        the timeline span those (the frame label reads the controller's count)."""
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, n - 1)
        self.timeline.reset(n)
        self.timeline.set_cursor(self.controller.index)

    # ---------------------------------------------------------------- settings
    def _restore(self) -> None:
        s = self.settings
        geom = s.value("geometry")
        if geom is not None:
            self.restoreGeometry(geom)  # type: ignore[arg-type]
        self._fit_to_screen()
        split = s.value("splitter")
        if split is not None:
            self.splitter.restoreState(split)  # type: ignore[arg-type]
        split = s.value("right_splitter")
        if split is not None:
            self.right_splitter.restoreState(split)  # type: ignore[arg-type]
        mode = int(s.value("overlay_mode", 0))  # type: ignore[arg-type]
        self.overlay_mode.setCurrentIndex(mode if 0 <= mode < len(OVERLAY_MODES) else 0)
        self.opacity.setValue(int(s.value("overlay_opacity", 50)))  # type: ignore[arg-type]
        self.show_probs.setChecked(str(s.value("show_probabilities", "true")).lower() == "true")
        self.show_recon.setChecked(str(s.value("show_recon_error", "true")).lower() == "true")
        zones = int(s.value("exam_zones", 0) or 0)  # type: ignore[call-overload]
        if zones in (6, 14):
            self.controller.set_exam_zones(zones)
            self.exam_panel.set_zones(zones)
        self._refresh_recent()

    def _fit_to_screen(self) -> None:
        """Keep the window on the screen it opens on: a layout saved on a larger screen
        would otherwise put the status bar (and its disclaimer) out of sight."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        g = self.geometry()
        if avail.contains(g):
            return
        w, h = min(g.width(), avail.width()), min(g.height(), avail.height())
        self.resize(w, h)
        x = min(max(g.x(), avail.x()), avail.right() - w + 1)
        y = min(max(g.y(), avail.y()), avail.bottom() - h + 1)
        self.move(x, y)

    def _save(self) -> None:
        s = self.settings
        s.setValue("geometry", self.saveGeometry())
        s.setValue("splitter", self.splitter.saveState())
        s.setValue("right_splitter", self.right_splitter.saveState())
        s.setValue("overlay_mode", self.overlay_mode.currentIndex())
        s.setValue("overlay_opacity", self.opacity.value())
        s.setValue("show_probabilities", "true" if self.show_probs.isChecked() else "false")
        s.setValue("show_recon_error", "true" if self.show_recon.isChecked() else "false")
        s.setValue("device", self.controller.device)
        s.sync()

    def recent_files(self) -> list[str]:
        v = self.settings.value("recent_files", [])
        if isinstance(v, str):
            return [v]
        return [str(x) for x in (v or [])]  # type: ignore[union-attr]

    def _add_recent(self, path: str) -> None:
        items = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent_files", items[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        for p in files:
            self.recent_menu.addAction(p, lambda p=p: self.open_clip(p))
        self.recent_menu.setEnabled(bool(files))

    # ----------------------------------------------------------------- actions
    def open_dialog(self) -> None:
        start = str(Path(self.recent_files()[0]).parent) if self.recent_files() else ""
        paths, _ = QFileDialog.getOpenFileNames(self, "Open clips (several: one exam)", start, FILE_FILTER)
        if paths:
            self.open_clips(paths)

    def open_clip(self, path: str) -> bool:
        """Open one clip, the user's choice. Clips still queued for the exam are dropped,
        after asking, and only once this clip has opened: a file that cannot be opened
        leaves the queue as it was."""
        self.stop_play()
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
        self.stop_play()
        self.side_tabs.setCurrentWidget(self.exam_panel)
        self.controller.open_many(paths)

    def _on_queue_changed(self, remaining: int) -> None:
        self.queue_label.setText(f"{remaining} more clip{'s' if remaining != 1 else ''} queued" if remaining else "")

    def seek(self, index: int) -> None:
        # Rate-limit: at most one decode per display refresh while dragging.
        self._pending_seek = int(index)
        if not self._seek_timer.isActive():
            self._flush_seek()
            self._seek_timer.start()

    def _flush_seek(self) -> None:
        if self._pending_seek is not None:
            i, self._pending_seek = self._pending_seek, None
            self.controller.seek(i)

    def jump(self, index: int) -> None:
        self.stop_play()
        self._pending_seek = None
        self.controller.seek(index)

    def step(self, delta: int) -> None:
        self.stop_play()
        self._pending_seek = None
        self.controller.step(delta)

    def jump_to_change(self, direction: int) -> None:
        """The next (``direction`` 1) or previous (-1) frame where the score changes."""
        c = self.controller
        n = c.n_scored
        if n < 2:
            return
        changes = np.flatnonzero(np.diff(c.scores[:n])) + 1  # first frames of new runs
        if direction > 0:
            later = changes[changes > c.index]
            target = int(later[0]) if later.size else n - 1
        else:
            earlier = changes[changes < c.index]
            target = int(earlier[-1]) if earlier.size else 0
        self.jump(target)

    def notify(self, text: str, ms: int = 5000) -> None:
        """A passing message in the status bar (the model and progress stay visible)."""
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        self._message_timer.start(ms)

    def toggle_play(self) -> None:
        if self._playing:
            self.stop_play()
        elif self.controller.info is not None:
            info = self.controller.info
            if self.controller.index >= info.frame_count - 1:
                self.controller.seek(0)
            self._playing = True
            self._play_t0 = time.perf_counter()
            self._play_i0 = self.controller.index
            self.play_timer.start(max(5, int(500 / max(info.fps, 1))))
            self.play_button.setIcon(self._pause_icon)

    def stop_play(self) -> None:
        self._playing = False
        self.play_timer.stop()
        self.play_button.setIcon(self._play_icon)

    def _play_tick(self) -> None:
        info = self.controller.info
        if info is None:
            self.stop_play()
            return
        # The frame due now at the clip's own rate: late ticks skip frames, never lag.
        due = self._play_i0 + int((time.perf_counter() - self._play_t0) * info.fps)
        if due >= info.frame_count:
            self.controller.seek(info.frame_count - 1)
            self.stop_play()
        elif due != self.controller.index:
            self.controller.seek(due)

    def cycle_overlay(self) -> None:
        self.overlay_mode.setCurrentIndex((self.overlay_mode.currentIndex() + 1) % len(OVERLAY_MODES))

    @property
    def overlay(self) -> str:
        return OVERLAY_MODES[self.overlay_mode.currentIndex()]

    def _device_chosen(self, action: QAction) -> None:
        self.model_label.setText("Loading model…")
        self.controller.set_device(str(action.data()))
        self.settings.setValue("device", str(action.data()))

    def export_dialog(self) -> None:
        c = self.controller
        if c.info is None:
            return
        path = self._save_path("Export CSV report", Path(c.info.path).stem + "_report.csv", Path(c.info.path).parent)
        if path:
            self.request_export(path)

    def _save_path(self, title: str, name: str, clip_folder: Path) -> str:
        """A CSV path from the save dialog ('' when cancelled); overwriting is asked later.
        It opens in the folder of the last export (reports kept together, not among the
        clips), or the clip's folder the first time."""
        last = str(self.settings.value("export_dir", ""))
        folder = Path(last) if last and Path(last).is_dir() else clip_folder
        path, _ = QFileDialog.getSaveFileName(
            self, title, str(folder / name), "CSV (*.csv)", options=QFileDialog.Option.DontConfirmOverwrite
        )
        if path:
            self.settings.setValue("export_dir", str(Path(path).parent))
        return path

    def request_export(self, path: str) -> bool:
        """Export now, or, while scoring runs, offer to export when it finishes."""
        c = self.controller
        if c.result is not None:
            return self.export_to(path)
        if c.running:
            if self._ask(
                "Scoring has not finished",
                f"{Path(c.info.path).name if c.info else 'The clip'} is still being scored "
                f"({c.n_scored} of {len(c.scores)} frames). Export when it finishes?",
            ):
                c.scoring_finished.connect(lambda _r: self.export_to(path), Qt.ConnectionType.SingleShotConnection)
                self.notify("The report will be written when scoring finishes", 8000)
            return False
        self._warn("Nothing to export", "This clip has not been scored (scoring was cancelled or failed).")
        return False

    def export_to(self, path: str, *, overwrite: bool | None = None) -> bool:
        from lusviewer.report import clips_path_for

        existing = [p for p in (Path(path), clips_path_for(path)) if p.exists()]
        if existing and not (
            overwrite
            if overwrite is not None
            else self._ask("Overwrite?", "Replace " + " and ".join(p.name for p in existing) + "?")
        ):
            return False
        try:
            frames, clips = self.controller.export(path)
        except (OSError, RuntimeError) as exc:
            self._warn("Export failed", f"{path}: {exc}")
            return False
        self.notify(f"Wrote {frames} and {clips.name}", 8000)
        return True

    def export_exam_dialog(self) -> None:
        exam = self.controller.exam
        if not len(exam):
            return
        path = self._save_path("Export exam CSV", "exam.csv", Path(exam.entries[0].clip).parent)
        if path:
            self.export_exam_to(path)

    def export_exam_to(self, path: str, *, overwrite: bool | None = None) -> bool:
        c = self.controller
        pending = c.queued + ([c.info.path] if c.running and c.info is not None and c.info.path not in c.exam else [])
        if pending and not self._ask(
            "The exam is not complete",
            f"{len(pending)} clip{'s are' if len(pending) != 1 else ' is'} still to be scored "
            f"({', '.join(Path(p).name for p in pending)}); the exam holds {len(c.exam)} zones. "
            "Export the zones scored so far?",
        ):
            return False
        if Path(path).exists() and not (
            overwrite if overwrite is not None else self._ask("Overwrite?", f"Replace {Path(path).name}?")
        ):
            return False
        try:
            out = self.controller.export_exam(path)
        except (OSError, ValueError) as exc:
            self._warn("Export failed", f"{path}: {exc}")
            return False
        self.notify(f"Wrote {out} ({self.controller.exam.summary()})", 8000)
        return True

    def clear_exam(self) -> None:
        c = self.controller
        if len(c.exam) and (
            not c.exam_unsaved or self._ask("Clear the exam?", f"{c.exam.summary()}. It has not been exported.")
        ):
            c.clear_exam()

    def _zones_chosen(self, zones: int | None) -> None:
        self.controller.set_exam_zones(zones)
        self.settings.setValue("exam_zones", zones or 0)

    def _on_exam_changed(self) -> None:
        c = self.controller
        exam = c.exam
        self.exam_panel.set_exam(exam.entries, exam.summary(), c.info.path if c.info else None, c.clinician_scores)
        warn = "⚠ " if exam.n_unfamiliar or exam.not_scored or exam.missing_zones else ""
        title = f"Exam · {warn}LUS {exam.total} of {exam.maximum}" if len(exam) else "Exam"
        self.side_tabs.setTabText(self.side_tabs.indexOf(self.exam_panel), title)
        self.act_export_exam.setEnabled(bool(len(exam)))

    # ------------------------------------------------------------- dialogs
    def _warn(self, title: str, text: str) -> None:
        log.warning("%s: %s", title, text)
        if not self.quiet:
            QMessageBox.warning(self, title, text)

    def _ask(self, title: str, text: str) -> bool:
        if self.quiet:
            return True
        return QMessageBox.question(self, title, text) == QMessageBox.StandardButton.Yes

    def show_about(self) -> None:
        st = self.controller.model_status
        model = "no model loaded"
        if st is not None:
            tr = st.card.get("training", {})
            data = tr.get("data", "?") if isinstance(tr, dict) else "?"
            lic = tr.get("data_licence", "?") if isinstance(tr, dict) else "?"
            model = f"{st.name} on {st.device}<br>Trained on: {data} ({lic})"
        QMessageBox.about(
            self,
            "About LUS Viewer",
            f"<b>LUS Viewer</b> {__version__}<br>Lung-ultrasound severity scoring (0–3, ICLUS / Soldati).<br>"
            f"<br><b>{DISCLAIMER}.</b> Scores must not be used to diagnose, treat or triage patients.<br>"
            f"<br>Model: {model}",
        )

    def show_model_card(self) -> None:
        st = self.controller.model_status
        if st is None:
            self._warn("Model card", "No model is loaded.")
            return
        box = QMessageBox(self)
        box.setWindowTitle(f"Model card — {st.name}")
        box.setText(f"{st.name}\n{st.card_path}\n\n{DISCLAIMER}.")
        box.setDetailedText(json.dumps(st.card, indent=2))
        box.exec()

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
        self.timeline.reset(info.frame_count)
        self.summary.clear("No model" if self.controller.model_error else "Scoring…")
        self.frame_view.clear_overlay()
        self._overlay_cache = None
        self._add_recent(info.path)
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
        self._refresh_overlay()

    def _update_frame_label(self) -> None:
        c = self.controller
        info, index = c.info, c.index
        if info is None:
            return
        s = int(c.scores[index]) if index < len(c.scores) else -1
        if s < 0:
            score = "not scored yet"
        else:
            p = float(c.probs[index, s])
            score = f"score {s} (p = {p:.2f}{', low confidence' if p < LOW_CONFIDENCE else ''})"
            if c.result is not None and c.result.unfamiliar:  # type: ignore[attr-defined]
                score += ", clip unlike the training clips"
        self.frame_label.setText(
            f"Frame {index} (0–{info.frame_count - 1})   ·   {index / info.fps:.2f} s   ·   "
            f"{info.fps:.1f} fps   ·   {info.width}×{info.height}   ·   {score}"
        )

    def _on_model_ready(self, st: ModelStatus) -> None:
        self.model_label.setText(f"Model: {st.name} · {st.device}")

    def _on_model_failed(self, message: str) -> None:
        self.model_label.setText("No model loaded")
        self._warn("Cannot load the model", message)

    def _on_scoring_started(self, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.rate_label.setText("Scoring…")

    def _on_scores(self, start: int, n_done: int) -> None:
        if not self._redraw.isActive():
            self._redraw.start()

    def _redraw_timeline(self) -> None:
        c = self.controller
        weak = low_confidence(c.probs[: c.n_scored])  # once per redraw, for the timeline and the summary
        self.timeline.update_scores(c.scores, c.probs, c.recon_error, c.n_scored, weak)
        if c.result is None and c.n_scored:
            counts = np.bincount(c.scores[: c.n_scored], minlength=4)[:4]
            self.summary.set_progress(counts, c.n_scored, len(c.scores))
            self.summary.set_confidence(weak)
        self._update_frame_label()

    def _on_progress(self, done: int, total: int, fps: float) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        eta = (total - done) / fps if fps > 0 else 0.0
        self.rate_label.setText(f"{done}/{total} frames · {fps:.1f} frames/s · {eta:.0f} s left")

    def _scoring_over(self, text: str) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.rate_label.setText(text)

    def _on_finished(self, result: object) -> None:
        from lusviewer.inference import ClipResult

        assert isinstance(result, ClipResult)
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
        self.summary.set_summary(s.clip_score, s.rule, s.counts, s.worst_frame, len(result.scores), result.info.fps)
        self.summary.set_confidence(low_confidence(result.probs))
        self.summary.set_familiarity(result.familiarity_warning)
        self.timeline.set_unreliable(bool(result.unfamiliar))
        self._scoring_over(f"Scored {len(result.scores)} frames in {result.elapsed_s:.1f} s")
        if self._frame is not None:
            self._on_frame(self.controller.index, self._frame)

    def _on_scoring_failed(self, message: str) -> None:
        self._scoring_over("Scoring failed")
        self.summary.clear("—")
        self._warn("Scoring failed", message)

    def _on_cancelled(self) -> None:
        self._scoring_over("Scoring cancelled")
        if self.controller.result is None:
            self.summary.clear("Cancelled")

    # ---------------------------------------------------------------- overlay
    def _overlay_changed(self, _i: int) -> None:
        self.frame_view.clear_overlay()
        if self._overlay_cache is not None and self.overlay == "grad-cam" and self._overlay_cache[2] is None:
            self._overlay_cache = None  # the cached frame has no Grad-CAM yet
        self._refresh_overlay()

    def _refresh_overlay(self) -> None:
        mode = self.overlay
        if mode == "off" or self.controller.reader is None:
            self.frame_view.clear_overlay()
            return
        cached = self._overlay_cache
        if cached is not None and cached[0] == self.controller.index:
            self._draw_overlay(*cached)
            return
        # Another frame's map must not stay over this frame: hide it until this one's arrives.
        self.frame_view.clear_overlay()
        if self.controller.model_status is not None:
            self.controller.request_overlay(want_cam=mode == "grad-cam")

    def _on_overlay(self, index: int, rec: object, cam: object) -> None:
        self._overlay_cache = (index, rec, cam)  # type: ignore[assignment]
        if index == self.controller.index:
            self._draw_overlay(index, rec, cam)  # type: ignore[arg-type]

    def _draw_overlay(self, index: int, rec: np.ndarray | None, cam: np.ndarray | None) -> None:
        mode = self.overlay
        if rec is None or self._frame is None:
            self.frame_view.clear_overlay()
            self.notify("This model has no autoencoder: no reconstruction overlay", 5000)
        elif mode == "reconstruction":
            self.frame_view.show_reconstruction(rec)
        elif mode == "error":
            self.frame_view.show_error(self._frame, rec)
        elif mode == "grad-cam":
            if cam is None:
                self.controller.request_overlay(want_cam=True)
            else:
                self.frame_view.show_cam(cam)
                from lusviewer.inference.saliency import share_on_background

                background = share_on_background(cam, self._frame)
                if background > 0.5:
                    self.notify(
                        f"⚠ Grad-CAM: {100 * background:.0f} % of it on black background, not on the lung", 10000
                    )
        self.frame_view.set_overlay_opacity(self.opacity.value() / 100)

    # ------------------------------------------------------------ drag & drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_clips(urls)
            event.acceptProposedAction()

    # ------------------------------------------------------------------ close
    def closeEvent(self, event: QCloseEvent) -> None:
        c = self.controller
        if c.exam_unsaved and not self._ask(
            "Quit without exporting the exam?", f"{c.exam.summary()}. It has not been exported."
        ):
            event.ignore()
            return
        self.stop_play()
        self._redraw.stop()
        self._save()
        self.controller.shutdown()
        super().closeEvent(event)
