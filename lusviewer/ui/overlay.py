"""The overlay over the frame on screen: asks the controller for the frame's
reconstruction (and Grad-CAM), keeps the last one that came back, and draws the
mode chosen (reconstruction, error map, Grad-CAM) at the chosen opacity."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtWidgets import QComboBox, QSlider

from lusviewer.ui.frame_view import OVERLAY_MODES, FrameView

if TYPE_CHECKING:
    from lusviewer.ui.controller import Controller


class OverlayPresenter:
    """``mode_box`` holds the index into :data:`OVERLAY_MODES`, ``opacity`` 0-100;
    ``notify`` (text, milliseconds) is the window's passing message."""

    def __init__(
        self,
        controller: Controller,
        view: FrameView,
        mode_box: QComboBox,
        opacity: QSlider,
        notify: Callable[[str, int], None],
    ) -> None:
        self._c = controller
        self._view = view
        self._mode_box = mode_box
        self._opacity = opacity
        self._notify = notify
        self._frame: np.ndarray | None = None
        #: The last overlay that came back: frame index, reconstruction|None, Grad-CAM|None.
        self.cache: tuple[int, np.ndarray | None, np.ndarray | None] | None = None

    @property
    def mode(self) -> str:
        return OVERLAY_MODES[self._mode_box.currentIndex()]

    def cycle(self) -> None:
        self._mode_box.setCurrentIndex((self._mode_box.currentIndex() + 1) % len(OVERLAY_MODES))

    def reset(self) -> None:
        """A new clip: nothing shown, nothing kept."""
        self._view.clear_overlay()
        self.cache = None

    def mode_changed(self, _i: int) -> None:
        self._view.clear_overlay()
        if self.cache is not None and self.mode == "grad-cam" and self.cache[2] is None:
            self.cache = None  # the cached frame has no Grad-CAM yet
        self.refresh()

    def frame_shown(self, frame: np.ndarray) -> None:
        self._frame = frame
        self.refresh()

    def refresh(self) -> None:
        mode = self.mode
        if mode == "off" or self._c.reader is None:
            self._view.clear_overlay()
            return
        cached = self.cache
        if cached is not None and cached[0] == self._c.index:
            self._draw(*cached)
            return
        # Another frame's map must not stay over this frame: hide it until this one's arrives.
        self._view.clear_overlay()
        if self._c.model_status is not None:
            self._c.request_overlay(want_cam=mode == "grad-cam")

    def arrived(self, index: int, rec: np.ndarray | None, cam: np.ndarray | None) -> None:
        self.cache = (index, rec, cam)
        if index == self._c.index:
            self._draw(index, rec, cam)

    def _draw(self, index: int, rec: np.ndarray | None, cam: np.ndarray | None) -> None:
        mode = self.mode
        if rec is None or self._frame is None:
            self._view.clear_overlay()
            self._notify("This model has no autoencoder: no reconstruction overlay", 5000)
        elif mode == "reconstruction":
            self._view.show_reconstruction(rec)
        elif mode == "error":
            self._view.show_error(self._frame, rec)
        elif mode == "grad-cam":
            if cam is None:
                self._c.request_overlay(want_cam=True)
            else:
                self._view.show_cam(cam)
                from lusviewer.inference.saliency import share_on_background

                background = share_on_background(cam, self._frame)
                if background > 0.5:
                    self._notify(
                        f"⚠ Grad-CAM: {100 * background:.0f} % of it on black background, not on the lung", 10000
                    )
        self._view.set_overlay_opacity(self._opacity.value() / 100)
