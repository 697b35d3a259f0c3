"""The viewer under many open / score / cancel / reopen cycles, and the Qt binding's
reference counting that such a session depends on.

PySide6 6.12.0 (with shiboken6 6.12.0) loses one reference to ``True`` on every
``Signal.emit()`` and one to ``None`` on every call of a method that returns nothing
(``QObject.setObjectName``, ``QTimer.singleShot``, ...), whatever the signal carries
and from whichever thread. On Python < 3.12, where ``None`` and ``True`` are not
immortal, the process aborts once a count reaches zero (``Fatal Python error:
none_dealloc`` / ``bool_dealloc``): the viewer after about 30 clips. pyproject.toml
excludes that release; these tests fail on it, long before the crash.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import PySide6
from PySide6.QtCore import QObject, QSettings, QThread, Signal, Slot

from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.ui.main_window import MainWindow

TIMEOUT = 60_000  # ms
CYCLES = 100
BINDING = f"PySide6 {PySide6.__version__} (Python {sys.version.split()[0]})"


def refs() -> tuple[int, int]:
    return sys.getrefcount(None), sys.getrefcount(True)


pytestmark = pytest.mark.usefixtures("no_leaked_threads")


class _Emitter(QObject):
    chunk = Signal(int, object)  # the worker's frames_scored / job_finished shape
    done = Signal()

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    @Slot()
    def run(self) -> None:
        for i in range(self.n):
            self.chunk.emit(i, np.zeros(4, np.float32))
        self.done.emit()


class _Receiver(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.got = 0

    @Slot(int, object)
    def on_chunk(self, i: int, payload: object) -> None:
        self.got += 1


def test_binding_keeps_reference_counts(qtbot) -> None:  # type: ignore[no-untyped-def]
    """PySide6 alone: a QThread emitting Signal(int, object) 1,000 times to the GUI
    thread, and 1,000 calls of a method that returns nothing."""
    n = 1000
    thread = QThread()
    thread.setObjectName("refcount-emitter")
    emitter, receiver = _Emitter(n), _Receiver()
    emitter.moveToThread(thread)
    emitter.chunk.connect(receiver.on_chunk)
    thread.started.connect(emitter.run)
    none0, true0 = refs()
    thread.start()
    qtbot.waitUntil(lambda: receiver.got == n, timeout=TIMEOUT)
    thread.quit()
    thread.wait()
    none1, true1 = refs()
    for _ in range(n):
        receiver.setObjectName("receiver")
    none2, _ = refs()
    # A sound binding moves these by a handful; 6.12.0 loses one reference per call.
    assert true1 - true0 > -n // 10, f"{BINDING}: {n} emits changed the references to True by {true1 - true0}"
    assert none1 - none0 > -n // 10, f"{BINDING}: {n} emits changed the references to None by {none1 - none0}"
    assert none2 - none1 > -n // 10, f"{BINDING}: {n} calls changed the references to None by {none2 - none1}"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("stress")
    long = write_video(folder / "long.avi", synthetic_frames(200, size=48, seed=3), fps=25.0, fourcc="MJPG")
    short = write_video(folder / "short.avi", synthetic_frames(24, size=48, seed=4), fps=25.0, fourcc="MJPG")
    return long, short


@pytest.mark.slow
def test_open_score_cancel_reopen_cycles(qtbot, tiny_model: Path, tmp_path: Path, clips: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    """100 cycles through the real window: open a long clip and cancel it (at once, a
    moment later, or once its first frames are scored); every tenth cycle open a short
    clip while the long one is scoring and let it finish. No crash, no stale result, the
    same scores each time, reference counts flat, the worker's thread stopped at close."""
    long, short = clips
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(str(tiny_model), settings, quiet=True)
    qtbot.addWidget(w)
    w.show()
    c = w.controller
    qtbot.waitUntil(lambda: c.model_status is not None, timeout=TIMEOUT)
    reference: np.ndarray | None = None
    baseline: tuple[int, int] | None = None
    try:
        for k in range(CYCLES):
            assert w.open_clip(str(long))
            if k % 10 == 9:  # another clip mid-run: the long clip's results are stale from now on
                assert w.open_clip(str(short))
                qtbot.waitUntil(lambda: c.result is not None, timeout=TIMEOUT)
                qtbot.wait(10)  # a batch of the long clip still in flight arrives now, and is dropped
                assert c.result is not None and c.result.clip == str(short)
                assert c.frame_count == c.n_scored == len(c.scores) == 24
                if reference is None:
                    reference = c.scores.copy()
                assert np.array_equal(c.scores, reference), f"cycle {k}: other scores for the same clip"
            else:
                if k % 5 == 0:
                    qtbot.waitUntil(lambda: c.n_scored > 0, timeout=TIMEOUT)
                elif k % 5 == 2:
                    qtbot.wait(10)  # the worker is inside its first batch
                c.cancel_all()
                assert not c.running
                if c.result is not None:  # on a quick machine the clip can finish before the cancel:
                    # then it is the whole clip, never a partial one passed off as a result
                    assert c.result.clip == str(long) and c.n_scored == c.frame_count == 200, f"cycle {k}"
                n = c.n_scored
                qtbot.wait(5)
                assert c.n_scored == n, f"cycle {k}: results landed after the cancel"
            now = refs()
            if k == 1:  # after the first cycles have filled the caches
                baseline = now
            elif baseline is not None:
                assert now[0] > baseline[0] - 500, f"{BINDING}, cycle {k}: references to None {baseline[0]} -> {now[0]}"
                # The defect this guards against loses a reference per signal call: thousands over
                # these cycles. The count also wanders by about a hundred with what the viewer holds
                # at the moment (seen: -109 at cycle 72 in one clean-clone run, flat in others).
                assert now[1] > baseline[1] - 500, f"{BINDING}, cycle {k}: references to True {baseline[1]} -> {now[1]}"
    finally:
        w.close()
    assert not c.thread_running


def test_startup_check_of_the_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The viewer's start-up check: silent on a sound binding, one line on one that loses
    references (as 6.12.0 does: simulated here by a falling count)."""
    from lusviewer.ui.app import qt_binding_defect

    assert qt_binding_defect() is None, f"{BINDING}: {qt_binding_defect()}"
    counts = iter(range(10_000, 0, -1))
    real = sys.getrefcount
    monkeypatch.setattr(sys, "getrefcount", lambda obj: next(counts) * 64 if obj is True else real(obj))
    message = qt_binding_defect()
    assert message is not None and "PySide6-Essentials!=6.12.0" in message and "\n" not in message
