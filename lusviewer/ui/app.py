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


def run_gui(clip: str | None = None, model: str | None = None) -> int:
    if sys.platform == "win32":
        import torch  # noqa: F401  # DLL load order: torch before Qt on Windows

    from PySide6.QtCore import QCoreApplication, QtMsgType, qInstallMessageHandler
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication

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
    window = MainWindow(model or str(default_model_path()))
    window.show()
    if clip:
        window.open_clip(clip)
    return int(app.exec())
