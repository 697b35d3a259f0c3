"""The one long-lived inference worker: owns the loaded model, runs one job at a time.

It lives in its own ``QThread``; the controller talks to it only through queued
signals, and it answers only through signals tagged with the job id, so the GUI
can drop results of a job it no longer cares about. Each job carries its own
``threading.Event`` for cancelling: the engine checks it between batches (a queued
"cancel" slot could not run while the worker is busy).

Overlay requests (reconstruction, Grad-CAM of the frame on screen) go the same way
round a busy worker: :meth:`InferenceWorker.post_overlay` leaves the newest request in
a locked slot and wakes the worker; the worker serves it when idle, and between
batches of a scoring job, so an overlay never waits for a long clip to finish. The
model still runs on the worker's thread only. For a model that sees the clip's
ultrasound sector only, overlays are computed on the sector the clip was (or will be)
scored with, so that they line up with the frame: the engine's (``ScoredFrames.sector``,
``ClipResult.sector``) once it has scored a batch of the clip; before that, the same
sector found on the clip's first frames.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

if TYPE_CHECKING:  # torch is imported on the worker's thread, when the model loads
    from lusviewer.inference import ScoringEngine
    from lusviewer.model.preprocess import Sector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelStatus:
    name: str  # "lusviewer-hybrid 1"
    device: str  # "CPU (bf16)"
    card_path: str
    card: dict[str, object]


class InferenceWorker(QObject):
    model_ready = Signal(object)  # ModelStatus
    model_failed = Signal(str)
    frames_scored = Signal(int, object)  # job id, ScoredFrames
    progress = Signal(int, int, int, float)  # job id, done, total, frames/s
    job_finished = Signal(int, object)  # job id, ClipResult
    job_failed = Signal(int, str)  # job id, message naming the file and the reason
    job_cancelled = Signal(int)
    overlay_ready = Signal(int, int, object, object)  # request id, frame, reconstruction|None, grad-cam|None
    overlay_failed = Signal(int, str)
    _wake = Signal()  # an overlay request is waiting (queued to the worker's thread)

    def __init__(self) -> None:
        super().__init__()
        self._engine: ScoringEngine | None = None
        self._niced = False
        self._pending_lock = threading.Lock()
        self._pending: tuple[int, int, np.ndarray, bool, str] | None = None
        #: The last clip's sector, as the engine crops it: (engine, clip path, sector). Worker thread only.
        self._sector: tuple[ScoringEngine, str, Sector | None] | None = None
        self._wake.connect(self._serve_overlay)

    def post_overlay(self, request_id: int, index: int, frame: np.ndarray, want_cam: bool, clip: str) -> None:
        """Any thread: ask for one frame's overlay (of the clip at path ``clip``). Only the
        newest request waits."""
        with self._pending_lock:
            self._pending = (request_id, index, frame, want_cam, clip)
        self._wake.emit()

    def _sector_of(self, engine: ScoringEngine, clip: str) -> Sector | None:
        """The sector ``engine`` crops ``clip`` to: the one its scoring found, else found
        now on its first frames (the same frames, the same sector); None for a model that
        sees the whole frame."""
        cached = self._sector
        if cached is None or cached[0] is not engine or cached[1] != clip:
            cached = self._sector = (engine, clip, engine.clip_sector(clip))
        return cached[2]

    @Slot()
    def _serve_overlay(self) -> None:
        """Worker thread: compute the waiting overlay request, if any."""
        with self._pending_lock:
            request, self._pending = self._pending, None
        if request is not None:
            self.overlay(*request)

    def _lower_priority(self) -> None:
        """Run the model below the GUI thread's priority, so scrubbing stays smooth.

        On Linux, thread niceness is per thread and inherited by threads created
        later: done before torch starts its compute threads (:meth:`load_model` keeps
        the intra-op pool at one thread until then), the whole pool runs at the lower
        priority too. ``QThread.LowPriority`` does the same where the OS honours it.
        """
        if self._niced:
            return
        self._niced = True
        import os

        if hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            except OSError as exc:  # not permitted: carry on at normal priority
                log.info("could not lower the worker's priority: %s", exc)

    @Slot(str, str)
    def load_model(self, path: str, device: str) -> None:
        """Import torch and load the model here, off the GUI thread, at the GUI's priority.

        Both hold the GIL through long stretches (up to 0.3 s): at a lower priority,
        on a busy core, the worker was not scheduled while it held the GIL and the
        window froze for up to 5.5 s at a time (a priority inversion). Meanwhile
        torch's intra-op pool is kept to one thread, so that its threads start after
        the priority is lowered (:meth:`_lower_priority`), when the first job runs.
        """
        self._sector = None  # it holds the previous engine
        threads: int | None = None
        try:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # no pool threads yet: they would keep this priority
            from lusviewer.inference import ScoringEngine
            from lusviewer.model import load_model

            loaded = load_model(path)
            engine = ScoringEngine(loaded, device=device)
        except Exception as exc:
            log.warning("model load failed: %s", exc)
            self._engine = None
            self.model_failed.emit(str(exc))
            return
        finally:
            self._lower_priority()
            if threads is not None:
                torch.set_num_threads(threads)
        self._engine = engine
        import json

        card = json.loads(loaded.card_path.read_text())
        self.model_ready.emit(ModelStatus(loaded.card.display_name, engine.description, str(loaded.card_path), card))

    @Slot(int, str, object)
    def score(self, job_id: int, path: str, cancel: threading.Event) -> None:
        from lusviewer.inference import Cancelled, ScoredFrames, ScoringEngine
        from lusviewer.io import ClipError

        engine = self._engine
        if not isinstance(engine, ScoringEngine):
            self.job_failed.emit(job_id, "no model is loaded")
            return
        t0 = time.perf_counter()

        def on_frames(chunk: ScoredFrames) -> None:
            self.frames_scored.emit(job_id, chunk)
            self._sector = (engine, path, chunk.sector)  # overlays meanwhile: the sector being scored with
            self._serve_overlay()  # between batches: the frame on screen does not wait for the clip

        def progress(done: int, total: int) -> None:
            dt = time.perf_counter() - t0
            self.progress.emit(job_id, done, total, done / dt if dt > 0 else 0.0)

        try:
            result = engine.score_clip(path, on_frames=on_frames, progress=progress, cancel=cancel)
        except Cancelled:
            self.job_cancelled.emit(job_id)
        except ClipError as exc:
            self.job_failed.emit(job_id, str(exc))
        except Exception as exc:  # keep the worker alive whatever happens
            log.error("scoring %s failed:\n%s", path, traceback.format_exc())
            self.job_failed.emit(job_id, f"{path}: scoring failed ({type(exc).__name__}: {exc})")
        else:
            self._sector = (engine, path, result.sector)
            self.job_finished.emit(job_id, result)

    @Slot(int, int, object, bool, str)
    def overlay(self, request_id: int, index: int, frame: np.ndarray, want_cam: bool, clip: str) -> None:
        """Reconstruction (and Grad-CAM when asked) of one frame of ``clip``."""
        from lusviewer.inference import ScoringEngine
        from lusviewer.inference.saliency import grad_cam

        engine = self._engine
        if not isinstance(engine, ScoringEngine):
            self.overlay_failed.emit(request_id, "no model is loaded")
            return
        try:
            sector = self._sector_of(engine, clip)
            rec = engine.reconstruct(frame, sector)
            cam = grad_cam(engine.model.cnn, frame, device=engine.device, sector=sector)[0] if want_cam else None
        except Exception as exc:
            log.error("overlay failed:\n%s", traceback.format_exc())
            self.overlay_failed.emit(request_id, f"overlay failed ({type(exc).__name__}: {exc})")
            return
        self.overlay_ready.emit(request_id, index, rec, cam)
