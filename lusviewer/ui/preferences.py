"""What the viewer remembers between sessions (``QSettings``): the window's geometry and
splitters, the overlay and the timeline's curves, the device, the exam's protocol, and
the recent clips."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QApplication

from lusviewer.ui.frame_view import OVERLAY_MODES

if TYPE_CHECKING:
    from lusviewer.ui.main_window import MainWindow

MAX_RECENT = 10


def _as_int(value: object) -> int:
    """A number read back from QSettings: the int written, or its text (INI files)."""
    if isinstance(value, (int, float, str, bytes)):
        return int(value)
    raise TypeError(f"not a number: {value!r}")


def _as_state(value: object) -> QByteArray | bytes | None:
    """A saved geometry or splitter state, or None when there is none."""
    return value if isinstance(value, (QByteArray, bytes)) else None


class Preferences:
    """Restores the window's saved layout and choices, saves them on close, and keeps
    the *Open Recent* menu."""

    def __init__(self, window: MainWindow, settings: QSettings) -> None:
        self._w = window
        self._s = settings

    def restore(self) -> None:
        w, s = self._w, self._s
        geom = _as_state(s.value("geometry"))
        if geom is not None:
            w.restoreGeometry(geom)
        self.fit_to_screen()
        split = _as_state(s.value("splitter"))
        if split is not None:
            w.splitter.restoreState(split)
        split = _as_state(s.value("right_splitter"))
        if split is not None:
            w.right_splitter.restoreState(split)
        mode = _as_int(s.value("overlay_mode", 0))
        w.overlay_mode.setCurrentIndex(mode if 0 <= mode < len(OVERLAY_MODES) else 0)
        w.opacity.setValue(_as_int(s.value("overlay_opacity", 50)))
        w.show_probs.setChecked(str(s.value("show_probabilities", "true")).lower() == "true")
        w.show_recon.setChecked(str(s.value("show_recon_error", "true")).lower() == "true")
        zones = _as_int(s.value("exam_zones", 0) or 0)
        if zones in (6, 14):
            w.controller.set_exam_zones(zones)
            w.exam_panel.set_zones(zones)
        self.refresh_recent()

    def fit_to_screen(self) -> None:
        """Keep the window on the screen it opens on: a layout saved on a larger screen
        would otherwise put the status bar (and its disclaimer) out of sight."""
        w = self._w
        screen = w.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        g = w.geometry()
        if avail.contains(g):
            return
        width, height = min(g.width(), avail.width()), min(g.height(), avail.height())
        w.resize(width, height)
        x = min(max(g.x(), avail.x()), avail.right() - width + 1)
        y = min(max(g.y(), avail.y()), avail.bottom() - height + 1)
        w.move(x, y)

    def save(self) -> None:
        w, s = self._w, self._s
        s.setValue("geometry", w.saveGeometry())
        s.setValue("splitter", w.splitter.saveState())
        # only a balance the user chose: a saved automatic one, restored, counted as the user's
        # and kept the Exam tab from getting the height its rows need (layout.SideSplitter)
        if w.right_splitter.user_set:
            s.setValue("right_splitter", w.right_splitter.saveState())
        else:
            s.remove("right_splitter")
        s.setValue("overlay_mode", w.overlay_mode.currentIndex())
        s.setValue("overlay_opacity", w.opacity.value())
        s.setValue("show_probabilities", "true" if w.show_probs.isChecked() else "false")
        s.setValue("show_recon_error", "true" if w.show_recon.isChecked() else "false")
        s.setValue("device", w.controller.device)
        s.sync()

    def recent_files(self) -> list[str]:
        v = self._s.value("recent_files", [])
        if isinstance(v, str):
            return [v]
        if isinstance(v, (list, tuple)):
            return [str(x) for x in v]
        return []

    def add_recent(self, path: str) -> None:
        items = [path] + [p for p in self.recent_files() if p != path]
        self._s.setValue("recent_files", items[:MAX_RECENT])
        self.refresh_recent()

    def refresh_recent(self) -> None:
        menu = self._w.recent_menu
        menu.clear()
        files = self.recent_files()
        for p in files:
            menu.addAction(p, partial(self._w.open_clip, p))
        menu.setEnabled(bool(files))
