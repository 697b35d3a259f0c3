"""Start the viewer: logging to a file, Qt messages and uncaught errors into it
(with a dialog: a double-clicked app has no console), then the main window."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import traceback
from pathlib import Path
from types import TracebackType

log = logging.getLogger("lusviewer")


def log_dir() -> Path:
    from platformdirs import user_log_dir

    return Path(user_log_dir("lusviewer", appauthor=False))


def setup_logging() -> Path:
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lusviewer.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def install_excepthook(log_path: Path) -> None:
    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("uncaught error:\n%s", text)
        from PySide6.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is not None:
            box = QMessageBox(
                QMessageBox.Icon.Critical,
                "Unexpected error",
                f"{exc_type.__name__}: {exc}\n\nThe app carries on; details are in\n{log_path}",
            )
            box.setDetailedText(text)
            box.exec()

    sys.excepthook = hook


def qt_binding_defect(calls: int = 64) -> str | None:
    """One line naming a reference-counting defect of the Qt binding, measured here; None if sound.

    PySide6 6.12.0 (its shiboken6) drops a reference to ``True`` on every
    ``Signal.emit()`` and one to ``None`` on every call of a method that returns
    nothing; on Python < 3.12 the process aborts when a count reaches zero
    (``Fatal Python error: none_dealloc``): the viewer after about 30 clips.
    pyproject.toml excludes that release; this catches an environment that has it anyway.
    """
    import PySide6
    from PySide6.QtCore import QObject, Signal

    class Probe(QObject):
        ping = Signal()

    probe = Probe()
    true0, none0 = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(calls):
        probe.ping.emit()
        probe.setObjectName("probe")
    lost = max(true0 - sys.getrefcount(True), none0 - sys.getrefcount(None))
    if lost < calls // 2:
        return None
    return (
        f"PySide6 {PySide6.__version__} loses a Python reference on every signal or call ({lost} in {calls}): "
        "the viewer will crash after some clips; install another release "
        "(pip install 'PySide6-Essentials!=6.12.0')"
    )


def run_gui(clip: str | None = None, model: str | None = None) -> int:
    if sys.platform == "win32":
        import torch  # noqa: F401  # DLL load order: torch before Qt on Windows

    from PySide6.QtCore import QCoreApplication, QtMsgType, qInstallMessageHandler
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication, QMessageBox

    from lusviewer import __version__
    from lusviewer.resources import default_model_path, resource_path
    from lusviewer.ui.main_window import MainWindow

    log_path = setup_logging()
    log.info("lusviewer %s starting", __version__)

    def qt_messages(mode: QtMsgType, _ctx: object, message: str) -> None:
        level = {
            QtMsgType.QtDebugMsg: logging.DEBUG,
            QtMsgType.QtInfoMsg: logging.INFO,
            QtMsgType.QtWarningMsg: logging.WARNING,
        }.get(mode, logging.ERROR)
        logging.getLogger("qt").log(level, message)

    qInstallMessageHandler(qt_messages)
    QCoreApplication.setOrganizationName("lusviewer")
    QCoreApplication.setApplicationName("LUS Viewer")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    QGuiApplication.setDesktopFileName("lusviewer")  # ties windows to lusviewer.desktop (Wayland, taskbars)
    icon = resource_path("resources", "icons", "lusviewer-256.png")
    if icon.is_file():
        QGuiApplication.setWindowIcon(QIcon(str(icon)))
    install_excepthook(log_path)
    defect = qt_binding_defect()
    if defect:
        log.error("%s", defect)
        print(f"lusviewer: warning: {defect}", file=sys.stderr)
        QMessageBox.warning(None, "Qt binding defect", defect)
    window = MainWindow(model or str(default_model_path()))
    window.show()  # painted at once: the model loads on the worker after the first paint
    if clip:  # then the clip opens and scores (its first frame is decoded here, on the GUI thread)
        window.first_painted.connect(lambda: window.open_clip(clip))
    return int(app.exec())
