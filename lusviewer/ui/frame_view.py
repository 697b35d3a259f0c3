"""The frame at full resolution with its overlay (reconstruction, error map, Grad-CAM).

It draws what it is given; it knows nothing of the model, the worker or the clip file.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QWidget

import lusviewer.ui.palette  # noqa: F401  # pyqtgraph's options, before any item is made

OVERLAY_MODES = ("off", "reconstruction", "error", "grad-cam")
#: The empty view's text.
EMPTY_HINT = "No clip open\n\nFile › Open (Ctrl+O), or drop clips here\n(several clips: one exam)"


class FrameView(pg.GraphicsLayoutWidget):  # type: ignore[misc]  # pyqtgraph has no type information
    """The frame at full resolution, aspect kept, mouse zoom/pan, fixed levels, overlay."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("k")
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.overlay.setOpacity(0.5)
        self.overlay.setVisible(False)
        self.view.addItem(self.image)
        self.view.addItem(self.overlay)
        self._error_map = pg.colormap.get("inferno")
        self._grey_map = pg.ColorMap(pos=[0.0, 1.0], color=[(0, 0, 0), (255, 255, 255)])
        self._cam_map = pg.colormap.get("turbo") if "turbo" in pg.colormap.listMaps() else self._error_map
        self.legend = pg.ColorBarItem(
            values=(0, 128),
            colorMap=self._error_map,
            interactive=False,
            width=14,
        )
        self.legend.setVisible(False)
        self.addItem(self.legend)
        self._shape: tuple[int, int] | None = None
        # What to do, until the first frame arrives (the window's first paint says it).
        self.hint = QLabel(EMPTY_HINT, self)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #c8c8c8; background: transparent; font-size: 15pt;")
        self.hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if hasattr(self, "hint"):  # pyqtgraph resizes the view while it is built
            self.hint.setGeometry(self.rect().adjusted(20, 20, -20, -20))

    def set_frame(self, frame: np.ndarray) -> None:
        self.hint.hide()
        first = self._shape != frame.shape[:2]
        self.image.setImage(frame, autoLevels=False, levels=(0, 255))
        if first:
            self._shape = (frame.shape[0], frame.shape[1])
            self.fit()

    def fit(self) -> None:
        self.view.autoRange(padding=0.0)

    def clear_overlay(self) -> None:
        self.overlay.setVisible(False)
        self.legend.setVisible(False)

    def show_reconstruction(self, rec: np.ndarray) -> None:
        self.overlay.setLookupTable(None)
        self.overlay.setImage(rec, autoLevels=False, levels=(0, 255))
        self.overlay.setVisible(True)
        # Its legend: the grey levels of the autoencoder's reconstruction, drawn over the frame.
        self.legend.setColorMap(self._grey_map)
        self.legend.setLevels((0.0, 255.0))
        self.legend.axis.setLabel("autoencoder's reconstruction (grey levels)")
        self.legend.setVisible(True)

    def show_error(self, frame: np.ndarray, rec: np.ndarray) -> None:
        err = np.abs(frame.astype(np.int16) - rec.astype(np.int16)).mean(2).astype(np.float32)
        self._show_map(err, (0.0, 128.0), self._error_map, "|frame − reconstruction| (grey levels)")

    def show_cam(self, cam: np.ndarray) -> None:
        self._show_map(cam, (0.0, 1.0), self._cam_map, "Grad-CAM of the CNN's score (scaled per frame)")

    def _show_map(self, data: np.ndarray, levels: tuple[float, float], cmap: pg.ColorMap, label: str) -> None:
        self.overlay.setImage(data, autoLevels=False, levels=levels)
        # Transparent where the map is low, so the anatomy stays visible under it.
        lut = cmap.getLookupTable(nPts=256, alpha=True)
        lut[:, 3] = np.clip(np.linspace(0, 255 * 2.5, 256), 0, 255).astype(lut.dtype)
        self.overlay.setLookupTable(lut)
        self.overlay.setVisible(True)
        self.legend.setColorMap(cmap)
        self.legend.setLevels(levels)
        self.legend.axis.setLabel(label)
        self.legend.setVisible(True)

    def set_overlay_opacity(self, value: float) -> None:
        self.overlay.setOpacity(value)
