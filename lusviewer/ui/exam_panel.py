"""The exam: the clips scored so far, each placed on the chest (a zone read from its
file name, or chosen here), the clinician's own scores beside the model's, the LUS
score total, and the chest diagram of the zones above the table."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSignalBlocker, Qt, Signal, SignalInstance
from PySide6.QtGui import QColor, QFont, QIcon, QPixmap, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
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

from lusviewer.report.aggregate import clip_score_text
from lusviewer.report.exam import PROTOCOLS, ExamEntry
from lusviewer.report.exam_report import ZoneCell
from lusviewer.report.zones import ALL_CODES, SOLDATI_ZONES
from lusviewer.ui.chest_diagram import ChestDiagram
from lusviewer.ui.palette import UNCERTAIN_COLOUR, clip_score_colour


def _swatch(score: int, confidence: str = "confident") -> QIcon:
    """The score's colour when confident; neutral grey when uncertain or withheld (as the Clip tab)."""
    pix = QPixmap(12, 12)
    pix.fill(QColor(clip_score_colour(score, confidence)))
    return QIcon(pix)


CLINICIAN_CHOICES = ("—", "0", "1", "2", "3")
#: Table columns (logical); the zone is shown second (:meth:`QHeaderView.moveSection`).
COL_CLIP, COL_MODEL, COL_YOURS, COL_NOTE, COL_ZONE = range(5)


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


class _WholeRowsTable(QTableWidget):
    """A table whose rows are drawn whole: its viewport is a whole number of rows high (the
    pixels left over are a blank strip under it) and it scrolls by rows. Scrolled per pixel,
    or per row to its last row (Qt aligns that one to the bottom), it showed part of a row at
    the top (viewer-exam-diagram.png at 1280x800)."""

    def __init__(self, rows: int, columns: int) -> None:
        super().__init__(rows, columns)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerItem)
        self._fitting = False

    def updateGeometries(self) -> None:
        super().updateGeometries()
        if self._fitting:
            return
        self._fitting = True
        try:
            m = self.viewportMargins()
            row = self.verticalHeader().defaultSectionSize()
            room = self.height() - 2 * self.frameWidth() - m.top()
            if self.horizontalScrollBar().isVisible():
                room -= self.horizontalScrollBar().height()
            rest = room % row if room >= row else 0
            if m.bottom() != rest:
                self.setViewportMargins(m.left(), m.top(), m.right(), rest)
        finally:
            self._fitting = False


class ExamPanel(QWidget):
    """The exam: one row per scored clip (zone, the model's clip score, the clinician's
    own score, a note), the LUS score total, and buttons to open, remove, clear and
    export. It shows what it is given."""

    open_requested = Signal(str)  # clip path
    remove_requested = Signal(str)
    clinician_score_changed = Signal(str, object)  # clip path, 0-3 or None
    body_zone_changed = Signal(str, object)  # clip path, zone code ("L2") or None
    zones_changed = Signal(object)  # the protocol's number of zones, or None
    clear_requested = Signal()
    export_requested = Signal()
    #: Its rows changed: the height it wants (:meth:`wanted_height`) may have.
    rows_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 1, 6, 0)
        layout.setSpacing(3)  # the rows' pixels go to the diagram: the panel fits a 1024x600 screen
        self.total = QLabel("No clip in the exam yet")
        f = QFont()
        f.setPointSize(11)  # a three-line summary (incomplete, clinician, uncertain) must leave the table room
        f.setBold(True)
        self.total.setFont(f)
        self.total.setWordWrap(True)
        # its wrapped height follows its own width (the panel's resize came before the label's,
        # and a summary set while the tab was hidden kept the height of a 100 px label: 7 lines,
        # which pushed a 1024x600 window to 618 px)
        self.total.installEventFilter(self)
        self.total.setToolTip(
            "Every clip scored in this session is added; the LUS score is the sum of the clip scores. A zone with "
            "no reliable score (unlike the training clips) is left out and the exam is incomplete; an uncertain "
            "score is counted, marked."
        )
        self.table = _WholeRowsTable(0, 5)
        headers = (
            ("Clip", ""),
            ("Model", "The model's clip score"),
            ("Yours", "Your own score of the zone (0-3), recorded beside the model's and exported with the exam"),
            ("Note", ""),
            (
                "Zone",
                "Where on the chest the clip was recorded: read from its file name (L1-L3/R1-R3 BLUE points, "
                "R1-R7/L1-L7 Soldati's zones) or chosen here; a zone given twice is marked",
            ),
        )
        for col, (label, tip) in enumerate(headers):
            item = QTableWidgetItem(label)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(col, item)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        # The clip tab sets the panel's height; the table scrolls rather than squeezing the timeline.
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        # Four rows at least: more would make the layout's minimum taller than the tab on an
        # 800 px screen, and Qt then draws the buttons over the table's last row (seen under
        # Xvfb at 1280x800 with a three-line summary); past four rows the table scrolls.
        self.table.setMinimumHeight(4 * 22 + 26)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_ZONE, QHeaderView.ResizeMode.ResizeToContents)
        header.moveSection(COL_ZONE, COL_MODEL)  # shown second: Clip, Zone, Model, Yours, Note
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
        self.diagram = ChestDiagram()
        # the diagram beside the protocol and the total, not above them: the panel is at its
        # minimum height on an 800 px screen, and a diagram of its own row pushed a 1024x600
        # window past the screen (seen under Xvfb); beside them it takes their height
        left = QVBoxLayout()
        left.setSpacing(2)
        left.addLayout(head)
        left.addWidget(self.total)
        left.addStretch(1)
        self._left = left
        self._top = top = QHBoxLayout()
        top.addLayout(left, 3)
        top.addWidget(self.diagram, 2)
        layout.addLayout(top)
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
        box = self.table.cellWidget(row, COL_YOURS)
        assert isinstance(box, QComboBox)
        return box

    def zone_box(self, row: int) -> QComboBox:
        box = self.table.cellWidget(row, COL_ZONE)
        assert isinstance(box, QComboBox)
        return box

    def _zone_box(
        self, clip: str, code: str | None, choices: tuple[str, ...], names: dict[str, str], repeated: bool
    ) -> QComboBox:
        box = _FocusedComboBox()
        box.addItem("—", None)
        for c in choices:
            box.addItem(c, c)
            box.setItemData(box.count() - 1, names.get(c, c), Qt.ItemDataRole.ToolTipRole)
        if code is not None and box.findData(code) < 0:  # a zone of another protocol: kept, shown
            box.addItem(code, code)
        box.setCurrentIndex(max(0, box.findData(code)))
        tip = f"Where on the chest {clip} was recorded (— : not placed)"
        if repeated:
            box.setStyleSheet("QComboBox { background: #ffd9a8; font-weight: bold; }")
            tip += "; its zone is given to another clip too"
        box.setToolTip(tip)
        box.currentIndexChanged.connect(
            lambda _i, clip=clip, box=box: self.body_zone_changed.emit(clip, box.currentData())
        )
        return box

    def set_zones(self, zones: int | None) -> None:
        """Show the protocol (without emitting ``zones_changed``)."""
        with QSignalBlocker(self.protocol):
            self.protocol.setCurrentIndex(max(0, self.protocol.findData(zones)))

    def _fit_total(self) -> None:
        """The wrapped summary's height at the panel's width is the label's minimum: a
        splitter does not ask for height-for-width, and without this a three-line summary
        pushes the buttons over the table's last row."""
        width = self.total.width()
        if width <= 0:
            return
        # A long summary steps its type down (11 pt to 8 pt) until it fits beside the diagram: at
        # 11 pt the summary of an incomplete exam took 6-7 lines at 1024x600 and pushed the window
        # past the screen, the status bar (and its disclaimer) out of sight.
        room = self.diagram.minimumHeight() - self.protocol.sizeHint().height() - 2
        f = self.total.font()
        for pt in self.TOTAL_POINTS:
            if f.pointSize() != pt:
                f.setPointSize(pt)
                self.total.setFont(f)
            if self.total.heightForWidth(width) <= room:
                break
        self.total.setMinimumHeight(self.total.heightForWidth(width))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.total and event.type() == QEvent.Type.Resize:
            self._fit_total()
        return super().eventFilter(watched, event)

    #: The summary's type sizes, largest first: the first that fits beside the diagram.
    TOTAL_POINTS = (11, 10, 9, 8)

    #: From this width on the diagram gets half the panel, room for its key beside the views
    #: (1280x800 up); narrower, the summary keeps three fifths, or it wraps to more lines than
    #: the diagram is high and the window outgrows a 600 px screen.
    WIDE = 600

    def _spare_for_diagram(self) -> None:
        """A tall tab (1920x1080) gives the diagram what the table does not need for its rows
        (it stayed 110 px high above a half-empty table)."""
        rows = max(4, self.table.rowCount())
        table = rows * self.table.verticalHeader().defaultSectionSize() + self.table.horizontalHeader().height() + 4
        rest = self.export_button.sizeHint().height() + 12
        self.diagram.want_height(self.height() - table - rest)

    def wanted_height(self) -> int:
        """The height that shows every row of the exam whole (the window's side splitter gives it
        where the timeline can spare it, :class:`~lusviewer.ui.layout.SideSplitter`); 0 for no rows."""
        rows = self.table.rowCount()
        if not rows:
            return 0
        layout = self.layout()
        assert layout is not None
        margins = layout.contentsMargins()
        spacing = layout.spacing()
        top = max(self.diagram.FULL_HEIGHT, self._left.sizeHint().height())
        table = (
            rows * self.table.verticalHeader().defaultSectionSize()
            + self.table.horizontalHeader().sizeHint().height()
            + 2 * self.table.frameWidth()
            + 2
        )
        buttons = max(b.sizeHint().height() for b in (self.open_button, self.export_button))
        return margins.top() + margins.bottom() + top + table + buttons + 2 * spacing

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._spare_for_diagram()
        wide = self.width() >= self.WIDE
        self._top.setStretch(0, 1 if wide else 3)
        self._top.setStretch(1, 1 if wide else 2)
        super().resizeEvent(event)
        self._fit_total()

    def set_exam(
        self,
        entries: list[ExamEntry],
        summary: str,
        current: str | None = None,
        clinician: dict[str, int] | None = None,
        *,
        zones: dict[str, str] | None = None,
        zone_choices: tuple[str, ...] = ALL_CODES,
        cells: list[ZoneCell] | None = None,
        zone_names: dict[str, str] | None = None,
    ) -> None:
        """Show ``entries`` with the clinician's scores (``clinician``: clip -> 0-3) and their
        zones on the chest (``zones``: clip -> code, chosen among ``zone_choices``), and the
        diagram's ``cells``; ``current`` (the clip on screen) is selected."""
        clinician = clinician or {}
        zones = zones or {}
        names = zone_names or {z.code: z.name for z in SOLDATI_ZONES}
        self.diagram.set_cells(cells or [])
        placed = [zones.get(e.clip) or e.zone for e in entries]
        twice = {z for z in placed if placed.count(z) > 1}
        self._paths = [e.clip for e in entries]
        shas = list(dict.fromkeys(e.weights_sha256 for e in entries))
        self.total.setText(summary)
        # a total made of guesses only (every counted zone uncertain) in the uncertain grey, as the
        # PDF's headline and the tab's "LUS 1?": it read "LUS score 1 of 18" in bold black
        counted = [e for e in entries if not e.withheld]
        guesses = bool(counted) and all(e.confidence == "uncertain" for e in counted)
        self.total.setStyleSheet(f"color: {UNCERTAIN_COLOUR};" if guesses else "")
        self._fit_total()
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(entries))
            for row, e in enumerate(entries):
                zone = QTableWidgetItem(e.zone)
                zone.setToolTip(e.clip)
                # the Clip tab's words and colours; the swatch is visible when selected too
                words = clip_score_text(e.clip_score, e.confidence)
                score = QTableWidgetItem(_swatch(e.clip_score, e.confidence), words)
                if e.confidence != "confident":
                    score.setForeground(QColor(clip_score_colour(e.clip_score, e.confidence)))
                notes = []
                if e.withheld:
                    notes.append(f"unlike the training clips: not in the total (model output {e.clip_score})")
                elif e.unfamiliar:
                    notes.append("unlike the training clips")
                if e.confidence == "uncertain":
                    notes.append("weak calls: counted in the total, a guess")
                if len(shas) > 1:
                    notes.append(f"model {e.model} ({e.weights_sha256[:8]})")
                mine = clinician.get(e.clip)
                if mine is not None and mine != e.clip_score:
                    notes.insert(0, f"you {mine}, model {e.clip_score}")
                code = zones.get(e.clip)
                repeated = (code or e.zone) in twice
                if repeated:
                    notes.insert(0, f"zone {code or e.zone} given twice")
                self.table.setItem(row, COL_CLIP, zone)
                self.table.setItem(row, COL_MODEL, score)
                self.table.setCellWidget(row, COL_YOURS, self._clinician_box(e.clip, mine))
                note = QTableWidgetItem("; ".join(notes))
                note.setToolTip(note.text())  # cut short in its column at 1280x800 ("weak calls: counted in the ...")
                self.table.setItem(row, COL_NOTE, note)
                self.table.setCellWidget(row, COL_ZONE, self._zone_box(e.clip, code, zone_choices, names, repeated))
            self.table.clearSelection()
            if current in self._paths:
                self.table.selectRow(self._paths.index(current))
        self._update_buttons()
        self._spare_for_diagram()  # more rows: less to spare
        self.rows_changed.emit()
