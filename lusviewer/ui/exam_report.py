"""The exam report as a PDF: one A4 page for the six BLUE points (a second only for
Soldati's 14 zones), painted with Qt's own PDF writer (vector text, fonts embedded; no
other dependency), from :class:`~lusviewer.report.exam_report.ExamReport`.

The page: the fields the clinician typed, the chest diagram and its key, the LUS score
with its protocol and the clinician's total, one row per clip (zone, worst frame: its most severe finding, a
timeline of its per-frame scores, the model's and the clinician's score, the share of
low-confidence frames, whether the clip is like the training clips), and in the footer
the model, its weights' sha256, the device and lusviewer's version, and "Research use
only, not a medical device". ``lusviewer score --exam-report`` renders it offscreen.
"""

from __future__ import annotations

import itertools
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PySide6.QtCore import QMarginsF, QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
)

from lusviewer.report.exam_report import RESEARCH_ONLY, ExamReport, ZoneRow
from lusviewer.ui.chest_diagram import (
    UNCERTAIN_FILL,
    WITHHELD_FILL,
    has_not_scored,
    paint_chest,
    paint_legend,
    text_colour,
)
from lusviewer.ui.palette import SCORE_COLOURS, UNCERTAIN_COLOUR

#: Page geometry in points (1/72 inch): A4 and its margins.
PAGE_W, PAGE_H = 595.0, 842.0
MARGIN = 34.0
RESOLUTION = 300  # dots per inch of the PDF's coordinate system (the text stays vector)

_app: QGuiApplication | None = None


def ensure_gui_app() -> None:
    """Qt paints text only with a GUI application: the CLI gets an offscreen one."""
    global _app
    if QGuiApplication.instance() is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # the CLI shows no window; no display needed
        _app = QGuiApplication([])


def _font(pt: float, *, bold: bool = False, mono: bool = False) -> QFont:
    f = QFont("DejaVu Sans Mono" if mono else "DejaVu Sans")
    if mono:
        f.setStyleHint(QFont.StyleHint.Monospace)
    # the painter is scaled to points: a font's size is in the device's dots before that scale
    f.setPointSizeF(pt * 72.0 / RESOLUTION)
    f.setBold(bold)
    return f


def write_exam_pdf(path: str | os.PathLike[str], report: ExamReport) -> Path:
    """Paint ``report`` into ``path``: to a temporary file beside it, renamed into place
    once complete (a reader never sees half a report)."""
    from lusviewer.report.csv_report import remove_stale_temporaries, tmp_name

    ensure_gui_app()
    path = Path(path)
    if path.is_dir():  # it said "[Errno 21] Is a directory: '/.tmp.12087.tmp' -> '/tmp'"
        raise OSError(f"{path}: is a folder; give the report a file name (exam.pdf)")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = tmp_name(path, os.getpid())
    try:
        writer = QPdfWriter(str(tmp))
        writer.setResolution(RESOLUTION)
        writer.setPageLayout(
            QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait, QMarginsF(0, 0, 0, 0))
        )
        writer.setTitle("Lung ultrasound exam report")
        writer.setCreator("lusviewer " + report.lusviewer_version)
        painter = QPainter()
        if not painter.begin(writer):
            raise OSError(f"{path}: cannot be written (the PDF writer could not open {tmp.name})")
        try:
            paint_report(painter, writer, report)
        finally:
            painter.end()
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise OSError(f"{path}: the PDF could not be written (no space left, or no permission?)")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def paint_report(painter: QPainter, writer: QPdfWriter, report: ExamReport) -> None:
    """All pages of ``report``; coordinates in points."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
    pages = _paginate(report)
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for k, rows in enumerate(pages):
        if k:
            writer.newPage()
        painter.save()
        painter.scale(RESOLUTION / 72.0, RESOLUTION / 72.0)
        y = _header(painter, report, k == 0)
        y = _overview(painter, report, y) if k == 0 else max(y, _TABLE_TOP_NEXT)
        _table(painter, rows, y, row_h=_row_height(report))
        _footer(painter, report, k + 1, len(pages), written)
        painter.restore()


def _row_height(report: ExamReport) -> float:
    return 58.0 if len(report.rows) <= 7 else 45.0


def _paginate(report: ExamReport) -> list[list[ZoneRow]]:
    """Rows per page: the first page holds the overview, the others only rows."""
    h = _row_height(report)
    bottom = _FOOTER_TOP - 4 - _HEAD_H
    first = max(1, int((bottom - _TABLE_TOP_FIRST) // h))
    rest = max(1, int((bottom - _TABLE_TOP_NEXT) // h))
    rows = list(report.rows)
    pages = [rows[:first]]
    rows = rows[first:]
    while rows:
        pages.append(rows[:rest])
        rows = rows[rest:]
    return pages


_TABLE_TOP_FIRST = 340.0
_TABLE_TOP_NEXT = 116.0
_HEAD_H = 24.0
_FOOTER_TOP = PAGE_H - MARGIN - 46


def _text(painter: QPainter, rect: QRectF, text: str, font: QFont, flags: int, colour: str = "#000000") -> None:
    painter.setFont(font)
    painter.setPen(QColor(colour))
    painter.drawText(rect, flags, text)


_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
_CENTER = int(Qt.AlignmentFlag.AlignCenter)
_WRAP = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap)


def _header(painter: QPainter, report: ExamReport, first: bool) -> float:
    w = PAGE_W - 2 * MARGIN
    _text(painter, QRectF(MARGIN, MARGIN, w * 0.6, 22), "Lung ultrasound exam report", _font(15, bold=True), _LEFT)
    box = QRectF(MARGIN + w * 0.6, MARGIN + 1, w * 0.4, 20)
    painter.setPen(QPen(QColor("#8a1c00"), 1.2))
    painter.setBrush(QColor("#fff4f0"))
    painter.drawRect(box)
    _text(painter, box, RESEARCH_ONLY, _font(8.5, bold=True), _CENTER, "#8a1c00")
    y = MARGIN + 30
    f = report.fields
    cols = (("Patient / exam ID", f.patient), ("Exam date", f.date), ("Operator", f.operator))
    cw = w / 3
    for i, (label, value) in enumerate(cols):
        x = MARGIN + i * cw
        _text(painter, QRectF(x, y, cw - 10, 10), label, _font(7), _LEFT, "#505050")
        _fitted(painter, QRectF(x, y + 10, cw - 14, 16), value, bold=True)
        painter.setPen(QPen(QColor("#808080"), 0.6))
        painter.drawLine(QPointF(x, y + 27), QPointF(x + cw - 14, y + 27))
    y += 34
    if not first:  # in page 1's colour: grey when every counted zone is a guess (it was black on page 2)
        colour = UNCERTAIN_COLOUR if _all_unsure(report) else "#000000"
        _text(painter, QRectF(MARGIN, y, w, 14), f"{report.headline} (continued)", _font(9, bold=True), _LEFT, colour)
        y += 16
    return y


def _all_unsure(report: ExamReport) -> bool:
    """Every zone counted in the total is uncertain: the total is a guess."""
    counted = [r for r in report.rows if r.confidence != "withheld"]
    return bool(counted) and all(r.confidence == "uncertain" for r in counted)


def _overview(painter: QPainter, report: ExamReport, y: float) -> float:
    w = PAGE_W - 2 * MARGIN
    legend_w = 124.0
    diagram = QRectF(MARGIN, y, w - legend_w - 8, 152)
    paint_chest(painter, diagram, report.cells)
    not_scored = has_not_scored(report.cells)
    key = QRectF(MARGIN + w - legend_w, y + 16 - 8 * not_scored, legend_w, 120 + 16 * not_scored)
    paint_legend(painter, key, not_scored=not_scored)
    y += 156
    # A total of uncertain zones is a guess: said beside it, and printed in grey when every
    # counted zone is uncertain (the shipped model's common case), as the viewer's "LUS 4? of 18".
    counted = [r for r in report.rows if r.confidence != "withheld"]
    unsure = sum(r.confidence == "uncertain" for r in counted)
    all_unsure = _all_unsure(report)
    head = _font(14, bold=True)
    _text(
        painter, QRectF(MARGIN, y, w, 20), report.headline, head, _LEFT, UNCERTAIN_COLOUR if all_unsure else "#000000"
    )
    if unsure:
        painter.setFont(head)
        x = MARGIN + painter.fontMetrics().horizontalAdvance(report.headline) + 10
        room = QRectF(x, y + 2, MARGIN + w - x, 18)
        small = _font(9, bold=True)
        painter.setFont(small)
        words = (
            f"every zone uncertain ({unsure} of {len(counted)}): a guess, not a finding"
            if all_unsure
            else f"{unsure} of {len(counted)} counted zones uncertain (guesses)"
        )
        if painter.fontMetrics().horizontalAdvance(words) > room.width():  # a long headline (INCOMPLETE, ...)
            words = "a guess, not a finding" if all_unsure else f"{unsure} uncertain"
        _text(painter, room, words, small, _LEFT, UNCERTAIN_COLOUR)
    y += 20
    proto = (
        f"Protocol: {report.protocol} zones ({report.scheme_name})"
        if report.protocol is not None
        else f"Protocol: the zones scanned (drawn as {report.scheme_name})"
    )
    _fitted(painter, QRectF(MARGIN, y, w, 14), report.clinician_line, pt=9.5)
    y += 14
    _fitted(painter, QRectF(MARGIN, y, w, 14), proto, pt=9.5)
    y += 16
    if report.notes:  # at most three lines: the table's place is fixed
        text = note_line(report.notes)
        _text(painter, QRectF(MARGIN, y, w, _TABLE_TOP_FIRST - y - 4), text, _font(8), _WRAP, "#6a4a00")
    return _TABLE_TOP_FIRST


def note_line(notes: list[str]) -> str:
    """The report's note under the total: its notes in one sentence (the last may end in a
    question, "clips from 2 folders: one patient?": no full stop after it, it read "?.")."""
    text = "Note: " + "; ".join(notes)
    return text if text.endswith(("?", ".")) else text + "."


#: Table columns: (title, width in points).
_COLS = (
    ("Zone · clip", 112.0),
    ("Worst frame", 64.0),
    ("Score per frame (0-3)\ngrey, dotted: weak call (a guess)", 146.0),
    ("Model", 62.0),
    ("Clinician", 44.0),
    ("Low-conf.\nframes", 40.0),
    ("Familiarity", 59.0),
)


def _table(painter: QPainter, rows: list[ZoneRow], y: float, *, row_h: float) -> None:
    x0 = MARGIN
    head_h = _HEAD_H
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#ececec"))
    painter.drawRect(QRectF(x0, y, sum(w for _, w in _COLS), head_h))
    x = x0
    for title, cw in _COLS:
        _text(painter, QRectF(x + 3, y + 1, cw - 4, head_h - 2), title, _font(7, bold=True), _LEFT)
        x += cw
    y += head_h
    for row in rows:
        _row(painter, row, QRectF(x0, y, sum(w for _, w in _COLS), row_h))
        y += row_h
        painter.setPen(QPen(QColor("#c8c8c8"), 0.5))
        painter.drawLine(QPointF(x0, y), QPointF(x0 + sum(w for _, w in _COLS), y))


def _row(painter: QPainter, row: ZoneRow, r: QRectF) -> None:
    cells = []
    x = r.left()
    for _, cw in _COLS:
        cells.append(QRectF(x + 3, r.top() + 3, cw - 6, r.height() - 6))
        x += cw
    zone, thumb, timeline, model, clin, weak, images = cells
    # zone and clip
    code = row.zone.code if row.zone else "—"
    name = row.zone.name if row.zone else "not placed on the chest"
    flag = "  (zone given twice)" if row.repeated else ""
    _text(painter, QRectF(zone.left(), zone.top(), zone.width(), 13), code, _font(10, bold=True), _LEFT)
    _text(painter, QRectF(zone.left(), zone.top() + 13, zone.width(), 20), name + flag, _font(7), _WRAP)
    _text(
        painter,
        QRectF(zone.left(), zone.bottom() - 11, zone.width(), 11),
        _elide(painter, Path(row.clip).name, _font(6.5, mono=True), zone.width()),
        _font(6.5, mono=True),
        _LEFT,
        "#404040",
    )
    detail = row.detail
    # the worst frame: its most severe finding (the viewer's "Jump to worst frame"), not the CSV's worst_frame
    severe = row.severe_frame
    if detail is not None and detail.thumbnail is not None:
        _image(painter, detail.thumbnail, QRectF(thumb.left(), thumb.top(), thumb.width(), thumb.height() - 9))
    else:
        painter.setPen(QPen(QColor("#a0a0a0"), 0.5, Qt.PenStyle.DotLine))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(QRectF(thumb.left(), thumb.top(), thumb.width(), thumb.height() - 9))
    _text(
        painter,
        QRectF(thumb.left(), thumb.bottom() - 8, thumb.width(), 8),
        f"frame {severe}"
        + (f" · score {int(detail.scores[severe])}" if detail is not None and len(detail.scores) else ""),
        _font(6),
        _CENTER,
        "#404040",
    )
    # per-frame scores
    if detail is not None and len(detail.scores):
        _timeline(painter, timeline, detail.scores, detail.weak, detail.fps, severe, row.confidence)
    # the model's score, the clinician's
    _score_chip(painter, QRectF(model.left(), model.top() + 1, 26, 19), row.model_score, row.confidence)
    words = {"withheld": "no reliable score", "uncertain": "uncertain"}.get(row.confidence, "")
    if words:
        _text(
            painter,
            QRectF(model.left(), model.top() + 21, model.width(), model.height() - 21),
            words + (f" (model {row.model_score})" if row.confidence == "withheld" else ""),
            _font(6),
            _WRAP,
        )
    if row.clinician is not None:
        differs = row.clinician != row.model_score
        _text(
            painter,
            QRectF(clin.left(), clin.top() + 2, clin.width(), 22),
            str(row.clinician),
            _font(13, bold=True),
            _LEFT,
        )
        if differs:
            _text(
                painter, QRectF(clin.left(), clin.top() + 26, clin.width(), 20), "differs", _font(6.5, bold=True), _WRAP
            )
    else:
        _text(painter, QRectF(clin.left(), clin.top() + 2, clin.width(), 22), "—", _font(11), _LEFT, "#707070")
    share = detail.low_confidence_share if detail is not None else float("nan")
    _text(
        painter,
        QRectF(weak.left(), weak.top() + 2, weak.width(), 22),
        f"{share:.0%}" if np.isfinite(share) else "",
        _font(9),
        _LEFT,
    )
    fam = row.familiarity_text
    _text(
        painter,
        QRectF(images.left(), images.top() + 4, images.width(), images.height()),
        fam,
        _font(7, bold=bool(row.unfamiliar)),
        _WRAP,
    )


def _fitted(painter: QPainter, rect: QRectF, text: str, *, pt: float = 10.5, bold: bool = False) -> None:
    """One line in ``rect``: smaller type where it is long (down to 6.5 pt), elided in the middle past that."""
    size = pt
    while True:
        font = _font(size, bold=bold)
        painter.setFont(font)
        if painter.fontMetrics().horizontalAdvance(text) <= rect.width() or size <= 6.5:
            break
        size -= 0.5
    _text(painter, rect, _elide(painter, text, font, rect.width()), font, _LEFT)


def _elide(painter: QPainter, text: str, font: QFont, width: float) -> str:
    painter.setFont(font)
    return painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideMiddle, int(width))


def _score_chip(painter: QPainter, r: QRectF, score: int, confidence: str) -> None:
    """The model's score as the diagram draws its zone: in the score's colour only when
    confident; uncertain, pale grey with a dashed edge and the score in grey ("0?")."""
    fill = {"withheld": WITHHELD_FILL, "uncertain": UNCERTAIN_FILL}.get(confidence, SCORE_COLOURS[score])
    style = Qt.PenStyle.DashLine if confidence == "uncertain" else Qt.PenStyle.SolidLine
    painter.setPen(QPen(QColor(UNCERTAIN_COLOUR if confidence == "uncertain" else "#404040"), 0.8, style))
    painter.setBrush(QColor(fill))
    painter.drawRoundedRect(r, 2, 2)
    text = "–" if confidence == "withheld" else f"{score}?" if confidence == "uncertain" else str(score)
    ink = UNCERTAIN_COLOUR if confidence == "uncertain" else text_colour(fill).name()
    _text(painter, r, text, _font(12, bold=True), _CENTER, ink)


def _image(painter: QPainter, rgb: np.ndarray, r: QRectF) -> None:
    a = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    h, w = a.shape[:2]
    img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    s = min(r.width() / w, r.height() / h)
    size = QSizeF(w * s, h * s)
    target = QRectF(QPointF(r.center().x() - size.width() / 2, r.top()), size)
    painter.drawImage(target, img)
    painter.setPen(QPen(QColor("#808080"), 0.4))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRect(target)


def _timeline(
    painter: QPainter, r: QRectF, scores: np.ndarray, weak: np.ndarray, fps: float, worst: int, confidence: str
) -> None:
    """Per-frame scores as bars on four rows (0 at the bottom), weak calls grey and dotted; the worst frame marked."""
    label_w = 8.0
    plot = QRectF(r.left() + label_w, r.top() + 2, r.width() - label_w, r.height() - 13)
    n = len(scores)
    for k in range(4):  # faint bands, one per score
        band = QRectF(plot.left(), plot.bottom() - (k + 1) * plot.height() / 4, plot.width(), plot.height() / 4)
        # no edge: the label's pen, left set, outlined bands 1-3 and not 0, which then read as off the chart
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#f2f2f2" if k % 2 else "#fafafa"))
        painter.drawRect(band)
        _text(painter, QRectF(r.left(), band.top(), label_w - 1, band.height()), str(k), _font(5.5), _CENTER, "#404040")
    dx = plot.width() / n
    painter.setPen(Qt.PenStyle.NoPen)
    starts = np.r_[0, np.flatnonzero(np.diff(scores * 2 + weak.astype(np.int64)[:n])) + 1, n]
    for a, b in itertools.pairwise(starts.tolist()):
        s = int(scores[a])
        if confidence == "withheld":
            colour = QColor("#9a9a9a")
        elif bool(weak[a]):  # a weak call is a guess: grey, never the score's colour (the viewer's grey dashes)
            colour = QColor(UNCERTAIN_COLOUR)
        else:
            colour = QColor(SCORE_COLOURS[s])
        # a low-confidence run is dotted as well as grey (the viewer's timeline dashes it)
        painter.setBrush(QBrush(colour, Qt.BrushStyle.Dense3Pattern) if bool(weak[a]) else QBrush(colour))
        h = plot.height() / 4
        painter.drawRect(QRectF(plot.left() + a * dx, plot.bottom() - (s + 1) * h + h * 0.15, (b - a) * dx, h * 0.7))
    painter.setPen(QPen(QColor("#9a9a9a"), 0.5))  # one frame round the four levels, over the bars
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRect(plot)
    painter.setPen(QPen(QColor("#1f1fbf"), 0.8))
    xw = plot.left() + (worst + 0.5) * dx
    painter.drawLine(QPointF(xw, plot.top()), QPointF(xw, plot.bottom()))
    end = f"{n / fps:.1f} s" if fps > 0 else f"{n} frames"
    _text(painter, QRectF(plot.left(), plot.bottom() + 1, 40, 9), "0", _font(5.5), _LEFT, "#404040")
    _text(
        painter,
        QRectF(plot.right() - 60, plot.bottom() + 1, 60, 9),
        end,
        _font(5.5),
        int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
        "#404040",
    )


def _footer(painter: QPainter, report: ExamReport, page: int, pages: int, written: str) -> None:
    w = PAGE_W - 2 * MARGIN
    y = _FOOTER_TOP
    painter.setPen(QPen(QColor("#808080"), 0.5))
    painter.drawLine(QPointF(MARGIN, y), QPointF(MARGIN + w, y))
    y += 3
    for name, sha in report.models or [("(no model)", "")]:
        _text(
            painter, QRectF(MARGIN, y, w, 10), f"Model {name}   ·   weights sha256 {sha}", _font(6.5, mono=True), _LEFT
        )
        y += 10
    devices = ", ".join(report.devices) or "not recorded"
    _text(
        painter,
        QRectF(MARGIN, y, w, 10),
        f"Device {devices}   ·   lusviewer {report.lusviewer_version}   ·   written {written}",
        _font(6.5, mono=True),
        _LEFT,
    )
    y += 12
    _text(painter, QRectF(MARGIN, y, w * 0.8, 12), RESEARCH_ONLY + ".", _font(8, bold=True), _LEFT, "#8a1c00")
    _text(
        painter,
        QRectF(MARGIN + w * 0.8, y, w * 0.2, 12),
        f"Page {page} of {pages}",
        _font(7.5),
        int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
    )
