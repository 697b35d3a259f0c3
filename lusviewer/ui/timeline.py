"""The severity timeline: the score per frame, the probabilities and the
reconstruction error, with a cursor at the current frame; click or drag to seek.
A model whose card shows findings (A-lines, B-lines) adds their per-frame
probabilities, dotted, behind a check box of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QColor, QResizeEvent
from PySide6.QtWidgets import QCheckBox, QWidget

from lusviewer.report.aggregate import LOW_CONFIDENCE, low_confidence
from lusviewer.ui.palette import (
    FINDING_COLOURS,
    FINDING_LABELS,
    PROB_COLOURS,
    SCORE_COLOURS,
    SCORE_SHORT,
    WEAK_COLOUR,
    prob_pen,
    recon_pen,
)

if TYPE_CHECKING:
    from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent


class FrameAxis(pg.AxisItem):  # type: ignore[misc]  # pyqtgraph has no type information
    """The bottom axis: frame numbers, or seconds from the clip's fps (the plot's x stays
    the frame index; only the ticks change, at round seconds)."""

    def __init__(self) -> None:
        super().__init__("bottom")
        self.fps = 0.0
        self.seconds = False

    def _in_seconds(self) -> bool:
        return self.seconds and self.fps > 0

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        if not self._in_seconds():
            return list(super().tickValues(minVal, maxVal, size))
        f = self.fps
        return [(sp * f, [v * f for v in vals]) for sp, vals in super().tickValues(minVal / f, maxVal / f, size)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if not self._in_seconds():
            return list(super().tickStrings(values, scale, spacing))
        f = self.fps
        return list(super().tickStrings([v / f for v in values], scale, spacing / f))


#: What the score line's two styles mean (the timeline's tooltip; its title says it in short).
TIMELINE_TOOLTIP = (
    "Solid, in the score's colour: the model's most probable score has a probability of at least "
    f"{LOW_CONFIDENCE:g}.\nGrey dashes: a weak call, no score reaches {LOW_CONFIDENCE:g} (the other three are "
    "together more likely); the line's height is the model's lean, a guess, not a finding.\n"
    "The same frames are counted as low_confidence_frames in the CSV report."
)


#: The legend's lines: their height (px); the plots' left axis width, the legend's indent (it starts at their edge).
LEGEND_LINE = 18
AXIS_WIDTH = 110
RECON_LABEL = "recon error (÷ clip max)"
#: The score plot's title for a clip unlike the training clips (no longer than the usual title).
UNFAMILIAR_TITLE = "Unlike the training clips: frame scores are no finding"


def _compact_legend() -> pg.LegendItem:
    legend = pg.LegendItem(labelTextColor="k", labelTextSize="8pt", horSpacing=14)
    legend.layout.setContentsMargins(0, 0, 0, 0)
    return legend


class ScoreTimeline(pg.GraphicsLayoutWidget):  # type: ignore[misc]  # pyqtgraph has no type information
    """Per-frame score as a step line on 0-3, probabilities and reconstruction error
    below it, and a cursor at the current frame; click or drag to seek."""

    seek_requested = Signal(int)
    MAX_POINTS = 2000
    #: Where the cursor's label sits along it: y = 2.5 of the score plot's -0.4..3.4, on no level's line.
    CURSOR_LABEL_AT = (2.5 + 0.4) / 3.8

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.score_axis = FrameAxis()
        self.frame_axis = FrameAxis()
        self.score_plot = self.addPlot(row=0, col=0, axisItems={"bottom": self.score_axis})
        # The curves' legend has a row of its own between the plots: it hides no curve. Each
        # of its lines is its own legend, as wide as its entries and from the plots' left edge:
        # one grid of two rows stretched over the plot's width put p0 far left of p1-p3, its
        # column set by "recon error" under it (viewer-error-overlay.png).
        self.legend_box = pg.GraphicsLayout()
        self._legend_indent = AXIS_WIDTH
        self.legend_box.layout.setContentsMargins(AXIS_WIDTH, 0, 0, 0)
        self.legend_box.layout.setSpacing(0)
        self.addItem(self.legend_box, row=1, col=0)
        #: p0-p3 (and, without findings, the reconstruction error).
        self.legend = _compact_legend()
        #: With findings: the reconstruction error and the findings, under p0-p3.
        self.legend2 = _compact_legend()
        self.legend_box.addItem(self.legend, row=0, col=0)
        self.legend_box.addItem(self.legend2, row=1, col=0)
        self.ci.layout.setVerticalSpacing(0)
        self.prob_plot = self.addPlot(row=2, col=0, axisItems={"bottom": self.frame_axis})
        # Equal shares: with 3:2 the probabilities got 122 px beside the scores' 371 at 1920x1080
        # (the score plot also holds the title), and the four score levels need less height.
        self.ci.layout.setRowStretchFactor(0, 1)
        self.ci.layout.setRowStretchFactor(2, 1)
        sp, pp = self.score_plot, self.prob_plot
        for p in (sp, pp):
            p.setMenuEnabled(False)
            p.setMouseEnabled(x=False, y=False)
            p.hideButtons()
            p.showGrid(x=True, y=False, alpha=0.15)
            p.getAxis("left").setWidth(AXIS_WIDTH)
            for ax in ("left", "bottom"):
                p.getAxis(ax).setTextPen("k")
                p.getAxis(ax).setPen("k")
        sp.setYRange(-0.4, 3.4, padding=0)
        sp.getAxis("left").setTicks([[(k, name) for k, name in enumerate(SCORE_SHORT)]])
        # Rich text: no "<" in it. Short enough for a 1024 px window; the tooltip says the rest.
        self._title = f"Score per frame (grey dashes: a guess, top p below {LOW_CONFIDENCE:g})"
        sp.setTitle(self._title, color="k", size="10pt")
        self.setToolTip(TIMELINE_TOOLTIP)
        pp.setXLink(sp)
        pp.setYRange(0, 1.05, padding=0)
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
        self.prob_curves = [pp.plot(pen=prob_pen(k)) for k in range(len(PROB_COLOURS))]
        self.recon_curve = pp.plot(pen=recon_pen())
        for k, curve in enumerate(self.prob_curves):
            self.legend.addItem(curve, f"p{k}")
        self.legend.addItem(self.recon_curve, RECON_LABEL)
        self._fit_legends()
        # The findings' curves: in the plot and the legend only while the clip's result has
        # them (a card that shows them); the check box (placed by the window beside the
        # others) appears with them.
        self.finding_curves = {
            name: pp.plot(pen=pg.mkPen(colour, width=2, style=Qt.PenStyle.DotLine))
            for name, colour in FINDING_COLOURS.items()
        }
        self._findings_in_legend: list[str] = []
        self.findings_toggle = QCheckBox("Findings (A-/B-lines)", self)  # a child: never a window of its own
        self.findings_toggle.setToolTip(
            "The model's per-frame probability of A-lines and B-lines (heads trained on the experts' per-clip "
            "flags), shown because its model card lists them as validated"
        )
        self.findings_toggle.setChecked(True)
        self.findings_toggle.setVisible(False)
        self.findings_toggle.toggled.connect(self.set_findings_visible)
        for curve in self.finding_curves.values():
            curve.setVisible(False)
        self.cursors = []
        self._fps = 0.0
        self.seconds = False
        for p in (sp, pp):
            line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#1f1fbf", width=2))
            line.sigDragged.connect(self._cursor_dragged)
            p.addItem(line)
            self.cursors.append(line)
            p.scene().sigMouseClicked.connect(self._clicked)
        # the cursor's frame and time, both, whichever the axis shows
        # between the levels 2 and 3 (y = 2.5 on -0.4..3.4): at 0.93 it sat on the score-3 line,
        # the shipped model's most common score, and the two were hard to read (seen at 1024x600)
        self.cursor_label = pg.InfLineLabel(
            self.cursors[0], text="", position=self.CURSOR_LABEL_AT, anchors=[(0, 0.5), (0, 0.5)], color="#1f1fbf"
        )
        self.cursor_label.setZValue(20)
        self.score_plot.vb.sigResized.connect(self._place_cursor_label)  # the room right of it changes
        for p in (sp, pp):
            p.getAxis("bottom").enableAutoSIPrefix(False)
        # Scoring stopped early (failed or cancelled): the frames never scored are shaded
        # and a label says how far it got; the score lines are greyed (no finding).
        self.unscored_regions = []
        for p in (sp, pp):
            region = pg.LinearRegionItem(
                values=(0, 1), movable=False, brush=pg.mkBrush(150, 150, 150, 90), pen=pg.mkPen("#9a9a9a")
            )
            region.setZValue(-5)
            p.addItem(region)
            self.unscored_regions.append(region)
        self.unscored = self.unscored_regions[0]
        self.partial = False
        self.unfamiliar = False  # the clip is unlike the training clips (set_unfamiliar)
        self.partial_text = ""  # in the score plot's title, where it hides no frame
        self._n = 0
        self.n_drawn = 0  # frames on the timeline now (the status bar's progress says the same number)
        self._recon_scale = 1.0
        self.reset(0)

    def set_unreliable(self, on: bool) -> None:
        """Grey score lines: the clip is unlike the training clips, its scores are no finding.
        Weak calls are grey and dashed either way: a guess is never drawn in a score's colour."""
        for k, (strong, weak) in enumerate(zip(self.score_levels, self.weak_levels, strict=True)):
            colour = QColor("#9a9a9a") if on else QColor(SCORE_COLOURS[k])
            strong.setPen(pg.mkPen(colour, width=4))
            weak.setPen(pg.mkPen(QColor("#9a9a9a") if on else QColor(WEAK_COLOUR), width=4, style=Qt.PenStyle.DashLine))

    def set_unfamiliar(self, on: bool) -> None:
        """The clip is unlike the training clips (its clip score withheld): grey score lines,
        and a title that says so. The title still read "Score per frame (grey dashes: a
        guess ...)" above a POCUS clip's step line, its scores looking like findings."""
        self.unfamiliar = on
        self.set_unreliable(on)
        if not self.partial:  # a partial timeline's title says that first
            self.score_plot.setTitle(
                UNFAMILIAR_TITLE if on else self._title, color="#8a1c00" if on else "k", size="10pt", bold=False
            )

    def set_partial(self, scored: int | None, total: int = 0, why: str = "scoring failed") -> None:
        """Mark the timeline partial: ``scored`` of ``total`` frames were scored when scoring
        stopped (``why``); None: not partial."""
        was, self.partial = self.partial, scored is not None
        if scored is None:
            if was:
                self.set_unreliable(False)
            for region in self.unscored_regions:
                region.setVisible(False)
            if was:
                self.partial_text = ""
                # bold=False: pyqtgraph keeps the partial title's bold otherwise
                self.score_plot.setTitle(self._title, color="k", size="10pt", bold=False)
            return
        self.set_unreliable(True)
        for region in self.unscored_regions:
            region.setRegion((scored - 0.5, max(total, scored) - 0.5))
            region.setVisible(total > scored)
        self.partial_text = f"partial: {scored} of {total} frames ({why})"  # no longer than the title
        self.score_plot.setTitle(self.partial_text.capitalize(), color="#8a1c00", size="10pt", bold=True)

    def reset(self, n_frames: int) -> None:
        """A new clip of ``n_frames`` frames: nothing scored, the cursor at frame 0."""
        for item in [self.score_line, *self.score_levels, *self.weak_levels, *self.prob_curves, self.recon_curve]:
            item.setData([], [])
        self.n_drawn = 0
        self.set_findings((), None)
        self.set_unfamiliar(False)
        self.set_partial(None)
        self.set_frame_count(n_frames)
        self.set_cursor(0)

    def set_frame_count(self, n_frames: int) -> None:
        """The clip has ``n_frames`` frames after all (scoring decoded more, or fewer, than its
        header said): the axis and the cursor's range follow; the curves drawn stay."""
        self._n = n_frames
        self.score_plot.setXRange(-0.5, (n_frames or 100) - 0.5, padding=0.01)  # no clip: an empty 0-100 axis
        for c in self.cursors:
            c.setBounds((0, max(n_frames - 1, 0)))

    def update_scores(
        self, scores: np.ndarray, probs: np.ndarray, recon: np.ndarray, n_done: int, weak: np.ndarray | None = None
    ) -> None:
        """Redraw the first ``n_done`` frames (a few thousand points: cheap); ``n_drawn`` says how many."""
        if n_done <= 0:
            return
        self.n_drawn = n_done
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

    def set_findings(self, names: tuple[str, ...] | list[str], findings: np.ndarray | None) -> None:
        """The clip's per-frame findings (T, F), columns named by ``names`` (``ClipResult.findings``
        and ``finding_names``); None or no names: none, and the check box hidden."""
        for name in self._findings_in_legend:
            self.legend2.removeItem(self.finding_curves[name])
        self._findings_in_legend = []
        self.legend2.removeItem(self.recon_curve)
        self.legend.removeItem(self.recon_curve)
        shown = [n for n in names if n in self.finding_curves] if findings is not None and len(findings) else []
        for name, curve in self.finding_curves.items():
            if name not in shown:
                curve.setData([], [])
                curve.setVisible(False)
        self.findings_toggle.setVisible(bool(shown))
        if shown:  # name only the findings shown (a card may show A-lines and not B-lines)
            labels = [FINDING_LABELS[n] for n in sorted(shown, key=lambda k: k != "b_lines")]
            self.findings_toggle.setText(f"Findings ({', '.join(labels)})")
            self.findings_toggle.setToolTip(
                f"The model's per-frame probability of {' and '.join(labels)} (heads trained on the experts' "
                "per-clip flags), shown because its model card lists them as validated"
            )
        if findings is not None:
            n = len(findings)
            step = max(1, -(-n // self.MAX_POINTS))  # bin means, as the probabilities
            m = (n // step) * step
            x = np.arange(0, m, step, dtype=np.float64) + (step - 1) / 2
            for name in sorted(shown, key=lambda k: k != "b_lines"):  # B-lines first: the finding that raises a score
                col = list(names).index(name)
                curve = self.finding_curves[name]
                curve.setData(x, findings[:m, col].astype(np.float64).reshape(-1, step).mean(1))
                curve.setVisible(self.findings_toggle.isChecked())
                self._findings_in_legend.append(name)
        # With findings, two lines (p0-p3; recon error and the findings under them): one line of
        # seven would widen the plots past a 1024 px window.
        if self._findings_in_legend:
            self.legend2.addItem(self.recon_curve, RECON_LABEL)
            for name in self._findings_in_legend:
                self.legend2.addItem(self.finding_curves[name], f"p({FINDING_LABELS[name]})")
        else:
            self.legend.addItem(self.recon_curve, RECON_LABEL)
        self._fit_legends()
        self._update_prob_plot_visibility()

    def legend_labels(self) -> list[str]:
        """The legend's entries in reading order (first line, then the second)."""
        return [label.text for legend in (self.legend, self.legend2) for _, label in legend.items]

    def _fit_legends(self) -> None:
        """Each legend line as wide as its entries (none stretched over the plot), the second
        one taking no height while it is empty."""
        for legend in (self.legend, self.legend2):
            legend.setColumnCount(len(legend.items) or 1)
            legend.layout.invalidate()
            width = legend.layout.effectiveSizeHint(Qt.SizeHint.PreferredSize).width()
            legend.setFixedWidth(width if legend.items else 0)
            legend.setFixedHeight(LEGEND_LINE if legend.items else 0)
            self.legend_box.layout.setAlignment(legend, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.legend2.setVisible(bool(self.legend2.items) and self.legend.isVisible())
        self.legend_box.setFixedHeight(LEGEND_LINE * (1 + bool(self.legend2.items)))
        self._indent_legend()
        if self.centralWidget is not None:  # the scene as wide as the view again, whatever it was stretched to
            self.centralWidget.setGeometry(QRectF(self.range))

    def _indent_legend(self) -> None:
        """The legend starts at the plots' left edge where the view has room for it, further
        left where it has not (a 1024 px window: p0-p3 and recon error on one line are 454 px
        wide; indented 110 px they stretched the plots past the view's right edge)."""
        widest = max(self.legend.width(), self.legend2.width())
        left, _top, right, _bottom = self.ci.layout.getContentsMargins()
        indent = int(max(0, min(AXIS_WIDTH, self.width() - widest - left - right - 4)))
        if indent != self._legend_indent:
            self._legend_indent = indent
            self.legend_box.layout.setContentsMargins(indent, 0, 0, 0)
            # the scene's minimum width now, not at the next layout pass: a resize would clamp to the old one
            self.legend_box.layout.activate()
            self.ci.layout.activate()

    def resizeEvent(self, ev: QResizeEvent | None) -> None:
        if hasattr(self, "legend2"):  # pyqtgraph calls it from its __init__, before the legends exist
            self._indent_legend()
        super().resizeEvent(ev)

    def set_findings_visible(self, on: bool) -> None:
        for name in self._findings_in_legend:
            self.finding_curves[name].setVisible(on)
        self._update_prob_plot_visibility()

    def _update_prob_plot_visibility(self) -> None:
        findings = bool(self._findings_in_legend) and self.findings_toggle.isChecked()
        on = self.prob_curves[0].isVisible() or self.recon_curve.isVisible() or findings
        self.prob_plot.setVisible(on)
        self.legend_box.setVisible(on)
        self.legend.setVisible(on)
        self.legend2.setVisible(on and bool(self.legend2.items))
        # The plots share their x axis: with the lower plot shown, the upper one's tick labels
        # only repeat it (their row cost the plots 20 px at 1024x600), so it keeps its ticks only.
        self.score_axis.setStyle(showValues=not on)

    def set_cursor(self, index: int) -> None:
        for c in self.cursors:
            with QSignalBlocker(c):
                c.setValue(index)
        self._label_cursor(index)

    def cursor_text(self, index: int) -> str:
        """The cursor's label: the frame and, with the clip's fps known, its time."""
        return f" frame {index} · {index / self._fps:.2f} s" if self._fps > 0 else f" frame {index}"

    def _label_cursor(self, index: int) -> None:
        self.cursor_label.setText(self.cursor_text(index) if self._n else "")
        self._place_cursor_label()

    def _place_cursor_label(self) -> None:
        """The label right of the cursor, or left of it where the text would run past the plot's
        right edge (it was cut to "frame 53" on the last frames of a clip at 1280x800)."""
        vb = self.score_plot.vb
        room = vb.sceneBoundingRect().right() - vb.mapViewToScene(QPointF(self.cursors[0].value(), 0)).x()
        anchor = (1, 0.5) if room < self.cursor_label.boundingRect().width() + 4 else (0, 0.5)
        if self.cursor_label.anchors[0] != anchor:
            self.cursor_label.anchors = [anchor, anchor]
            self.cursor_label.updatePosition()

    def set_fps(self, fps: float) -> None:
        """The open clip's frame rate, for the axis in seconds and the cursor's time."""
        self._fps = float(fps) if fps and fps > 0 else 0.0
        for axis in (self.score_axis, self.frame_axis):
            axis.fps = self._fps
        self.set_seconds(self.seconds)

    def set_seconds(self, on: bool) -> None:
        """The bottom axis in seconds (True) or frame numbers; without a frame rate, frames."""
        self.seconds = bool(on)
        for axis in (self.score_axis, self.frame_axis):
            axis.seconds = self.seconds
            axis.picture = None  # ticks redrawn
            axis.update()
        self.prob_plot.setLabel("bottom", "time (s)" if self.seconds and self._fps > 0 else "frame", color="k")

    def _cursor_dragged(self, line: pg.InfiniteLine) -> None:
        self._label_cursor(round(line.value()))
        self.seek_requested.emit(round(line.value()))

    def _clicked(self, event: MouseClickEvent) -> None:
        pos = event.scenePos()
        for p in (self.score_plot, self.prob_plot):
            if p.isVisible() and p.vb.sceneBoundingRect().contains(pos):
                x = p.vb.mapSceneToView(pos).x()
                if self._n:
                    self.seek_requested.emit(round(min(max(x, 0), self._n - 1)))
                return
