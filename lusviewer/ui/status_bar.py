"""The status bar: the model, scoring progress with its rate and a Cancel button, the
clips still queued, passing messages, and the research-use disclaimer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QSizePolicy, QStatusBar, QWidget

from lusviewer.ui.dialogs import DISCLAIMER

if TYPE_CHECKING:
    from lusviewer.ui.worker import ModelStatus


class ElidedLabel(QLabel):
    """One line that fits its width: elided in the middle (a path keeps its start and its
    file name), the whole text in the tooltip. It never widens the window."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setFullText(text)

    def fullText(self) -> str:  # Qt's naming
        return self._full

    def setFullText(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def clear(self) -> None:
        self.setFullText("")

    def minimumSizeHint(self) -> QSize:
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        """As wide as the whole text (the layout gives what there is; less: elided)."""
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + 4, super().sizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width()
        if not self.isVisible() or width <= 0:  # not laid out yet: resizeEvent elides once it is
            self.setText(self._full)
            return
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, width))


class FittedLabel(QLabel):
    """A status line that gives way when the bar is narrow (elided at its end, the whole text
    in the tooltip) rather than widening the window: the model, the rate and the Cancel
    button beside the disclaimer made the window's minimum 1029-1036 px while scoring, past
    a 1024 px screen. ``text()`` is the whole text."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setText(text)

    def text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._fit()
        self.updateGeometry()

    def minimumSizeHint(self) -> QSize:
        return QSize(min(60, self.fontMetrics().horizontalAdvance(self._full)), super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + 4, super().sizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        width = self.contentsRect().width()
        shown = self._full
        if self.isVisible() and width > 0:
            shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width)
        super().setText(shown)


class StatusBar(QStatusBar):
    """Shows what it is given; ``cancel_button`` is the window's to connect."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_label = FittedLabel("Loading model…")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setMinimumWidth(60)
        self.progress.setVisible(False)
        self.rate_label = FittedLabel("")
        self.queue_label = FittedLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel scoring (Esc)")
        self.cancel_button.setVisible(False)
        # Messages go to their own label: QStatusBar.showMessage would hide the model,
        # the progress and the queue while they show.
        self.message_label = ElidedLabel("")
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(self.message_label.clear)
        disclaimer = QLabel(DISCLAIMER)
        disclaimer.setStyleSheet("color: #a00; font-weight: bold;")
        self.addWidget(self.model_label)
        self.addWidget(self.progress)
        self.addWidget(self.rate_label)
        self.addWidget(self.cancel_button)
        self.addWidget(self.queue_label)
        self.addWidget(self.message_label, 1)
        self.addPermanentWidget(disclaimer)

    def notify(self, text: str, ms: int = 5000) -> None:
        """A passing message (the model and progress stay visible)."""
        self.message_label.setFullText(text)
        self._message_timer.start(ms)

    def show_model(self, st: ModelStatus) -> None:
        self.model_label.setText(f"Model: {st.name} · {st.device}")

    def show_model_loading(self) -> None:
        self.model_label.setText("Loading model…")

    def show_no_model(self) -> None:
        self.model_label.setText("No model loaded")

    def scoring_started(self, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.rate_label.setText("Scoring…")

    def show_progress(self, done: int, total: int, fps: float) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        eta = (total - done) / fps if fps > 0 else 0.0
        self.rate_label.setText(f"{done}/{total} frames · {fps:.1f} frames/s · {eta:.0f} s left")

    def scoring_over(self, text: str) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.rate_label.setText(text)

    def show_queue(self, remaining: int) -> None:
        self.queue_label.setText(f"{remaining} more clip{'s' if remaining != 1 else ''} queued" if remaining else "")
