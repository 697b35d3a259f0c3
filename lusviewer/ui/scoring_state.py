"""What the window says about the open clip's scoring: waiting for the model, the
progress on the timeline and in the summary, the result, a failure or a cancel.

:class:`ScoringState` keeps the phase of the current job as an explicit
:class:`ScoringPhase` (never read back from a label's text) and puts the words for
it in the summary panel, the timeline and the status bar. The window owns one and
connects the controller's scoring signals to its slots.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QTimer

from lusviewer.io import ClipError
from lusviewer.report.aggregate import clip_confidence, low_confidence
from lusviewer.report.exam_report import blank_frame, most_severe_frame, pictured_frame

if TYPE_CHECKING:
    from lusviewer.inference import ClipResult
    from lusviewer.ui.controller import Controller
    from lusviewer.ui.export import Exporter
    from lusviewer.ui.status_bar import StatusBar
    from lusviewer.ui.summary_panel import SummaryPanel
    from lusviewer.ui.timeline import ScoreTimeline

log = logging.getLogger(__name__)

#: A clip opened while the model loads: its job waits behind the model on the worker.
WAITING_FOR_MODEL = "Waiting for the model to load; scoring starts as soon as it is ready."
#: The status bar's words for the same wait.
WAITING_STATUS = "Waiting for the model…"
#: The summary's headline: the clip waits for the model, is being scored, cannot be, or was cancelled.
WAITING = "Waiting…"
SCORING = "Scoring…"
NO_MODEL = "No model"
CANCELLED = "Cancelled"

#: Timeline redraws while scoring runs are coalesced: at most one per this many ms.
REDRAW_MS = 100


def weak_counts(scores: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Of the frames of each score 0-3, how many are weak calls (``weak``, from
    :func:`~lusviewer.report.aggregate.low_confidence`)."""
    s = np.asarray(scores, dtype=np.int64)[: len(weak)]
    return np.bincount(s[np.asarray(weak, dtype=bool)[: len(s)] & (s >= 0)], minlength=4)[:4]


class ScoringPhase(enum.Enum):
    """Where the open clip's scoring job is."""

    IDLE = "idle"  #: no job running: none started, or it finished, failed or was cancelled
    WAITING_FOR_MODEL = "waiting for the model"  #: queued on the worker behind the model's load
    SCORING = "scoring"  #: the worker is scoring it


class ScoringState(QObject):
    """The scoring job's phase and what the views say about it.

    ``warn`` (title, text) is the window's warning dialog; ``frame_label`` refreshes the
    frame label, whose score changes as frames are scored."""

    def __init__(
        self,
        controller: Controller,
        *,
        summary: SummaryPanel,
        timeline: ScoreTimeline,
        status_bar: StatusBar,
        exporter: Exporter,
        warn: Callable[[str, str], None],
        frame_label: Callable[[], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._c = controller
        self._summary = summary
        self._timeline = timeline
        self._status = status_bar
        self._exporter = exporter
        self._warn = warn
        self._frame_label = frame_label
        self.phase = ScoringPhase.IDLE
        self._rate = 0.0  # frames/s, the worker's latest; shown with the frames drawn, at each redraw
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.redraw)

    # ------------------------------------------------------------------ clip
    def clip_opened(self) -> None:
        """A new clip: nothing scored yet (its job starts next, unless there is no model)."""
        self.phase = ScoringPhase.IDLE
        self._summary.clear(NO_MODEL if self._c.model_error else SCORING)

    # ----------------------------------------------------------------- model
    def model_ready(self) -> None:
        """A job waiting for the model is now being scored: say so."""
        if self.phase is ScoringPhase.WAITING_FOR_MODEL and self._c.running:
            self.phase = ScoringPhase.SCORING
            self._status.rate_label.setText(SCORING)
            self._summary.clear(SCORING)

    def model_failed(self, message: str) -> None:
        """No model: the clip stays open for viewing; the waiting job fails next (:meth:`failed`)."""
        self._status.show_no_model()
        if self._c.info is not None and self._c.result is None:
            self._summary.clear(NO_MODEL)
        self._warn("Cannot load the model", f"The viewer shows clips but cannot score them.\n\n{message}")

    # ------------------------------------------------------------------- job
    def started(self, total: int) -> None:
        self._rate = 0.0
        self._status.scoring_started(total)
        self._timeline.set_partial(None)  # scoring again after a failure or a cancel
        self._timeline.set_findings((), None)  # the next result's, when it is in
        waiting = self._c.model_loading  # the job waits behind the model on the worker
        self.phase = ScoringPhase.WAITING_FOR_MODEL if waiting else ScoringPhase.SCORING
        if self._c.result is None:
            self._summary.clear(WAITING if waiting else SCORING)
        if waiting:
            self._status.rate_label.setText(WAITING_STATUS)
            self._summary.rule.setText(WAITING_FOR_MODEL)

    def scores_arrived(self, start: int, n_done: int) -> None:
        if not self._redraw.isActive():
            self._redraw.start()

    def progress(self, done: int, total: int, fps: float) -> None:
        """The worker's progress: only its rate is kept. The frame count in the status bar is
        the timeline's, set at each redraw from the same frames (the bar read 96/100 beside a
        timeline of 64 frames when each followed its own signal: viewer-mid-scoring.png)."""
        self._rate = fps

    def redraw(self) -> None:
        """The frames scored so far on the timeline, in the status bar's progress and, while
        scoring runs, in the summary: all from the same ``n_scored`` frames."""
        c = self._c
        n = c.n_scored
        weak = low_confidence(c.probs[:n])  # once per redraw, for the timeline and the summary
        self._timeline.update_scores(c.scores, c.probs, c.recon_error, n, weak)
        if c.running and n:
            self._status.show_progress(n, max(c.frame_count, n), self._rate)
            counts = np.bincount(c.scores[:n], minlength=4)[:4]
            self._summary.set_progress(counts, n, c.frame_count, weak_counts(c.scores[:n], weak))
            self._summary.set_confidence(weak)
        self._frame_label()

    def stop(self) -> None:
        """No redraw pending (the window closes)."""
        self._redraw.stop()

    def _on_screen(self, result: ClipResult) -> bool:
        """The result is of the clip open on screen, whose frames can be read."""
        c = self._c
        return c.info is not None and c.info.path == result.info.path and c.reader is not None

    def _pictured(self, result: ClipResult, weak: np.ndarray) -> int:
        """The worst frame that shows a picture (:func:`~lusviewer.report.exam_report.pictured_frame`,
        as the exam report's): a blank frame is never the one "Jump to worst frame" shows."""
        prefer = result.summary.worst_frame
        if not self._on_screen(result):
            return most_severe_frame(result.scores, weak, prefer)
        try:
            return pictured_frame(result.scores, weak, prefer, self._c.frame)
        except (ClipError, IndexError, OSError) as exc:  # a frame that cannot be read: the worst frame as scored
            log.warning("%s: the worst frame's picture could not be read (%s)", result.clip, exc)
            return most_severe_frame(result.scores, weak, prefer)

    def _blank(self, result: ClipResult, index: int) -> bool:
        """Frame ``index`` of the clip on screen shows no picture (False where it cannot be read)."""
        if not self._on_screen(result):
            return False
        try:
            return blank_frame(self._c.frame(index))
        except (ClipError, IndexError, OSError):
            return False

    def finished(self, result: ClipResult) -> None:
        self.phase = ScoringPhase.IDLE
        self._redraw.stop()
        self.redraw()
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
        weak = low_confidence(result.probs)
        severe = self._pictured(result, weak)
        self._summary.set_summary(
            s.clip_score,
            s.rule,
            s.counts,
            s.worst_frame,
            len(result.scores),
            result.info.fps,
            clip_confidence(result),
            weak_counts(result.scores, weak),
            (severe, int(result.scores[severe]), bool(weak[severe])),
            severe != s.worst_frame and self._blank(result, s.worst_frame),
        )
        self._summary.set_confidence(weak)
        self._summary.set_familiarity(result.familiarity_warning)
        self._summary.set_findings(
            result.finding_means, dict(zip(result.finding_names, result.finding_auc, strict=True))
        )
        # a clip unlike the training clips: its findings are withheld, as the summary says, not
        # drawn on the timeline (they were, beside "A-lines withheld")
        self._timeline.set_findings(result.finding_names, None if result.unfamiliar else result.findings)
        self._timeline.set_unfamiliar(bool(result.unfamiliar))
        self._status.scoring_over(f"Scored {len(result.scores)} frames in {result.elapsed_s:.1f} s")

    def failed(self, message: str) -> None:
        """No stale progress: the summary says it failed and why, the frames scored before
        the failure stay on the timeline marked partial (greyed, the frames never scored shaded)."""
        c = self._c
        self.phase = ScoringPhase.IDLE
        self._redraw.stop()
        self._exporter.scoring_stopped(f"scoring failed: {message}")
        if c.model_error is not None:  # the model dialog has said it; no second dialog
            self._status.scoring_over("No model: not scored")
            self._summary.clear(NO_MODEL)
            return
        self.redraw()
        n, total = c.n_scored, c.frame_count
        self._status.scoring_over(f"Scoring failed after {n} of {total} frames")
        self._summary.set_failed(message, n, total)
        if n:
            self._timeline.set_partial(n, total, "scoring failed")
        self._warn("Scoring failed", f"Scoring stopped after {n} of {total} frames; no clip score.\n\n{message}")

    def cancelled(self) -> None:
        c = self._c
        self.phase = ScoringPhase.IDLE
        self._redraw.stop()
        self._status.scoring_over("Scoring cancelled")
        self._exporter.scoring_stopped("scoring was cancelled")
        if c.result is None:
            self._summary.clear(CANCELLED)
            if c.n_scored:
                self.redraw()
                self._timeline.set_partial(c.n_scored, c.frame_count, "cancelled")
