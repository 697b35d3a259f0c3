"""The chest diagram: the exam's zones on an outline of the thorax, drawn in code (no
stock image), each zone coloured by its score with the viewer's colours and its score
printed in it. The BLUE points on a front and a back view; Soldati's 14 zones on the
front, the back and both sides. Painted by :func:`paint_chest` on any ``QPainter``: the
Exam tab's :class:`ChestDiagram` and the PDF report (``ui.exam_report``) alike.

A zone scanned with no reliable score (the clip is unlike the training clips) is light
grey and hatched; a zone scanned whose clip could not be scored (it failed, or its scoring
was stopped) is white with a solid edge and a cross; a zone not scanned is white with a
dotted edge. An uncertain score (a
guess: the same rule as the Clip and Exam tabs' grey "Score 1, uncertain") is never
painted in its score's colour: the zone is a pale neutral grey with a dashed edge (the
timeline's dashes for weak calls) and the score printed in dark grey with a ``?``
("0?"); only a confident score fills its zone with the score's colour. Where the
clinician's score differs from the model's, or the model's is withheld, it is printed
under it ("clin. 3"); a zone given to more than one clip says how many ("×2").
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from lusviewer.report.exam_report import ZoneCell
from lusviewer.report.zones import Zone
from lusviewer.ui.palette import SCORE_COLOURS, SCORE_SHORT, UNCERTAIN_COLOUR

#: A zone scanned with no reliable score (hatched) and one not scanned (white, dotted edge).
WITHHELD_FILL = "#c8c8c8"
NOT_SCANNED_FILL = "#ffffff"
#: A zone scanned whose clip could not be scored: white, a solid edge, a cross for its score.
NOT_SCORED_FILL = "#ffffff"
NOT_SCORED_MARK = "×"
#: An uncertain score (a guess, counted): a pale neutral fill, not the score's colour (a green
#: "0?" read as a confident normal), its edge dashed and its score in dark grey.
UNCERTAIN_FILL = "#ebebeb"
OUTLINE = "#404040"
#: The smallest font a zone prints its words in ("not scanned", "no reliable score"); where
#: they would be smaller (the Exam tab's diagram at 1280x800 and under) the zone leaves them
#: out and its look says it: white with a dotted edge, grey hatched (the key beside or in the
#: tooltip). The PDF's larger zones print them.
READABLE_PX = 7


#: A texture per score, so that grey-scale print tells them apart (0 and 3, 1 and 2 have
#: near luma: 114 vs 92, 175 vs 148): none for 0 and 1, diagonal lines for 2 (the other
#: way from the hatch of "no reliable score"), crossed for 3.
SCORE_TEXTURES = (None, None, Qt.BrushStyle.FDiagPattern, Qt.BrushStyle.DiagCrossPattern)


def paint_texture(painter: QPainter, box: QRectF, score: int | None, radius: float = 0.0) -> None:
    """The score's texture over its fill (faint: the printed number stays readable)."""
    style = SCORE_TEXTURES[score] if score is not None else None
    if style is None:
        return
    painter.save()
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(QColor(0, 0, 0, 70), style))
    painter.drawRoundedRect(box, radius, radius)
    painter.restore()


def text_colour(fill: str) -> QColor:
    """Black on light fills, white on dark ones (by luma: readable in grey-scale print too)."""
    c = QColor(fill)
    luma = 0.299 * c.red() + 0.587 * c.green() + 0.114 * c.blue()
    return QColor("#000000") if luma > 140 else QColor("#ffffff")


def uncertain(cell: ZoneCell) -> bool:
    """A score shown as a guess: counted, never painted as a finding."""
    return cell.state == "scored" and cell.confidence == "uncertain"


def cell_fill(cell: ZoneCell) -> str:
    """The zone's fill: the score's colour only for a confident score."""
    if cell.state == "scored" and cell.score is not None:
        return UNCERTAIN_FILL if uncertain(cell) else SCORE_COLOURS[cell.score]
    if cell.state == "not scored":
        return NOT_SCORED_FILL
    return WITHHELD_FILL if cell.state == "withheld" else NOT_SCANNED_FILL


def _torso(r: QRectF) -> QPainterPath:
    """Front or back outline in ``r``: neck, shoulders, chest narrowing a little to the waist."""

    def p(x: float, y: float) -> QPointF:
        return QPointF(r.left() + x * r.width(), r.top() + y * r.height())

    path = QPainterPath(p(0.40, 0.0))
    path.lineTo(p(0.60, 0.0))
    path.lineTo(p(0.60, 0.05))
    path.cubicTo(p(0.78, 0.07), p(0.97, 0.06), p(0.99, 0.20))
    path.lineTo(p(0.92, 1.0))
    path.lineTo(p(0.08, 1.0))
    path.lineTo(p(0.01, 0.20))
    path.cubicTo(p(0.03, 0.06), p(0.22, 0.07), p(0.40, 0.05))
    path.closeSubpath()
    return path


def _side(r: QRectF) -> QPainterPath:
    """A side view: the flank between the arm (raised) and the waist."""
    path = QPainterPath()
    path.addRoundedRect(
        QRectF(r.left() + 0.1 * r.width(), r.top() + 0.06 * r.height(), 0.8 * r.width(), 0.94 * r.height()),
        0.3 * r.width(),
        0.3 * r.width(),
    )
    return path


def _sub(r: QRectF, x0: float, y0: float, x1: float, y1: float) -> QRectF:
    return QRectF(r.left() + x0 * r.width(), r.top() + y0 * r.height(), (x1 - x0) * r.width(), (y1 - y0) * r.height())


#: Rows of the views (fractions of the outline's height).
_ROWS2 = {"upper": (0.13, 0.53), "lower": (0.57, 0.95)}
_ROWS3 = {"upper": (0.13, 0.39), "middle": (0.42, 0.67), "lower": (0.70, 0.95)}


def _zone_box(zone: Zone, view: str, r: QRectF, blue: bool) -> QRectF | None:
    """Where ``zone`` lies in the outline ``r`` of ``view`` ("front", "back", "R side", "L side"), or None."""
    # the front shows the patient's right on the viewer's left; the back, on the viewer's right
    if view == "front" and zone.region == "anterior":
        x0, x1 = (0.12, 0.47) if zone.side == "R" else (0.53, 0.88)
        y0, y1 = _ROWS2[zone.level]
        return _sub(r, x0, y0, x1, y1)
    if view == "back" and zone.region == "posterior":
        x0, x1 = (0.53, 0.88) if zone.side == "R" else (0.12, 0.47)
        y0, y1 = _ROWS3[zone.level]
        return _sub(r, x0, y0, x1, y1)
    if view == "back" and zone.region == "posterolateral" and blue:
        x0, x1 = (0.55, 0.92) if zone.side == "R" else (0.08, 0.45)
        return _sub(r, x0, 0.55, x1, 0.95)
    if view == f"{zone.side} side" and zone.region == "lateral":
        y0, y1 = _ROWS2[zone.level]
        return _sub(r, 0.18, y0, 0.82, y1)
    return None


def _views(n_zones: int) -> list[tuple[str, str, float]]:
    """(view, caption, relative width) left to right: walking round the patient."""
    if n_zones == 14:
        return [
            ("R side", "Right side", 0.42),
            ("front", "Front", 0.75),
            ("L side", "Left side", 0.42),
            ("back", "Back", 0.75),
        ]
    return [("front", "Front", 0.75), ("back", "Back", 0.75)]


def _font(px: float, bold: bool = False) -> QFont:
    f = QFont()
    f.setPixelSize(max(1, round(px)))
    f.setBold(bold)
    return f


def _layout(rect: QRectF, n_zones: int, caption: bool) -> tuple[list[tuple[str, str, QRectF]], float, float]:
    """The views fitted in ``rect``: (view, caption, outline rect) left to right, the caption's height and the gap."""
    views = _views(n_zones)
    gap = rect.height() * 0.06
    cap_h = rect.height() * 0.10 if caption else 0.0
    body_h = rect.height() - cap_h
    total_w = sum(w for _, _, w in views) * body_h + gap * (len(views) - 1)
    scale = min(1.0, rect.width() / total_w) if total_w > 0 else 1.0
    body_h *= scale
    gap *= scale
    x = rect.left() + (rect.width() - total_w * scale) / 2
    out = []
    for view, label, rel in views:
        out.append((view, label, QRectF(x, rect.top() + cap_h, rel * body_h, body_h)))
        x += rel * body_h + gap
    return out, cap_h, gap


def zone_boxes(rect: QRectF, cells: Sequence[ZoneCell], *, caption: bool = True) -> dict[str, QRectF]:
    """Where each zone's region lies when :func:`paint_chest` draws ``cells`` in ``rect``, by code."""
    views, _, _ = _layout(rect, len(cells), caption)
    out = {}
    for view, _, r in views:
        for cell in cells:
            box = _zone_box(cell.zone, view, r, len(cells) != 14)
            if box is not None:
                out[cell.zone.code] = box
    return out


def paint_chest(painter: QPainter, rect: QRectF, cells: Sequence[ZoneCell], *, caption: bool = True) -> None:
    """The diagram of ``cells`` (one per zone of the exam's scheme) fitted in ``rect``."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    blue = len(cells) != 14
    views, cap_h, gap = _layout(rect, len(cells), caption)
    for view, label, r in views:
        body_h = r.height()
        outline = _side(r) if view.endswith("side") else _torso(r)
        painter.setPen(QPen(QColor(OUTLINE), max(1.0, body_h / 120)))
        painter.setBrush(QColor("#f4f1ec"))
        painter.drawPath(outline)
        if caption:
            painter.setPen(QColor("#000000"))
            painter.setFont(_font(cap_h * 0.8))
            painter.drawText(
                QRectF(r.left() - gap / 2, rect.top(), r.width() + gap, cap_h), Qt.AlignmentFlag.AlignCenter, label
            )
        if view in ("front", "back"):  # the spine or the sternum
            painter.setPen(QPen(QColor("#8a8a8a"), max(1.0, body_h / 200), Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(r.center().x(), r.top() + 0.08 * r.height()), QPointF(r.center().x(), r.bottom()))
        for cell in cells:
            box = _zone_box(cell.zone, view, r, blue)
            if box is not None:
                _paint_cell(painter, box, cell)
    painter.restore()


def _paint_cell(painter: QPainter, box: QRectF, cell: ZoneCell) -> None:
    fill = cell_fill(cell)
    edge = max(1.0, min(box.width(), box.height()) / 30)
    if cell.state == "not scanned":
        painter.setPen(QPen(QColor("#6a6a6a"), edge, Qt.PenStyle.DotLine))
    elif uncertain(cell):
        painter.setPen(QPen(QColor(UNCERTAIN_COLOUR), edge, Qt.PenStyle.DashLine))
    else:
        painter.setPen(QPen(QColor(OUTLINE), edge))
    painter.setBrush(QColor(fill))
    painter.drawRoundedRect(box, edge * 2, edge * 2)
    if cell.state == "withheld":
        painter.setBrush(QBrush(QColor("#6a6a6a"), Qt.BrushStyle.BDiagPattern))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawRoundedRect(box, edge * 2, edge * 2)
    elif cell.state == "scored" and not uncertain(cell):
        paint_texture(painter, box, cell.score, edge * 2)
    ink = QColor(UNCERTAIN_COLOUR) if uncertain(cell) else text_colour(fill)
    h, w = box.height(), box.width()
    # the zone's code, small, top left
    painter.setPen(ink)
    painter.setFont(_font(min(h * 0.2, w * 0.22)))
    painter.drawText(
        box.adjusted(edge * 2, edge, 0, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, cell.zone.code
    )
    if cell.clips > 1:
        painter.drawText(
            box.adjusted(0, edge, -edge * 2, 0),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop,
            f"×{cell.clips}",
        )
    main, small = zone_labels(cell)
    clin = small.startswith("clin.")
    words = bool(small) and not clin  # "no reliable score", "not scanned": broken between words
    big = min(h * (0.3 if words else 0.42 if small else 0.5), w * 0.45)
    if main:
        painter.setFont(_font(big, bold=True))
        painter.setPen(ink)
        r = QRectF(box.left(), box.top() + h * 0.12, w, h * (0.33 if words else 0.55 if small else 0.8))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, main)
    if small:
        top, height = (0.45, 0.52) if main and words else (0.62, 0.38) if main else (0.2, 0.7)
        r = QRectF(box.left() + edge, box.top() + h * top, w - 2 * edge, h * height)
        font = fitted_font(small, r, h * 0.17, bold=clin, wrap=words)
        if words and font.pixelSize() < READABLE_PX:
            return  # never print what cannot be read: the zone's fill and edge, and the key, say it
        painter.setFont(font)
        painter.setPen(ink if cell.state != "not scanned" else QColor("#505050"))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, small)


def fitted_font(text: str, rect: QRectF, largest: float, *, bold: bool = False, wrap: bool = True) -> QFont:
    """The largest font, up to ``largest`` px, that fits ``text`` in ``rect`` (broken between
    words where ``wrap``). A zone's "not scanned" and "no reliable score" were sized to fit on
    one line: 5 px and 3 px in the Exam tab's 6-zone diagram at 1280x800, unreadable; where
    even broken they would be under :data:`READABLE_PX`, the zone leaves them out."""
    flags = int(Qt.AlignmentFlag.AlignCenter) | (int(Qt.TextFlag.TextWordWrap) if wrap else 0)
    px = max(1, int(largest))
    while px > 1:
        font = _font(px, bold)
        fits = QFontMetricsF(font).boundingRect(QRectF(0, 0, rect.width(), 1e4), flags, text)
        if fits.width() <= rect.width() and fits.height() <= rect.height():
            return font
        px -= 1
    return _font(1, bold)


def zone_labels(cell: ZoneCell) -> tuple[str, str]:
    """What a zone prints: its score, large, and a line under it. A withheld zone with the
    clinician's score recorded prints that score ("clin. 1"): the zone's only score, where
    "no reliable score" would repeat what the grey hatch and the key already say."""
    if cell.state == "scored":
        main = f"{cell.score}?" if cell.confidence == "uncertain" else str(cell.score)
        return main, f"clin. {cell.clinician}" if cell.differs else ""
    if cell.state == "withheld":
        return "–", f"clin. {cell.clinician}" if cell.clinician is not None else "no reliable score"
    if cell.state == "not scored":
        return NOT_SCORED_MARK, "not scored"
    return "", "not scanned"


#: The key's entries: (fill, mark, words); the uncertain entry's mark is dark grey on its pale fill.
LEGEND_SCORES = [(SCORE_COLOURS[k], str(k), SCORE_SHORT[k][2:]) for k in range(4)]
LEGEND_OTHERS = [
    (UNCERTAIN_FILL, "n?", "uncertain (a guess)"),
    (WITHHELD_FILL, "–", "no reliable score"),
    (NOT_SCANNED_FILL, "", "not scanned"),
]
#: Only where a zone shows it: a clip that could not be scored (failed, or its scoring stopped).
LEGEND_NOT_SCORED = (NOT_SCORED_FILL, NOT_SCORED_MARK, "could not be scored")


def has_not_scored(cells: Sequence[ZoneCell]) -> bool:
    return any(c.state == "not scored" for c in cells)


def paint_legend(
    painter: QPainter, rect: QRectF, *, scores: bool = True, short: bool = False, not_scored: bool = False
) -> None:
    """The diagram's key in one column: scores 0-3 (confident: in their colours; without
    ``scores``, left out), uncertain, no reliable score, ``not_scored`` (where a zone shows
    it: "could not be scored", "not scored" when ``short``), not scanned; ``short``:
    "uncertain" without "(a guess)", for the Exam tab's narrow key."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    listed = list(LEGEND_OTHERS)
    if not_scored:
        fill, mark, words = LEGEND_NOT_SCORED
        listed.insert(2, (fill, mark, "not scored" if short else words))
    others = [(f, m, w.split(" (")[0] if short else w) for f, m, w in listed]
    items = (LEGEND_SCORES if scores else []) + others
    line = rect.height() / len(items)
    sw = min(line * 0.8, rect.width() * 0.2)
    font = _font(min(line * 0.55, 13))
    for k, (fill, mark, words) in enumerate(items):
        y = rect.top() + k * line
        box = QRectF(rect.left(), y + (line - sw) / 2, sw * 1.3, sw)
        style = Qt.PenStyle.SolidLine
        if not mark:
            style = Qt.PenStyle.DotLine
        elif mark.endswith("?"):
            style = Qt.PenStyle.DashLine
        painter.setPen(QPen(QColor(UNCERTAIN_COLOUR if mark.endswith("?") else OUTLINE), 0.8, style))
        painter.setBrush(QColor(fill))
        painter.drawRect(box)
        if mark == "–":
            painter.setBrush(QBrush(QColor("#6a6a6a"), Qt.BrushStyle.BDiagPattern))
            painter.drawRect(box)
        elif mark and mark.isdigit():
            paint_texture(painter, box, int(mark))
        painter.setFont(_font(min(line * 0.55, 13), bold=mark.endswith("?")))
        painter.setPen(QColor(UNCERTAIN_COLOUR) if mark.endswith("?") else text_colour(fill))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, mark)
        painter.setFont(font)
        painter.setPen(QColor("#000000"))
        painter.drawText(
            QRectF(box.right() + sw * 0.4, y, rect.width() - box.width() - sw * 0.4, line),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            words,
        )
    painter.restore()


def views_width(rect: QRectF, n_zones: int) -> float:
    """How wide :func:`paint_chest` draws the views in ``rect`` (the rest is free for a key)."""
    views, _, gap = _layout(rect, n_zones, True)
    return views[-1][2].right() - views[0][2].left() + gap if views else 0.0


class ChestDiagram(QWidget):
    """The Exam tab's live diagram: :meth:`set_cells` redraws it."""

    #: The height it asks for; below :data:`SMALLEST` it says how to get it back instead.
    FULL_HEIGHT = 110
    #: The most it asks for where the Exam tab has room to spare (a 1920x1080 window).
    TALLEST = 240
    SMALLEST = 40
    #: Its minimum: the height of the protocol and a three-line total beside it, so that the
    #: total wrapping to three lines does not take the table's room (the panel is at its minimum
    #: at 1280x800 and 1024x600, and Qt then draws the buttons over the table's last row: seen
    #: under Xvfb); with it the window's minimum is 600 px.
    RESERVED = 104
    #: The key beside the views, where there is room: its width and its lines' height (px).
    KEY_WIDTH = 108
    KEY_LINE = 17
    KEY_GAP = 8

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cells: list[ZoneCell] = []
        self.wanted_height = self.FULL_HEIGHT
        self.setMinimumSize(150, self.RESERVED)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip(
            "The exam's zones on the chest. A confident score fills its zone with the score's colour (0 green, "
            "1 amber, 2 orange, 3 red); an uncertain one (a guess, counted in the total) is pale grey with a dashed "
            "edge and its score in grey with a ?, e.g. 0?; grey hatched: no reliable score; white with a cross: "
            "scanned, but its clip could not be scored; white, dotted edge: not scanned. "
            "Where your score differs, or the model's is withheld, it is printed under the model's (clin.)."
        )

    def sizeHint(self) -> QSize:
        return QSize(220, self.wanted_height)

    def want_height(self, height: int) -> None:
        """The height to ask for (its size hint, not its minimum: the window's minimum stays),
        between :data:`FULL_HEIGHT` and :data:`TALLEST`; the Exam tab gives what it can spare."""
        h = max(self.FULL_HEIGHT, min(self.TALLEST, height))
        if h != self.wanted_height:
            self.wanted_height = h
            self.updateGeometry()

    def set_cells(self, cells: Sequence[ZoneCell]) -> None:
        self.cells = list(cells)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), QColor("#ffffff"))
            if self.height() < self.SMALLEST:
                if self.height() >= 14:
                    painter.setPen(QColor("#707070"))
                    painter.drawText(
                        self.rect(), Qt.AlignmentFlag.AlignCenter, "Drag the divider up\nfor the chest diagram"
                    )
            elif self.cells:
                rect = QRectF(self.rect()).adjusted(4, 2, -4, -2)
                key = self.key_rect()
                if key is not None:
                    rect = QRectF(
                        key.left() - self.KEY_GAP - self._views_width(), rect.top(), self._views_width(), rect.height()
                    )
                    paint_legend(
                        painter, key, scores=self._key_has_scores(), short=True, not_scored=has_not_scored(self.cells)
                    )
                paint_chest(painter, rect, self.cells)
            else:
                painter.setPen(QColor("#707070"))
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No clip in the exam yet")
        finally:
            painter.end()

    def _key_has_scores(self) -> bool:
        """The confident scores' colours in the key too: where a zone shows one, and there is room."""
        confident = any(c.state == "scored" and not uncertain(c) for c in self.cells)
        return confident and self.height() >= (7 + has_not_scored(self.cells)) * self.KEY_LINE

    def _views_width(self) -> float:
        return views_width(QRectF(self.rect()).adjusted(4, 2, -4, -2), len(self.cells))

    def key_rect(self) -> QRectF | None:
        """Where the key is drawn, right of the views (the two centred together): where they
        leave room for it, else None (the tooltip holds the key)."""
        if not self.cells or self.height() < self.SMALLEST:
            return None
        rect = QRectF(self.rect()).adjusted(4, 2, -4, -2)
        views = self._views_width()
        lines = (7 if self._key_has_scores() else 3) + has_not_scored(self.cells)
        # its type grows with a taller diagram (1920x1080), up to 1.4 times, where there is room
        scale = max(1.0, min(1.4, rect.height() / (self.FULL_HEIGHT * 1.4)))
        while scale > 1.0 and rect.width() - views < self.KEY_WIDTH * scale + self.KEY_GAP:
            scale = max(1.0, scale - 0.1)
        width = self.KEY_WIDTH * scale
        if rect.width() - views < width + self.KEY_GAP:
            return None
        h = min(rect.height(), lines * self.KEY_LINE * scale)
        left = rect.left() + (rect.width() - views - self.KEY_GAP - width) / 2 + views + self.KEY_GAP
        return QRectF(left, rect.top() + (rect.height() - h) / 2, width, h)
