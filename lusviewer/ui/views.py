"""Thin views: the frame with its overlay, the severity timeline, the clip summary,
the exam (the clips scored so far and their LUS score total).

They draw what they are given and emit what the user does; none of them knows
about the model, the worker or the clip file.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, Signal, SignalInstance
from PySide6.QtGui import QColor, QFont, QIcon, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lusviewer.report.aggregate import LOW_CONFIDENCE, low_confidence, persistence_frames
from lusviewer.report.exam import PROTOCOLS, ExamEntry

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

#: One colour per severity score: green, amber, orange, red (colour-blind-safer hues).
SCORE_COLOURS = ("#2e9d4a", "#e3b505", "#ef7d1a", "#d62728")
SCORE_NAMES = (
    "0  A-lines, regular pleura",
    "1  indented pleura, B-lines",
    "2  broken pleura, small consolidations",
    "3  white lung",
)
SCORE_SHORT = ("0 normal", "1 B-lines", "2 consolidation", "3 white lung")
PROB_COLOURS = SCORE_COLOURS
OVERLAY_MODES = ("off", "reconstruction", "error", "grad-cam")


class FrameView(pg.GraphicsLayoutWidget):
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

    def set_frame(self, frame: np.ndarray) -> None:
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
        self.legend.setVisible(False)

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


class ScoreTimeline(pg.GraphicsLayoutWidget):
    """Per-frame score as a step line on 0-3, probabilities and reconstruction error
    below it, and a cursor at the current frame; click or drag to seek."""

    seek_requested = Signal(int)
    MAX_POINTS = 2000

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.score_plot = self.addPlot(row=0, col=0)
        self.prob_plot = self.addPlot(row=1, col=0)
        self.ci.layout.setRowStretchFactor(0, 3)
        self.ci.layout.setRowStretchFactor(1, 2)
        sp, pp = self.score_plot, self.prob_plot
        for p in (sp, pp):
            p.setMenuEnabled(False)
            p.setMouseEnabled(x=False, y=False)
            p.hideButtons()
            p.showGrid(x=True, y=False, alpha=0.15)
            p.getAxis("left").setWidth(110)
            for ax in ("left", "bottom"):
                p.getAxis(ax).setTextPen("k")
                p.getAxis(ax).setPen("k")
        sp.setYRange(-0.4, 3.4, padding=0)
        sp.getAxis("left").setTicks([[(k, name) for k, name in enumerate(SCORE_SHORT)]])
        # Rich text: no "<" in it.
        sp.setTitle(f"Score per frame (dashed: probability below {LOW_CONFIDENCE:g})", color="k", size="10pt")
        pp.setXLink(sp)
        pp.setYRange(0, 1.45, padding=0)  # headroom above p = 1 for the legend, so it hides no curve
        pp.getAxis("left").setTicks([[(0, "0"), (0.5, "p = 0.5"), (1, "1")]])
        pp.setLabel("bottom", "frame", color="k")
        for k, c in enumerate(SCORE_COLOURS):
            band = pg.LinearRegionItem(
                values=(k - 0.4, k + 0.4),
                orientation="horizontal",
                movable=False,
                brush=pg.mkBrush(QColor(c).lighter(180).name() + "40"),
                pen=pg.mkPen(None),
            )
            band.setZValue(-10)
            sp.addItem(band)
        self.score_line = sp.plot(pen=pg.mkPen("#555555", width=1))
        self.score_levels = [sp.plot(connect="finite") for _ in SCORE_COLOURS]
        self.weak_levels = [sp.plot(connect="finite") for _ in SCORE_COLOURS]  # low-confidence runs, dashed
        self.set_unreliable(False)
        legend = pp.addLegend(offset=(-10, 5), colCount=5, labelTextColor="k", brush=pg.mkBrush(255, 255, 255, 200))
        self.prob_curves = [pp.plot(pen=pg.mkPen(c, width=1.5), name=f"p{k}") for k, c in enumerate(PROB_COLOURS)]
        self.recon_curve = pp.plot(
            pen=pg.mkPen("#1f5fbf", width=1.5, style=Qt.PenStyle.DashLine), name="recon error (÷ clip max)"
        )
        legend.setLabelTextSize("8pt")
        self.cursors = []
        for p in (sp, pp):
            line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#1f1fbf", width=2))
            line.sigDragged.connect(self._cursor_dragged)
            p.addItem(line)
            self.cursors.append(line)
            p.scene().sigMouseClicked.connect(self._clicked)
        for p in (sp, pp):
            p.getAxis("bottom").enableAutoSIPrefix(False)
        self._n = 0
        self._recon_scale = 1.0
        self.reset(0)

    def set_unreliable(self, on: bool) -> None:
        """Grey score lines: the clip is unlike the training clips, its scores are no finding."""
        for k, (strong, weak) in enumerate(zip(self.score_levels, self.weak_levels, strict=True)):
            colour = QColor("#9a9a9a") if on else QColor(SCORE_COLOURS[k])
            strong.setPen(pg.mkPen(colour, width=4))
            weak.setPen(pg.mkPen(colour, width=4, style=Qt.PenStyle.DashLine))

    def reset(self, n_frames: int) -> None:
        self._n = n_frames
        for item in [self.score_line, *self.score_levels, *self.weak_levels, *self.prob_curves, self.recon_curve]:
            item.setData([], [])
        self.set_unreliable(False)
        self.score_plot.setXRange(-0.5, (n_frames or 100) - 0.5, padding=0.01)  # no clip: an empty 0-100 axis
        for c in self.cursors:
            c.setBounds((0, max(n_frames - 1, 0)))
        self.set_cursor(0)

    def update_scores(
        self, scores: np.ndarray, probs: np.ndarray, recon: np.ndarray, n_done: int, weak: np.ndarray | None = None
    ) -> None:
        """Redraw the first ``n_done`` frames (a few thousand points: cheap)."""
        if n_done <= 0:
            return
        s = scores[:n_done]
        weak = low_confidence(probs[:n_done]) if weak is None else weak[:n_done]
        step = 1
        key = s * 2 + weak  # one step per run of equal scores and equal confidence
        starts = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
        if len(starts) > self.MAX_POINTS:  # flickering long clip: the worst score per bin
            step = -(-n_done // self.MAX_POINTS)
            pad = (-n_done) % step
            s = np.r_[s, np.full(pad, s[-1])].reshape(-1, step).max(1)
            weak = np.r_[weak, np.full(pad, weak[-1])].reshape(-1, step).mean(1) > 0.5
            key = s * 2 + weak
            starts = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
        x_edges = np.minimum(np.r_[starts * step, n_done], n_done).astype(np.float64) - 0.5
        runs = s[starts].astype(np.float64)
        weak_runs = weak[starts]
        self.score_line.setData(x_edges, runs, stepMode="center")
        for k, (strong_item, weak_item) in enumerate(zip(self.score_levels, self.weak_levels, strict=True)):
            on = runs == k
            strong_item.setData(x_edges, np.where(on & ~weak_runs, runs, np.nan), stepMode="center", connect="finite")
            weak_item.setData(x_edges, np.where(on & weak_runs, runs, np.nan), stepMode="center", connect="finite")
        # Long clips (10^4-10^5 frames): bin means, about MAX_POINTS per curve; a
        # 100,000-point path costs ~0.3 s to paint, far more than a screen shows.
        step = max(1, -(-n_done // self.MAX_POINTS))
        m = (n_done // step) * step
        x = np.arange(0, m, step, dtype=np.float64) + (step - 1) / 2
        for k, curve in enumerate(self.prob_curves):
            curve.setData(x, probs[:m, k].reshape(-1, step).mean(1))
        r = recon[:m]
        finite = r[np.isfinite(r)]
        if finite.size:
            self._recon_scale = float(max(finite.max(), 1e-6))
            self.recon_curve.setData(x, np.nan_to_num(r / self._recon_scale, nan=0.0).reshape(-1, step).mean(1))

    def set_probabilities_visible(self, on: bool) -> None:
        for c in self.prob_curves:
            c.setVisible(on)
        self._update_prob_plot_visibility()

    def set_recon_visible(self, on: bool) -> None:
        self.recon_curve.setVisible(on)
        self._update_prob_plot_visibility()

    def _update_prob_plot_visibility(self) -> None:
        self.prob_plot.setVisible(self.prob_curves[0].isVisible() or self.recon_curve.isVisible())

    def set_cursor(self, index: int) -> None:
        for c in self.cursors:
            with QSignalBlocker(c):
                c.setValue(index)

    def _cursor_dragged(self, line: pg.InfiniteLine) -> None:
        self.seek_requested.emit(round(line.value()))

    def _clicked(self, event: object) -> None:
        pos = event.scenePos()  # type: ignore[attr-defined]
        for p in (self.score_plot, self.prob_plot):
            if p.isVisible() and p.vb.sceneBoundingRect().contains(pos):
                x = p.vb.mapSceneToView(pos).x()
                if self._n:
                    self.seek_requested.emit(round(min(max(x, 0), self._n - 1)))
                return


class SummaryPanel(QWidget):
    """Clip score with its rule, how sure the model is, frames per score, and a jump
    to the frame behind the clip score."""

    jump_to_worst = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        self.title = QLabel("Clip score")
        self.score = QLabel("—")
        f = QFont()
        f.setPointSize(18)
        f.setBold(True)
        self.score.setFont(f)
        self.rule = QLabel("")
        self.rule.setWordWrap(True)
        self.rule.setStyleSheet("color: #555;")
        self.confidence = QLabel("")
        self.confidence.setWordWrap(True)
        grid = QGridLayout()
        self.count_labels = []
        for k, (c, name) in enumerate(zip(SCORE_COLOURS, SCORE_NAMES, strict=True)):
            swatch = QLabel()
            swatch.setFixedSize(14, 14)
            swatch.setStyleSheet(f"background: {c}; border: 1px solid #333;")
            lab = QLabel(name)
            cnt = QLabel("")
            cnt.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(swatch, k, 0)
            grid.addWidget(lab, k, 1)
            grid.addWidget(cnt, k, 2)
            self.count_labels.append(cnt)
        self.worst = QPushButton("Jump to worst frame")
        self.worst.setToolTip(
            "The frame behind the clip score: of the frames that make it, the one the model finds most severe"
        )
        self.worst.setEnabled(False)
        self.worst.clicked.connect(lambda: self.jump_to_worst.emit(self._worst))
        self._worst = 0
        self._clip_score: int | None = None
        head = QGridLayout()
        head.addWidget(self.title, 0, 0)
        head.addWidget(self.score, 1, 0)
        head.addWidget(self.worst, 1, 1, Qt.AlignmentFlag.AlignRight)
        layout.addLayout(head)
        # Shown only when the clip's images are unlike the model's training clips.
        self.familiarity = QLabel("")
        self.familiarity.setWordWrap(True)
        self.familiarity.setStyleSheet(
            "color: #8a1c00; background: #fff1e0; border: 1px solid #e0a060; padding: 3px; font-weight: bold;"
        )
        self.familiarity.hide()
        layout.addWidget(self.familiarity)
        layout.addWidget(self.rule)
        layout.addWidget(self.confidence)
        layout.addLayout(grid)

    def clear(self, text: str = "—") -> None:
        self.score.setText(text)
        self.score.setStyleSheet("")
        self.rule.setText("")
        self.confidence.setText("")
        self._clip_score = None
        self.set_familiarity("")
        for c in self.count_labels:
            c.setText("")
        self.worst.setEnabled(False)

    def set_counts(self, counts: np.ndarray | tuple[int, ...], total: int) -> None:
        for lab, c in zip(self.count_labels, counts, strict=False):
            pct = 100.0 * c / total if total else 0.0
            lab.setText(f"{int(c)} frames ({pct:.0f} %)")

    def set_progress(self, counts: np.ndarray | tuple[int, ...], scored: int, total: int) -> None:
        """While scoring runs: frames per score so far, out of the frames scored so far."""
        self.set_counts(counts, scored)
        self.rule.setText(f"Scoring… {scored} of {total} frames so far; the clip score follows when all are scored.")

    def set_confidence(self, low: np.ndarray) -> None:
        """How sure the model is of its frame scores, from the per-frame mask of
        :func:`~lusviewer.report.aggregate.low_confidence`: the share of frames where
        the score it shows has a probability below :data:`LOW_CONFIDENCE`."""
        n = len(low)
        if not n:
            self.confidence.setText("")
            return
        weak = int(np.count_nonzero(low))
        share = 100.0 * weak / n
        if weak * 2 > n:
            self.confidence.setText(
                f"⚠ Low confidence: on {share:.0f} % of frames the model gives its score a probability "
                f"below {LOW_CONFIDENCE:g} (dashed on the timeline). A weak call, close to a guess."
            )
            self.confidence.setStyleSheet("color: #8a5a00; font-weight: bold;")
        else:
            self.confidence.setText(
                f"On {share:.0f} % of frames the model gives its score a probability below {LOW_CONFIDENCE:g} "
                "(dashed on the timeline)."
            )
            self.confidence.setStyleSheet("color: #555;")

    def set_familiarity(self, warning: str) -> None:
        """Warn when the clip is unlike the model's training clips (``ClipResult.familiarity_warning``):
        the clip score is then withheld, not shown as a finding (the report keeps it, flagged)."""
        if warning:
            self.familiarity.setText(
                f"⚠ This clip looks {warning}. The model's output is no finding: clip score withheld."
            )
            self.familiarity.show()
            if self._clip_score is not None:
                self.score.setText("No reliable score")
                self.score.setStyleSheet("color: #888;")
                self.rule.setText(
                    f"The model's output would be score {self._clip_score} (in the CSV report, marked "
                    "unfamiliar); do not read it as a finding."
                )
        else:
            self.familiarity.hide()
            self.familiarity.setText("")

    def set_summary(
        self, clip_score: int, rule: str, counts: tuple[int, ...], worst: int, total: int, fps: float = 0.0
    ) -> None:
        self._clip_score = clip_score
        self.score.setText(f"Score {clip_score}")
        self.score.setStyleSheet(f"color: {SCORE_COLOURS[clip_score]};")
        held = f" ({persistence_frames(total, fps) / fps:.2f} s)" if rule.startswith("persistent") and fps > 0 else ""
        self.rule.setText(f"Rule — {rule}{held}. Worst frame: {worst}.")
        self.set_counts(counts, total)
        self._worst = worst
        self.worst.setEnabled(True)


def _swatch(score: int) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(SCORE_COLOURS[score]))
    return QIcon(pix)


CLINICIAN_CHOICES = ("—", "0", "1", "2", "3")


class _FocusedComboBox(QComboBox):
    """A combo box in a table row: the mouse wheel scrolls the table, and changes the
    value only once the box has been clicked (a clinician's score never changes by a scroll)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()


class ExamPanel(QWidget):
    """The exam: one row per scored clip (zone, the model's clip score, the clinician's
    own score, a note), the LUS score total, and buttons to open, remove, clear and
    export. It shows what it is given."""

    open_requested = Signal(str)  # clip path
    remove_requested = Signal(str)
    clinician_score_changed = Signal(str, object)  # clip path, 0-3 or None
    zones_changed = Signal(object)  # the protocol's number of zones, or None
    clear_requested = Signal()
    export_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        self.total = QLabel("No clip in the exam yet")
        f = QFont()
        f.setPointSize(13)
        f.setBold(True)
        self.total.setFont(f)
        self.total.setWordWrap(True)
        self.total.setToolTip(
            "Every clip scored in this session is added; the LUS score is the sum of the clip scores."
        )
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Zone (clip)", "Model", "Yours", "Note"])
        self.table.horizontalHeaderItem(1).setToolTip("The model's clip score")
        self.table.horizontalHeaderItem(2).setToolTip(
            "Your own score of the zone (0-3), recorded beside the model's and exported with the exam"
        )
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        # The clip tab sets the panel's height; the table scrolls rather than squeezing the timeline.
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.table.setMinimumHeight(6 * 22 + 26)  # the six BLUE points without scrolling
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.cellDoubleClicked.connect(lambda row, _col: self._emit_for_row(self.open_requested, row))
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the selected clip again (double-click a row)")
        self.remove_button = QPushButton("Remove")
        self.clear_button = QPushButton("Clear exam")
        self.export_button = QPushButton("Export exam CSV…")
        self.open_button.clicked.connect(lambda: self._emit_for_row(self.open_requested, self.table.currentRow()))
        self.remove_button.clicked.connect(lambda: self._emit_for_row(self.remove_requested, self.table.currentRow()))
        self.clear_button.clicked.connect(self.clear_requested)
        self.export_button.clicked.connect(self.export_requested)
        buttons = QHBoxLayout()
        for b in (self.open_button, self.remove_button, self.clear_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        self.protocol = QComboBox()
        self.protocol.addItem("Zones as scored", None)
        for zones, name in PROTOCOLS.items():
            self.protocol.addItem(name, zones)
        self.protocol.setToolTip(
            "The exam's protocol: the LUS score is out of 3 per zone, and an exam with fewer zones is incomplete"
        )
        self.protocol.currentIndexChanged.connect(lambda _i: self.zones_changed.emit(self.protocol.currentData()))
        head = QHBoxLayout()
        head.addWidget(QLabel("Protocol:"))
        head.addWidget(self.protocol)
        head.addStretch(1)
        layout.addLayout(head)
        layout.addWidget(self.total)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self._paths: list[str] = []
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self._update_buttons()

    def _emit_for_row(self, signal: SignalInstance, row: int) -> None:
        if 0 <= row < len(self._paths):
            signal.emit(self._paths[row])

    def _update_buttons(self) -> None:
        chosen = 0 <= self.table.currentRow() < len(self._paths) and bool(self.table.selectedItems())
        self.open_button.setEnabled(chosen)
        self.remove_button.setEnabled(chosen)
        self.clear_button.setEnabled(bool(self._paths))
        self.export_button.setEnabled(bool(self._paths))

    def _clinician_box(self, clip: str, score: int | None) -> QComboBox:
        box = _FocusedComboBox()
        box.addItems(CLINICIAN_CHOICES)
        box.setCurrentIndex(0 if score is None else score + 1)
        box.setToolTip(f"Your score of {clip} (— : none)")
        box.currentIndexChanged.connect(
            lambda i, clip=clip: self.clinician_score_changed.emit(clip, None if i == 0 else i - 1)
        )
        return box

    def clinician_box(self, row: int) -> QComboBox:
        box = self.table.cellWidget(row, 2)
        assert isinstance(box, QComboBox)
        return box

    def set_zones(self, zones: int | None) -> None:
        """Show the protocol (without emitting ``zones_changed``)."""
        with QSignalBlocker(self.protocol):
            self.protocol.setCurrentIndex(max(0, self.protocol.findData(zones)))

    def set_exam(
        self,
        entries: list[ExamEntry],
        summary: str,
        current: str | None = None,
        clinician: dict[str, int] | None = None,
    ) -> None:
        """Show ``entries`` with the clinician's scores (``clinician``: clip -> 0-3);
        ``current`` (the clip on screen) is selected."""
        clinician = clinician or {}
        self._paths = [e.clip for e in entries]
        shas = list(dict.fromkeys(e.weights_sha256 for e in entries))
        self.total.setText(summary)
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(entries))
            for row, e in enumerate(entries):
                zone = QTableWidgetItem(e.zone)
                zone.setToolTip(e.clip)
                score = QTableWidgetItem(_swatch(e.clip_score), str(e.clip_score))  # visible when selected too
                notes = []
                if e.unfamiliar:
                    notes.append("unlike the training clips")
                if len(shas) > 1:
                    notes.append(f"model {e.model} ({e.weights_sha256[:8]})")
                mine = clinician.get(e.clip)
                if mine is not None and mine != e.clip_score:
                    notes.insert(0, f"you {mine}, model {e.clip_score}")
                self.table.setItem(row, 0, zone)
                self.table.setItem(row, 1, score)
                self.table.setCellWidget(row, 2, self._clinician_box(e.clip, mine))
                self.table.setItem(row, 3, QTableWidgetItem("; ".join(notes)))
            self.table.clearSelection()
            if current in self._paths:
                self.table.selectRow(self._paths.index(current))
        self._update_buttons()
