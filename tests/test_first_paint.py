"""The viewer's first paint: the whole window, at once, before torch and the model load
(on the worker, afterwards); a clip opened meanwhile waits for the model and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QObject, QSettings

from lusviewer.ui.main_window import MainWindow
from lusviewer.ui.worker import InferenceWorker

TIMEOUT = 60_000  # ms: torch's import and scoring under a loaded CI machine

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


class PaintTimes(QObject):
    """When ``target`` received its paint events."""

    def __init__(self, target: QObject) -> None:
        super().__init__()
        self.target = target
        self.times: list[float] = []

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.target and event.type() == QEvent.Type.Paint:
            self.times.append(time.perf_counter())
        return False


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, bool]]:
    """Each model load the worker starts: when, and whether on the GUI (main) thread."""
    seen: list[tuple[float, bool]] = []
    original = InferenceWorker.load_model

    def load_model(self: InferenceWorker, path: str, device: str) -> None:
        seen.append((time.perf_counter(), threading.current_thread() is threading.main_thread()))
        original(self, path, device)

    monkeypatch.setattr(InferenceWorker, "load_model", load_model)
    return seen


def test_window_paints_before_the_model_loads_on_the_worker(  # type: ignore[no-untyped-def]
    qtbot, tiny_model: Path, settings: QSettings, loads: list[tuple[float, bool]]
) -> None:
    from PySide6.QtWidgets import QApplication

    w = MainWindow(str(tiny_model), settings, quiet=True)
    qtbot.addWidget(w)
    paints = PaintTimes(w)
    QApplication.instance().installEventFilter(paints)  # type: ignore[union-attr]
    try:
        qtbot.wait(100)  # built, not shown: nothing asks for torch yet
        assert loads == [], "the model started loading before the window was shown and painted"
        at_paint: list[tuple[str, bool]] = []  # what the first paint showed (before the model can be ready)
        w.first_painted.connect(lambda: at_paint.append((w.model_label.text(), w.frame_view.hint.isVisible())))
        with qtbot.waitSignal(w.first_painted, timeout=TIMEOUT):
            w.show()
        assert at_paint == [("Loading model…", True)]
        assert "Open" in w.frame_view.hint.text()
        qtbot.waitUntil(lambda: w.controller.model_status is not None, timeout=TIMEOUT)
    finally:
        QApplication.instance().removeEventFilter(paints)  # type: ignore[union-attr]
    assert len(loads) == 1, loads
    (started, on_gui_thread), first_paint = loads[0], paints.times[0]
    assert not on_gui_thread, "the model was loaded on the GUI thread"
    assert first_paint < started, "the model started loading before the window's first paint"
    assert w.status_bar.model_label.text().startswith("Model: tiny-cnn_lstm")
    w.close()
    assert not w.controller.thread_running


def test_clip_opened_while_the_model_loads_waits_for_it_and_says_so(  # type: ignore[no-untyped-def]
    qtbot, tiny_model: Path, settings: QSettings, synthetic_clip: Path, loads: list[tuple[float, bool]]
) -> None:
    from lusviewer.ui.scoring_state import WAITING_FOR_MODEL

    w = MainWindow(str(tiny_model), settings, quiet=True)  # never shown: opening asks for the model
    qtbot.addWidget(w)
    assert w.open_clip(str(synthetic_clip))
    c = w.controller
    assert c.running and c.model_loading and len(loads) <= 1
    assert w.rate_label.text() == "Waiting for the model…"
    assert w.summary.rule.text() == WAITING_FOR_MODEL and w.summary.score.text() == "Waiting…"
    assert w.frame_view.hint.isHidden()  # the clip's first frame replaced it
    qtbot.waitUntil(lambda: c.result is not None, timeout=TIMEOUT)
    assert c.failure is None and len(c.scores) == 40 and len(loads) == 1
    assert w.summary.rule.text() != WAITING_FOR_MODEL and "Waiting" not in w.rate_label.text()
    assert w.rate_label.text().startswith("Scored 40 frames")
    w.close()


def test_waiting_clip_says_scoring_once_the_model_is_ready_whatever_the_labels_say(  # type: ignore[no-untyped-def]
    qtbot, tiny_model: Path, settings: QSettings, synthetic_clip: Path
) -> None:
    """Whether a clip waits for the model is the window's state, not its summary's text:
    a retranslated (or reworded) waiting message still gives way to "Scoring…" when the
    model is ready. (It compared the label's text with WAITING_FOR_MODEL: "Waiting…"
    stayed in the summary until the clip score came.)"""
    w = MainWindow(str(tiny_model), settings, quiet=True)  # never shown: opening asks for the model
    qtbot.addWidget(w)
    assert w.open_clip(str(synthetic_clip))
    assert w.controller.model_loading and w.summary.score.text() == "Waiting…"
    w.summary.rule.setText("En attente du modèle ; l'analyse commence dès qu'il est prêt.")
    at_ready: list[tuple[str, str]] = []  # connected after the window: what it says once it has handled it
    w.controller.model_ready.connect(lambda _st: at_ready.append((w.summary.score.text(), w.rate_label.text())))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=TIMEOUT)
    assert at_ready == [("Scoring…", "Scoring…")]
    w.close()


def test_clip_opened_while_a_missing_model_loads_ends_as_no_model(  # type: ignore[no-untyped-def]
    qtbot, settings: QSettings, tmp_path: Path, synthetic_clip: Path
) -> None:
    w = MainWindow(str(tmp_path / "missing.json"), settings, quiet=True)
    qtbot.addWidget(w)
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.model_label.text() == "No model loaded", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not w.controller.running, timeout=TIMEOUT)
    assert w.summary.score.text() == "No model" and w.summary.rule.text() == ""
    assert w.rate_label.text() == "No model: not scored"
    assert w.controller.info is not None  # the clip stays open for viewing
    w.close()


_LAUNCH = """
import json, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
seen = {"gui_imports_torch": "torch" in sys.modules}
import lusviewer.ui.app as app_module
seen["after_app_import"] = "torch" in sys.modules
app = QApplication(sys.argv[:1])

class Watch(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and isinstance(obj, QMainWindow) and "first_paint" not in seen:
            seen["first_paint"] = {"torch": "torch" in sys.modules, "status": obj.model_label.text()}
        return False

watch = Watch()
app.installEventFilter(watch)
t0 = time.perf_counter()

def check():
    w = next((w for w in app.topLevelWidgets() if isinstance(w, QMainWindow)), None)
    if w is None or not (w.model_label.text().startswith("Model:") or time.perf_counter() - t0 > 50):
        return
    seen["model"] = w.model_label.text()
    print(json.dumps(seen), flush=True)
    w.controller.shutdown()
    app.exit(0)

tick = QTimer()
tick.timeout.connect(check)
tick.start(20)
sys.exit(app_module.run_gui(None, sys.argv[1]))
"""


def test_launch_paints_before_torch_is_imported(tiny_model: Path, tmp_path: Path) -> None:
    """The real launch path (``run_gui``), in a fresh process: the first paint happens
    before anything imports torch, and says the model is loading; the model then loads."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path))
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no settings of the user's
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCH, str(tiny_model)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert not seen["gui_imports_torch"] and not seen["after_app_import"]
    assert seen["first_paint"] == {"torch": False, "status": "Loading model…"}, seen
    assert seen["model"].startswith("Model: tiny-cnn_lstm"), seen


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities (nice) are Linux/Unix only")
def test_model_loads_at_the_gui_priority_and_scores_below_it(  # type: ignore[no-untyped-def]
    qtbot, tiny_model: Path, settings: QSettings, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A niced worker holding the GIL on a busy core froze the window for seconds while
    the model loaded: it loads at the GUI thread's priority (torch's pool kept to one
    thread), and is lowered before the first job."""
    import torch

    import lusviewer.model

    gui_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    threads = torch.get_num_threads()
    during: list[tuple[int, int, int]] = []  # worker thread id, its nice, torch's threads
    original = lusviewer.model.load_model

    def load_model(path: str) -> object:
        tid = threading.get_native_id()
        during.append((tid, os.getpriority(os.PRIO_PROCESS, tid), torch.get_num_threads()))
        return original(path)

    monkeypatch.setattr(lusviewer.model, "load_model", load_model)
    w = MainWindow(str(tiny_model), settings, quiet=True)
    qtbot.addWidget(w)
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=TIMEOUT)
    [(tid, nice, pool)] = during
    assert nice == gui_nice and pool == 1
    assert torch.get_num_threads() == threads  # put back for the jobs
    if gui_nice < 10:  # lowered unless it already was at least 10
        assert os.getpriority(os.PRIO_PROCESS, tid) == 10
    w.close()
