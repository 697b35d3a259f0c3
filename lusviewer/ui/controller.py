"""The controller: the one place that wires the views to the clip and the worker.

It owns the open clip (read on the GUI thread for display, with a small frame
cache), the per-frame results of the current clip, and the one long-lived
:class:`~lusviewer.ui.worker.InferenceWorker` in its ``QThread``. Every scoring
job gets an id and its own cancel flag; results tagged with an older id are
dropped, so a stale result never reaches the timeline of a newer clip.

The clip's frame count in the viewer has one source of truth, :attr:`Controller.info`
(``frame_count``): the display reader's count when the clip opens, replaced by the
number of frames the scoring pass decoded when that differs (a container or DICOM
header that over- or under-states its frames); ``frame_count_changed`` then tells the
views. Nothing is allocated from a header's count: the per-frame results grow with
the frames that arrive.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from lusviewer.io import ClipError, ClipInfo, ClipReader, open_clip
from lusviewer.report.exam import Exam
from lusviewer.report.session import ExamSession
from lusviewer.ui.worker import InferenceWorker, ModelStatus

if TYPE_CHECKING:  # at run time the GUI thread never imports torch: the worker does
    from lusviewer.inference import ClipResult, ScoredFrames

log = logging.getLogger(__name__)

#: Decoded frames kept for scrubbing: a memory budget, not a frame count, so short
#: clips stay whole in memory (instant seeks) and long or 1080p clips stay bounded.
CACHE_BYTES = 256 * 2**20

#: Frame classes (scores 0-3): the width of the per-frame probabilities.
N_CLASSES = 4

#: Loggers whose warnings reach the user: the clip readers' (about the open clip) and
#: the model loader's (:attr:`Controller.model_warnings`, shown on the model card).
LOGGERS_SHOWN = ("lusviewer.io", "lusviewer.model")


class Controller(QObject):
    # to the worker (queued: the worker lives in its own thread)
    _request_model = Signal(str, str)
    _request_score = Signal(int, str, object)
    _request_overlay = Signal(int, int, object, bool, str)  # ..., the clip's path (its sector)

    # to the views
    clip_opened = Signal(object)  # ClipInfo
    clip_failed = Signal(str, str)  # path, reason (the open clip is kept)
    frame_changed = Signal(int, object)  # index, RGB frame
    model_ready = Signal(object)  # ModelStatus
    model_failed = Signal(str)
    scoring_started = Signal(int)  # frame count
    frame_count_changed = Signal(int)  # the clip's frame count, corrected (scoring decoded another number)
    scores_updated = Signal(int, int)  # first new frame, number of frames scored so far
    scoring_progress = Signal(int, int, float)  # done, total, frames/s
    scoring_finished = Signal(object)  # ClipResult
    scoring_failed = Signal(str)
    scoring_cancelled = Signal()
    overlay_ready = Signal(int, object, object)  # frame index, reconstruction|None, grad-cam|None
    overlay_failed = Signal(str)
    exam_changed = Signal()
    queue_changed = Signal(int)  # clips still waiting to be opened and scored
    clip_notice = Signal(str)  # the open clip is incomplete: what decoded, in the user's words
    clip_warning = Signal(str)  # a warning of the clip readers (``lusviewer.io`` logger) about the open clip

    def __init__(
        self, model_path: str, device: str = "auto", parent: QObject | None = None, *, load: bool = True
    ) -> None:
        """``load=False``: the model loads on :meth:`load_model` (the window calls it once it has
        painted: importing torch on the worker holds the GIL and would delay the first paint), or
        at the latest when a clip is to be scored."""
        super().__init__(parent)
        self.model_path = model_path
        self.device = device
        self.model_status: ModelStatus | None = None
        self.model_error: str | None = None
        #: The model loader's warnings for the model loaded (e.g. card settings not bound to its weights).
        self.model_warnings: list[str] = []
        self.reader: ClipReader | None = None
        self.info: ClipInfo | None = None
        self.index = 0
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._job = 0
        self._cancel: threading.Event | None = None
        self._overlay_req = 0
        self._overlay_valid_from = 1  # requests older than this belong to a previous clip
        self._overlay_in_flight = False
        self._overlay_wanted: tuple[int, bool] | None = None
        self.running = False
        self.result: ClipResult | None = None  # once the job has finished
        #: Why the last scoring job failed (None: it did not); its partial results stay.
        self.failure: str | None = None
        self.exam_session = ExamSession()  # every clip scored in this session, until cleared
        #: Asked when a scored clip seems another patient's than the exam's (the reason as
        #: argument): True adds it to this exam, False starts a new exam with it. None: added.
        self.same_patient: Callable[[str], bool] | None = None
        self._queue: list[str] = []  # clips to open and score after the current one
        self._from_queue = False  # the clip on screen was opened from the queue (meant for the exam)
        self._opening: list[str] | None = None  # the readers' warnings while a clip opens
        self._reset_results()

        # The readers' warnings (a clip cut short, an implausible frame rate...) and the model
        # loader's reach the user: logged on any thread, handed to the GUI thread by a queued signal.
        self._io_log = _IoWarnings()
        self._io_log.warned.connect(self._on_io_warning)
        for name in LOGGERS_SHOWN:
            logging.getLogger(name).addHandler(self._io_log.handler)
        self._thread = QThread()
        self._thread.setObjectName("lusviewer-inference")
        self._worker = InferenceWorker()
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._request_model.connect(self._worker.load_model)
        self._request_score.connect(self._worker.score)
        # Direct: post_overlay only stores the request under a lock and wakes the worker,
        # which serves it even between the batches of a scoring job.
        self._request_overlay.connect(self._worker.post_overlay, Qt.ConnectionType.DirectConnection)
        w = self._worker
        w.model_ready.connect(self._on_model_ready)
        w.model_failed.connect(self._on_model_failed)
        w.frames_scored.connect(self._on_frames)
        w.progress.connect(self._on_progress)
        w.job_finished.connect(self._on_finished)
        w.job_failed.connect(self._on_failed)
        w.job_cancelled.connect(self._on_cancelled)
        w.overlay_ready.connect(self._on_overlay)
        w.overlay_failed.connect(self._on_overlay_failed)
        self._thread.start(QThread.Priority.LowPriority)
        self._model_requested = False
        if load:
            self.load_model()

    # ----------------------------------------------------------------- results
    def _reset_results(self) -> None:
        """No frame scored. ``probs``, ``scores`` and ``recon_error`` hold the frames
        scored so far (``n_scored`` of them): sized by the frames that arrive, never by
        a header's frame count (a 10 KB DICOM may claim 2^31 - 1 frames)."""
        self._probs_buf = np.full((0, N_CLASSES), np.nan, dtype=np.float32)
        self._scores_buf = np.full(0, -1, dtype=np.int64)
        self._recon_buf = np.full(0, np.nan, dtype=np.float32)
        self._set_scored(0)
        self.result = None
        self.failure = None

    def _set_scored(self, n: int) -> None:
        self.n_scored = n
        self.probs = self._probs_buf[:n]
        self.scores = self._scores_buf[:n]
        self.recon_error = self._recon_buf[:n]

    def _reserve(self, n: int) -> None:
        """Room for ``n`` frames' results, grown geometrically (amortised copies)."""
        have = len(self._scores_buf)
        if n <= have:
            return
        size = max(n, 2 * have, 256)
        probs = np.full((size, N_CLASSES), np.nan, dtype=np.float32)
        scores = np.full(size, -1, dtype=np.int64)
        recon = np.full(size, np.nan, dtype=np.float32)
        probs[:have], scores[:have], recon[:have] = self._probs_buf, self._scores_buf, self._recon_buf
        self._probs_buf, self._scores_buf, self._recon_buf = probs, scores, recon

    @property
    def frame_count(self) -> int:
        """The open clip's frame count, as the viewer shows it (0: no clip)."""
        return self.info.frame_count if self.info is not None else 0

    def _set_frame_count(self, n: int) -> None:
        """Scoring decoded ``n`` frames where the clip's reader said otherwise: ``n`` it is,
        for the display reader, the views and the frame on screen."""
        if self.info is None or n < 1 or n == self.info.frame_count:
            return
        log.info("%s: %d frames decoded, the reader said %d; showing %d", self.info.path, n, self.info.frame_count, n)
        self.info = replace(self.info, frame_count=n)
        if self.reader is not None:
            self.reader.info = replace(self.reader.info, frame_count=n)
        self.frame_count_changed.emit(n)
        if self.index >= n:
            self.seek(n - 1)

    @property
    def job_id(self) -> int:
        return self._job

    # -------------------------------------------------------------------- clip
    def open(self, path: str, *, replace_queue: bool = False) -> bool:
        """Open a clip; on failure keep the current one (and any clips still queued)
        and emit ``clip_failed``. ``replace_queue``: the user's choice of one clip, so
        the clips still queued are dropped, once this one has opened."""
        self._opening = []  # the readers' warnings while it opens: shown once it is on screen
        try:
            reader = open_clip(path)
            first = reader.frame(0)
        except ClipError as exc:
            self._opening = None
            self.clip_failed.emit(path, exc.reason)
            return False
        except Exception as exc:  # never let a bad file take the window down
            self._opening = None
            log.exception("opening %s", path)
            self.clip_failed.emit(path, f"{type(exc).__name__}: {exc}")
            return False
        opening_warnings, self._opening = self._opening, None
        dropped: list[str] = []
        if replace_queue:
            # The user's own clip ends the exam's queue: the queue's clips it leaves unscored
            # (the one being scored, those still queued) are recorded as not scored, as Esc
            # does, so the exam's total says so (they went unmentioned).
            dropped = self._queue_left_unscored()
            self.clear_queue()
        self._from_queue = False
        self.cancel()
        if self.reader is not None:
            self.reader.close()
        self._overlay_valid_from = self._overlay_req + 1
        self._overlay_wanted = None
        self.reader = reader
        self.info = reader.info
        self._cache.clear()
        self._cache[0] = first
        self.index = 0
        self._reset_results()
        self.clip_opened.emit(reader.info)
        self.frame_changed.emit(0, first)
        self._check_complete(reader.info)
        for message in opening_warnings:
            if Path(path).name in message:  # not a late warning about the previous clip
                self.clip_warning.emit(message)
        self.start_scoring()
        if [p for p in dropped if p != path and self.exam_session.failed(p)]:
            self.exam_changed.emit()
        return True

    def frame(self, index: int) -> np.ndarray:
        assert self.reader is not None
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        f = self.reader.frame(index)
        self._cache[index] = f
        limit = max(8, CACHE_BYTES // max(f.nbytes, 1))
        while len(self._cache) > limit:
            self._cache.popitem(last=False)
        return f

    def seek(self, index: int) -> None:
        if self.info is None:
            return
        index = max(0, min(int(index), self.info.frame_count - 1))
        if index == self.index and index in self._cache:
            return
        try:
            f = self.frame(index)
        except (ClipError, IndexError) as exc:
            self.clip_failed.emit(self.info.path, f"frame {index} cannot be shown ({exc})")
            return
        self.index = index
        self.frame_changed.emit(index, f)

    def step(self, delta: int) -> None:
        self.seek(self.index + delta)

    # ----------------------------------------------------------------- scoring
    def start_scoring(self) -> None:
        if self.info is None or self.model_error is not None:
            return
        self.load_model()  # not asked for yet: now, queued on the worker before this job
        self.cancel()
        self._job += 1
        self._cancel = threading.Event()
        self._reset_results()
        self.running = True
        self.scoring_started.emit(self.info.frame_count)
        self._request_score.emit(self._job, self.info.path, self._cancel)

    def cancel_all(self) -> None:
        """The user's cancel: the running job and the clips still queued. The clips of a
        queue (meant for the exam) left unscored are recorded as not scored, so the exam's
        total says so: they went unmentioned, and the PDF then called their zones "not
        scanned"."""
        dropped = self._queue_left_unscored()
        self.clear_queue()
        self.cancel()
        if [path for path in dropped if self.exam_session.failed(path)]:
            self.exam_changed.emit()

    def _queue_left_unscored(self) -> list[str]:
        """The queue's clips that stopping it now leaves unscored: the one being scored (when it
        came from the queue and is not in the exam yet), then those still queued."""
        dropped = self.queued
        if self.running and self._from_queue and self.info is not None and self.info.path not in self.exam:
            dropped.insert(0, self.info.path)
        return dropped

    def cancel(self) -> None:
        """Cancel the running job (its results are dropped from now on)."""
        if self._cancel is not None:
            self._cancel.set()
        if self.running:
            self.running = False
            self._job += 1  # anything still in flight is now stale
            self.scoring_cancelled.emit()

    def set_device(self, device: str) -> None:
        if device == self.device:
            return
        self.device = device
        self.cancel()
        self.model_status = None
        self.model_error = None
        self.model_warnings = []
        self._model_requested = True
        self._request_model.emit(self.model_path, device)

    def load_model(self) -> None:
        """Have the worker import torch and load the model (once; :meth:`set_device` reloads).
        A job asked for meanwhile waits behind it on the worker (``model_loading``: not ready yet)."""
        if not self._model_requested and self._thread.isRunning():  # not after shutdown
            self._model_requested = True
            self._request_model.emit(self.model_path, self.device)

    @property
    def model_loading(self) -> bool:
        """The model is neither ready nor failed (loading, or not asked for yet): a job started
        now waits for it on the worker."""
        return self.model_status is None and self.model_error is None

    def request_overlay(self, want_cam: bool) -> None:
        """Ask for the current frame's overlay. Requests are coalesced: one in flight
        at a time, and only the newest wish waits behind it, so scrubbing or playing
        with an overlay on never queues up work on the worker."""
        if self.reader is None:
            return
        self._overlay_wanted = (self.index, want_cam)
        if not self._overlay_in_flight:
            self._send_overlay()

    def _send_overlay(self) -> None:
        if self._overlay_wanted is None or self.reader is None:
            return
        index, want_cam = self._overlay_wanted
        self._overlay_wanted = None
        self._overlay_in_flight = True
        self._overlay_req += 1
        assert self.info is not None
        self._request_overlay.emit(self._overlay_req, index, self.frame(index), want_cam, self.info.path)

    # ------------------------------------------------------------- notices
    def _check_complete(self, info: ClipInfo) -> None:
        """An incomplete clip (cut short, or frames that stop decoding) gets a notice."""
        if self.info is None or info.path != self.info.path or info.complete:
            return
        self.clip_notice.emit(incomplete_notice(info, scored=self.result is not None))

    @Slot(str, str)
    def _on_io_warning(self, logger: str, message: str) -> None:
        """A reader's warning about the clip on screen (or the one opening) reaches the user;
        the model loader's warnings are kept for the model card."""
        if logger.startswith("lusviewer.model"):
            self.model_warnings.append(message)
        elif self._opening is not None:
            self._opening.append(message)
        elif self.info is not None and Path(self.info.path).name in message:
            self.clip_warning.emit(message)

    # ------------------------------------------------------------ worker slots
    @Slot(object)
    def _on_model_ready(self, status: ModelStatus) -> None:
        self.model_status = status
        self.model_error = None
        self.model_ready.emit(status)
        if self.info is not None and not self.running and self.result is None:
            self.start_scoring()

    @Slot(str)
    def _on_model_failed(self, message: str) -> None:
        self.model_status = None
        self.model_error = message
        self.model_failed.emit(message)

    @Slot(int, object)
    def _on_frames(self, job: int, chunk: ScoredFrames) -> None:
        if job != self._job:
            return
        s, n = chunk.start, len(chunk.scores)
        self._reserve(s + n)
        self._probs_buf[s : s + n] = chunk.probs
        self._scores_buf[s : s + n] = chunk.scores
        self._recon_buf[s : s + n] = chunk.recon_error
        self._set_scored(s + n)
        if self.n_scored > self.frame_count:  # the reader under-stated the clip's frame count
            self._set_frame_count(self.n_scored)
        self.scores_updated.emit(s, self.n_scored)

    @Slot(int, int, int, float)
    def _on_progress(self, job: int, done: int, total: int, fps: float) -> None:
        if job == self._job:
            self.scoring_progress.emit(done, total, fps)

    @Slot(int, object)
    def _on_finished(self, job: int, result: ClipResult) -> None:
        if job != self._job:
            return
        self.running = False
        self.result = result
        # What the scoring pass decoded is the clip: the CSV's rows, the slider and the timeline.
        self._set_frame_count(len(result.scores))
        self.scoring_finished.emit(result)
        self._check_complete(result.info)
        self._from_queue = False  # done with the queue's clip: a later "score again" is the user's
        other = self.exam.other_patient(result.clip)
        if other and self.same_patient is not None and not self.same_patient(other):
            self.exam_session.clear()  # a new exam, of this clip's patient (the protocol kept)
        self.exam_session.scored(result)
        self.exam_changed.emit()
        self._next_in_queue()

    @Slot(int, str)
    def _on_failed(self, job: int, message: str) -> None:
        if job != self._job:
            return
        self.running = False
        self.failure = message
        self.scoring_failed.emit(message)
        if self._from_queue and self.info is not None and self.info.path not in self.exam:
            self._not_scored(self.info.path)
        self._next_in_queue()

    @Slot(int)
    def _on_cancelled(self, job: int) -> None:
        if job == self._job:  # only when not already announced by cancel()
            self.running = False
            self.scoring_cancelled.emit()

    @Slot(int, int, object, object)
    def _on_overlay(self, req: int, index: int, rec: object, cam: object) -> None:
        self._overlay_in_flight = False
        if req >= self._overlay_valid_from:
            self.overlay_ready.emit(index, rec, cam)
        self._send_overlay()

    @Slot(int, str)
    def _on_overlay_failed(self, req: int, message: str) -> None:
        self._overlay_in_flight = False
        if req >= self._overlay_valid_from:
            self.overlay_failed.emit(message)
        self._send_overlay()

    # ---------------------------------------------------------------- shutdown
    def shutdown(self) -> None:
        """Cancel, let the worker finish its batch, stop the thread. Never terminate()."""
        self.cancel()
        for name in LOGGERS_SHOWN:
            logging.getLogger(name).removeHandler(self._io_log.handler)
        self._thread.quit()
        self._thread.wait()
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    @property
    def thread_running(self) -> bool:
        return self._thread.isRunning()

    def export(self, path: str) -> tuple[Path, ...]:
        """Write what ``lusviewer score -o path`` writes (atomically): the two CSV files,
        or one JSON report for a name ending ``.json``. Returns the files written."""
        from lusviewer.report import report_writer

        if self.result is None:
            raise RuntimeError("scoring has not finished")
        with report_writer(path) as writer:
            writer.add(self.result)
            writer.commit()
            return writer.outputs

    # -------------------------------------------------------------------- exam
    @property
    def exam(self) -> Exam:
        return self.exam_session.exam

    def remove_from_exam(self, clip: str) -> None:
        if self.exam_session.remove(clip):
            self.exam_changed.emit()

    def set_clinician_score(self, clip: str, score: int | None) -> None:
        """Record the clinician's own score of a zone beside the model's (``None``: none)."""
        if self.exam_session.set_clinician_score(clip, score):
            self.exam_changed.emit()

    def set_body_zone(self, clip: str, code: str | None) -> None:
        """Place a clip of the exam on the chest (a ``report.zones`` code; ``None``: nowhere)."""
        if self.exam_session.set_body_zone(clip, code):
            self.exam_changed.emit()

    def set_exam_zones(self, zones: int | None) -> None:
        """The exam's protocol (6 or 14 zones, or None: the zones scored)."""
        if self.exam_session.set_zones(zones):
            self.exam_changed.emit()

    @property
    def clinician_scores(self) -> dict[str, int]:
        return self.exam_session.clinician_scores

    def clear_exam(self) -> None:
        self.exam_session.clear()
        self.exam_changed.emit()

    @property
    def exam_unsaved(self) -> bool:
        """Changes worth a question before the exam is dropped (:attr:`ExamSession.unsaved`)."""
        return self.exam_session.unsaved

    def export_exam(self, path: str) -> Path:
        """The exam's CSV (one row per clip, then the LUS score total), atomically."""
        return self.exam_session.export(path)

    # ------------------------------------------------------------------- queue
    @property
    def queued(self) -> list[str]:
        return list(self._queue)

    def open_many(self, paths: list[str]) -> None:
        """Open and score ``paths`` one after the other; each joins the exam when scored.
        A clip that cannot be opened or scored is reported and the next one follows."""
        self._queue = list(paths)
        self._open_next()

    def clear_queue(self) -> None:
        if self._queue:
            self._queue.clear()
            self.queue_changed.emit(0)

    def _next_in_queue(self) -> None:
        if self._queue:  # after the views have shown this clip's result
            QTimer.singleShot(0, self._open_next)

    def _open_next(self) -> None:
        while self._queue:
            if self.model_error is not None:  # nothing would be scored
                self.clear_queue()
                return
            path = self._queue.pop(0)
            self.queue_changed.emit(len(self._queue))
            if self.open(path):
                self._from_queue = True
                return
            self._not_scored(path)

    def _not_scored(self, path: str) -> None:
        """A clip meant for the exam could not be scored: the exam's total says a zone is missing."""
        if self.exam_session.failed(path):
            self.exam_changed.emit()


def incomplete_notice(info: ClipInfo, *, scored: bool) -> str:
    """One line for a clip whose reader says ``complete is False``."""
    n, header = info.frame_count, info.header_frame_count
    what = "scored on those" if scored else "only those are shown and scored"
    if header is not None and header > n:
        return f"Incomplete clip: {n} of the {header} frames in its header could be decoded; {what}."
    return f"Incomplete clip: frames stop decoding after frame {n - 1} (file cut short or damaged); {what}."


class _IoWarnings(QObject):
    """A logging handler's signal for the clip readers' warnings (queued to the GUI
    thread when the worker's reader logs them)."""

    warned = Signal(str, str)  # logger name, message

    def __init__(self) -> None:
        super().__init__()
        self.handler = _SignalHandler(self)


class _SignalHandler(logging.Handler):
    def __init__(self, owner: _IoWarnings) -> None:
        super().__init__(logging.WARNING)
        self._owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._owner.warned.emit(record.name, record.getMessage())
        except Exception:  # a malformed record, or a window already gone: never the logger's caller's problem
            return
