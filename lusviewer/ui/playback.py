"""Moving through the clip: play at the clip's own rate, seek (drags rate-limited to
the display rate), step, jump, and jump to the next change of score."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QStyle, QToolButton

if TYPE_CHECKING:
    from lusviewer.ui.controller import Controller


class Playback(QObject):
    """Drives :class:`~lusviewer.ui.controller.Controller`'s frame index; ``button`` is the
    play/pause button, whose icon it keeps in step."""

    def __init__(self, controller: Controller, button: QToolButton, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._c = controller
        self._button = button
        self._play_icon = button.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
        self._pause_icon = button.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause)
        button.setIcon(self._play_icon)
        self._pending_seek: int | None = None
        self._playing = False
        self._play_t0 = 0.0
        self._play_i0 = 0
        self.play_timer = QTimer(self)
        self.play_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.play_timer.timeout.connect(self._play_tick)
        self._seek_timer = QTimer(self)  # rate-limit drag seeks to the display rate
        self._seek_timer.setSingleShot(True)
        self._seek_timer.setInterval(15)
        self._seek_timer.timeout.connect(self._flush_seek)

    @property
    def playing(self) -> bool:
        return self._playing

    def seek(self, index: int) -> None:
        # Rate-limit: at most one decode per display refresh while dragging.
        self._pending_seek = int(index)
        if not self._seek_timer.isActive():
            self._flush_seek()
            self._seek_timer.start()

    def _flush_seek(self) -> None:
        if self._pending_seek is not None:
            i, self._pending_seek = self._pending_seek, None
            self._c.seek(i)

    def jump(self, index: int) -> None:
        self.stop()
        self._pending_seek = None
        self._c.seek(index)

    def step(self, delta: int) -> None:
        self.stop()
        self._pending_seek = None
        self._c.step(delta)

    def jump_to_change(self, direction: int) -> None:
        """The next (``direction`` 1) or previous (-1) frame where the score changes."""
        c = self._c
        n = c.n_scored
        if n < 2:
            return
        changes = np.flatnonzero(np.diff(c.scores[:n])) + 1  # first frames of new runs
        if direction > 0:
            later = changes[changes > c.index]
            target = int(later[0]) if later.size else n - 1
        else:
            earlier = changes[changes < c.index]
            target = int(earlier[-1]) if earlier.size else 0
        self.jump(target)

    def toggle(self) -> None:
        if self._playing:
            self.stop()
        elif self._c.info is not None:
            info = self._c.info
            if self._c.index >= info.frame_count - 1:
                self._c.seek(0)
            self._playing = True
            self._play_t0 = time.perf_counter()
            self._play_i0 = self._c.index
            self.play_timer.start(max(5, int(500 / max(info.fps, 1))))
            self._button.setIcon(self._pause_icon)

    def stop(self) -> None:
        self._playing = False
        self.play_timer.stop()
        self._button.setIcon(self._play_icon)

    def _play_tick(self) -> None:
        info = self._c.info
        if info is None:
            self.stop()
            return
        # The frame due now at the clip's own rate: late ticks skip frames, never lag.
        due = self._play_i0 + int((time.perf_counter() - self._play_t0) * info.fps)
        if due >= info.frame_count:
            self._c.seek(info.frame_count - 1)
            self.stop()
        elif due != self._c.index:
            self._c.seek(due)
