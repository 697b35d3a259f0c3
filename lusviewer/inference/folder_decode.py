"""The decode side of :mod:`lusviewer.inference.folder`: a pool of spawned processes,
each decoding whole clips, preprocessing their frames as the engine does (the card's
sector crop included) and sending them back in bounded chunks over one queue; the
messages they send; and stopping them. Nothing here touches the model.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import time
from typing import Any

import numpy as np
import torch

from lusviewer.model.preprocess import model_frames

# Messages from the decode workers: (kind, clip index, ...)
_START = "start"  # (_START, i, sector, frame count at open)
_FRAMES = "frames"  # (_FRAMES, i, uint8 (n, S, S, 3), worker id, frames it has decoded so far)
_END = "end"  # (_END, i, ClipInfo at the end, log lines)
_ERROR = "error"  # (_ERROR, i, one line naming the clip and the reason, log lines)
_EXIT = "exit"  # (_EXIT, worker id): the worker is done


# --- decode workers (spawned processes) ---------------------------------------------


class _Collect(logging.Handler):
    """Keeps the readers' log lines of the clip being decoded, for the parent to say."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))

    def take(self) -> list[tuple[int, str]]:
        lines, self.lines = self.lines, []
        return lines


def _put(out: Any, item: tuple[Any, ...], stop: Any) -> bool:
    """Put ``item`` on the bounded queue, waiting while it is full; False once told to stop."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _decode_clip(
    i: int, path: str, out: Any, stop: Any, crop: str, size: int, chunk: int, wid: int, sent: list[int], said: _Collect
) -> bool:
    """Decode clip ``i`` into chunks on ``out``; False when told to stop part-way."""
    from lusviewer.io import ClipError, open_clip

    with open_clip(path) as reader:
        label = reader.info.path
        sector, frames = model_frames(reader.iter_frames(), size, crop, error=lambda reason: ClipError(label, reason))
        if not _put(out, (_START, i, sector, reader.info.frame_count), stop):
            return False
        buf = np.empty((chunk, size, size, 3), np.uint8)
        n = 0
        for _, small in frames:
            if stop.is_set():
                return False
            buf[n] = small
            n += 1
            if n == chunk:
                sent[0] += n
                if not _put(out, (_FRAMES, i, buf, wid, sent[0]), stop):
                    return False
                buf, n = np.empty_like(buf), 0
        if n:
            sent[0] += n
            if not _put(out, (_FRAMES, i, buf[:n].copy(), wid, sent[0]), stop):
                return False
        return _put(out, (_END, i, reader.info, said.take()), stop)


def _decode_worker(wid: int, tasks: Any, out: Any, stop: Any, crop: str, size: int, chunk: int) -> None:
    """A decode process: clips from ``tasks`` (index, path) until None, frames to ``out``."""
    import cv2

    from lusviewer.io import ClipError, display_path

    # Ctrl-C reaches the whole process group: the parent stops the workers (no tracebacks from here)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with contextlib.suppress(Exception):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    collect = _Collect()
    logger = logging.getLogger("lusviewer")
    logger.addHandler(collect)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    sent = [0]
    try:
        while not stop.is_set():
            try:
                task = tasks.get(timeout=0.1)
            except queue.Empty:
                continue
            if task is None:
                break
            i, path = task
            collect.take()
            try:
                if not _decode_clip(i, path, out, stop, crop, size, chunk, wid, sent, collect):
                    break
            except Exception as exc:  # one clip's failure: named, the worker carries on
                if isinstance(exc, ClipError):
                    line = str(exc)
                else:
                    line = f"{display_path(path)}: could not be scored ({type(exc).__name__}: {exc})"
                if not _put(out, (_ERROR, i, line, collect.take()), stop):
                    break
        _put(out, (_EXIT, wid), stop)
    finally:
        if stop.is_set():  # the parent may no longer read: do not wait on the queue's pipe
            out.cancel_join_thread()


def _end_processes(procs: list[Any], out: Any, timeout: float = 5.0) -> None:
    """Wait for the workers (told to stop), reading their queue so none blocks on it;
    terminate, then kill, any still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty, OSError, ValueError, EOFError):
            out.get(timeout=0.05)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        if p.pid is not None:
            p.join(1.0)
        if p.is_alive():
            p.kill()
            p.join()
