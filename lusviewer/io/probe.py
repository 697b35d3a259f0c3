"""Decode a video's first and last frames in a child process before this process does.

OpenCV's FFmpeg path can crash the whole process (SIGSEGV / SIGABRT) on some files
(OpenCV 5.0.0 on uncompressed AVI, for one). Where :func:`lusviewer.io.open_clip`
meets a container it cannot vouch for, it calls :func:`check_decoder_survives`
first: a child Python opens the file with OpenCV and decodes its first frames and its
last one. If the child dies on a signal or hangs, the file becomes a
:class:`~lusviewer.io.ClipError` naming the reason, and this process never touches
it. The verdict is cached per (real path, modification time, size), so a file costs
one probe per process however often it is opened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from lusviewer.io.base import ClipError

#: Seconds the child may take before the file is judged to hang the decoder.
PROBE_TIMEOUT_S = 60.0

_PROBE = """
import sys
import cv2
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
if cap.isOpened():
    for _ in range(3):
        ok, _frame = cap.read()
        if not ok:
            break
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    if n == n and 1 < n < 2**31:
        cap.set(cv2.CAP_PROP_POS_FRAMES, float(int(n) - 1))
        cap.read()
cap.release()
"""

_cache: dict[tuple[str, int, int], str | None] = {}
_lock = threading.Lock()


def _verdict(path: str) -> str | None:
    """None if the child survived, else why the file is refused."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE, path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"the video decoder hangs on this file (no answer in {PROBE_TIMEOUT_S:g} s); not read"
    except OSError:  # no child can be started: no verdict, the caller goes on
        return None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return f"the video decoder crashes on this file ({name}); not read, to keep the program running"
    return None


def check_decoder_survives(path: str, st: os.stat_result | None = None) -> None:
    """Raise :class:`ClipError` if decoding ``path`` with OpenCV kills or hangs a child process."""
    st = st or os.stat(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    with _lock:
        known = key in _cache
        verdict = _cache.get(key)
    if not known:
        verdict = _verdict(path)
        with _lock:
            _cache[key] = verdict
    if verdict is not None:
        raise ClipError(path, verdict)
