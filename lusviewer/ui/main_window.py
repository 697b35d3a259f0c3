"""The main window: puts the views, menus and shortcuts of :mod:`~lusviewer.ui.layout`
in place and forwards everything to the :class:`~lusviewer.ui.controller.Controller`.

Its collaborators, each in its own module: :class:`~lusviewer.ui.playback.Playback`
(play, seek, step), :class:`~lusviewer.ui.overlay.OverlayPresenter` (the overlay over
the frame), :class:`~lusviewer.ui.scoring_state.ScoringState` (what the views say about
the clip's scoring: waiting for the model, progress, result, failure, cancel),
:class:`~lusviewer.ui.export.Exporter` (the CSV exports and their questions),
:class:`~lusviewer.ui.preferences.Preferences` (what is remembered between sessions),
and the :class:`~lusviewer.ui.status_bar.StatusBar`.

The model loads on the worker once the window has painted (see :meth:`MainWindow.paintEvent`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QSignalBlocker, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QPaintEvent, QShowEvent
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from lusviewer.io import DICOM_EXTENSIONS, VIDEO_EXTENSIONS, ClipInfo
from lusviewer.io.images import TIFF_EXTENSIONS
from lusviewer.report.exam_report import diagram_cells
from lusviewer.report.zones import choices_for
from lusviewer.ui.controller import Controller
from lusviewer.ui.dialogs import show_about, show_model_card, warning_box
from lusviewer.ui.export import Exporter
from lusviewer.ui.layout import MenuActions, build_menus, build_shortcuts, build_views
from lusviewer.ui.overlay import OverlayPresenter
from lusviewer.ui.playback import Playback
from lusviewer.ui.preferences import Preferences
from lusviewer.ui.scoring_state import ScoringState
from lusviewer.ui.status_bar import StatusBar
from lusviewer.ui.summary_panel import frame_score_text

log = logging.getLogger(__name__)

FILE_FILTER = (
    "Clips ("
    + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS + DICOM_EXTENSIONS + TIFF_EXTENSIONS)
    + ");;Videos ("
    + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
    + ");;DICOM ("
    + " ".join(f"*{e}" for e in DICOM_EXTENSIONS)
    + ");;Multi-page TIFF ("
    + " ".join(f"*{e}" for e in TIFF_EXTENSIONS)
    + ");;All files (*)"
)

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
        self._paint_seen = self._painted = False

        views = build_views()
        self.setCentralWidget(views.splitter)
        # the window's names for them (the presenters, the preferences, tests and scripts read these)
        self.frame_view, self.slider, self.play_button = views.frame_view, views.slider, views.play_button
        self.frame_label, self.clip_notice = views.frame_label, views.clip_notice
        self.timeline, self.summary, self.exam_panel = views.timeline, views.summary, views.exam_panel
        self.overlay_mode, self.opacity = views.overlay_mode, views.opacity
        self.show_probs, self.show_recon = views.show_probs, views.show_recon
        self.side_tabs, self.splitter, self.right_splitter = views.side_tabs, views.splitter, views.right_splitter
        self._notices: list[str] = []  # in clip_notice, until another clip opens

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
        self._build_menus(device)
        self.status_bar = StatusBar()
        self.setStatusBar(self.status_bar)
        # the window's names for them (tests and scripts read these)
        self.model_label = self.status_bar.model_label
        self.rate_label = self.status_bar.rate_label
        self.queue_label = self.status_bar.queue_label
        self.cancel_button = self.status_bar.cancel_button
        self.scoring = ScoringState(
            self.controller,
            summary=self.summary,
            timeline=self.timeline,
            status_bar=self.status_bar,
            exporter=self.exporter,
            warn=lambda title, text: self._warn(title, text),
            frame_label=self._update_frame_label,
            parent=self,
        )
        self._shortcuts = build_shortcuts(self, self.playback)
        self._wire()
        self.prefs.restore()

    def _build_menus(self, device: str) -> None:
        c = self.controller
        menus = build_menus(
            self,
            MenuActions(
                open_dialog=self.open_dialog,
                export=self.exporter.export_dialog,
                export_exam=self.exporter.export_exam_dialog,
                export_report=self.exporter.export_report_dialog,
                quit=self.close,
                fit=self.frame_view.fit,
                cycle_overlay=self.overlays.cycle,
                timeline_in_seconds=self.timeline.set_seconds,
                score_again=c.start_scoring,
                cancel=c.cancel_all,
                device_chosen=self._device_chosen,
                about=lambda: show_about(self, c.model_status),
                model_card=lambda: show_model_card(self, c.model_status, self._warn, c.model_warnings),
            ),
            device=device,
        )
        self.act_open, self.recent_menu = menus.act_open, menus.recent_menu
        self.act_export, self.act_export_exam = menus.act_export, menus.act_export_exam
        self.act_export_report, self.act_seconds = menus.act_export_report, menus.act_seconds
        self.act_rescore, self.act_cancel, self.device_group = menus.act_rescore, menus.act_cancel, menus.device_group

    def _wire(self) -> None:
        c, sb, scoring = self.controller, self.status_bar, self.scoring
        sb.cancel_button.clicked.connect(c.cancel_all)
        c.clip_opened.connect(self._on_clip_opened)
        c.clip_failed.connect(self._on_clip_failed)
        c.frame_changed.connect(self._on_frame)
        c.model_ready.connect(sb.show_model)
        c.model_ready.connect(scoring.model_ready)
        c.model_failed.connect(scoring.model_failed)
        c.scoring_started.connect(scoring.started)
        c.scores_updated.connect(scoring.scores_arrived)
        c.scoring_progress.connect(scoring.progress)  # its rate; the count follows the timeline's redraw
        c.scoring_finished.connect(scoring.finished)
        # A clip opened while the model loaded has not asked for its overlay yet.
        c.scoring_finished.connect(lambda _result: self.overlays.refresh())
        c.scoring_failed.connect(scoring.failed)
        c.scoring_cancelled.connect(scoring.cancelled)
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
        c.frame_count_changed.connect(self._on_frame_count_changed)

    def _on_frame_count_changed(self, n: int) -> None:
        """Scoring decoded ``n`` frames where the reader said otherwise: the slider and
        the timeline span those (the frame label reads the controller's count)."""
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, n - 1)
        self.timeline.set_frame_count(n)  # grows (or shrinks) in place: the curves drawn stay
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
            f"{'them' if len(queued) != 1 else 'it'} unscored? The exam will list "
            f"{'them' if len(queued) != 1 else 'it'} as not scored.",
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
        c = self.controller
        c.set_exam_zones(zones)
        self.settings.setValue("exam_zones", zones or 0)
        if unplaced := [Path(p).name for p in c.exam_session.unplaced if p in c.exam]:
            self.notify(
                f"No zone of this protocol where {', '.join(unplaced)} {'was' if len(unplaced) == 1 else 'were'} "
                "recorded: choose the zone in the Exam table",
                12000,
            )

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
            cells=diagram_cells(exam, c.exam_session.zone_rule),
            zone_names={z.code: z.name for z in exam.scheme},
        )
        warn = "⚠ " if exam.incomplete or exam.n_unfamiliar or exam.not_scored else ""
        # a total with uncertain zones in it is a guess too: "LUS 8? of 18", as the diagram's "0?"
        guess = "?" if exam.n_uncertain else ""
        title = f"Exam · {warn}LUS {exam.total}{guess} of {exam.maximum}" if len(exam) else "Exam"
        if len(exam) and exam.n_withheld == len(exam):  # nothing counted: no "LUS 0", which reads as normal
            title = "Exam · ⚠ no reliable score"
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
        self.scoring.clip_opened()
        self._notices = []
        self.clip_notice.hide()
        self.overlays.reset()
        self.prefs.add_recent(info.path)
        self.act_export.setEnabled(True)

    def _on_clip_failed(self, path: str, reason: str) -> None:
        self._warn("Cannot open clip", f"{path}\n\n{reason}")

    def _on_frame(self, index: int, frame: np.ndarray) -> None:
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
            score = frame_score_text(s, c.probs[index])
            if c.result is not None and c.result.unfamiliar:
                score += ", clip unlike the training clips"
        self.frame_label.setText(
            f"Frame {index} (0–{info.frame_count - 1})   ·   {index / info.fps:.2f} s   ·   "
            f"{info.fps:.1f} fps   ·   {info.width}×{info.height}   ·   {score}"
        )

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
        self.scoring.stop()
        self.prefs.save()
        self.controller.shutdown()
        super().closeEvent(event)
