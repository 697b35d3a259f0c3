"""Exporting from the viewer: the clip's CSV report (now, or when scoring finishes), the
exam's CSV and the exam's PDF report, with the save dialog and the questions around them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from lusviewer.report.exam_report import ExamFields

if TYPE_CHECKING:
    from lusviewer.ui.controller import Controller

log = logging.getLogger(__name__)


def failure_line(path: str, exc: BaseException) -> str:
    """One line naming the file and the reason: the path once (the writers' messages name it
    already: "/proc/x.json: /proc/x.json: the report cannot be written ...")."""
    text = str(exc)
    return text if text.startswith(f"{path}:") else f"{path}: {text}"


class ExamFieldsDialog(QDialog):
    """What the clinician types for the exam report: patient or exam id, date, operator
    (never guessed from the files; left blank where not typed)."""

    def __init__(self, parent: QWidget | None, fields: ExamFields) -> None:
        super().__init__(parent)
        self.setWindowTitle("Exam report")
        form = QFormLayout(self)
        form.addRow(QLabel("Printed on the report as typed; nothing is read from the files."))
        self.patient = QLineEdit(fields.patient)
        self.date = QLineEdit(fields.date)
        self.date.setPlaceholderText("e.g. 2026-12-02")
        self.operator = QLineEdit(fields.operator)
        form.addRow("Patient / exam ID:", self.patient)
        form.addRow("Exam date:", self.date)
        form.addRow("Operator:", self.operator)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def fields(self) -> ExamFields:
        return ExamFields(self.patient.text().strip(), self.date.text().strip(), self.operator.text().strip())


class Exporter:
    """Writes through the controller and remembers the export folder in ``settings``.
    ``ask`` (title, text -> yes?) and ``warn`` (title, text) are the window's questions
    and warnings; ``notify`` (text, milliseconds) its passing status-bar message."""

    def __init__(
        self,
        parent: QWidget,
        controller: Controller,
        settings: QSettings,
        *,
        ask: Callable[[str, str], bool],
        warn: Callable[[str, str], None],
        notify: Callable[[str, int], None],
    ) -> None:
        self._parent = parent
        self._c = controller
        self._settings = settings
        self._ask = ask
        self._warn = warn
        self._notify = notify
        #: Where the report goes once scoring finishes (the user said yes), or None.
        self.pending: str | None = None
        #: The exam report's fields as last typed (this session only: a patient id is not stored on disk).
        self.fields = ExamFields()
        controller.scoring_finished.connect(self._finished)

    def export_dialog(self) -> None:
        c = self._c
        if c.info is None:
            return
        path = self._save_path(
            "Export clip scores",
            Path(c.info.path).stem + "_report.csv",
            Path(c.info.path).parent,
            "CSV (*.csv);;JSON (*.json)",
        )
        if path:
            self.request_export(path)

    def _save_path(self, title: str, name: str, clip_folder: Path, kind: str = "CSV (*.csv)") -> str:
        """A CSV path from the save dialog ('' when cancelled); overwriting is asked later.
        It opens in the folder of the last export (reports kept together, not among the
        clips), or the clip's folder the first time."""
        last = str(self._settings.value("export_dir", ""))
        folder = Path(last) if last and Path(last).is_dir() else clip_folder
        path, _ = QFileDialog.getSaveFileName(
            self._parent, title, str(folder / name), kind, options=QFileDialog.Option.DontConfirmOverwrite
        )
        if path:
            self._settings.setValue("export_dir", str(Path(path).parent))
        return path

    def request_export(self, path: str) -> bool:
        """Export now, or, while scoring runs, offer to export when it finishes."""
        c = self._c
        if c.result is not None:
            return self.export_to(path)
        if c.running:
            if self._ask(
                "Scoring has not finished",
                f"{Path(c.info.path).name if c.info else 'The clip'} is still being scored "
                f"({c.n_scored} of {c.frame_count} frames). Export when it finishes?",
            ):
                self.pending = path
                self._notify("The report will be written when scoring finishes", 8000)
            return False
        self._warn("Nothing to export", "This clip has not been scored (scoring was cancelled or failed).")
        return False

    def _finished(self, _result: object) -> None:
        path, self.pending = self.pending, None
        if path is not None:
            self.export_to(path)

    def scoring_stopped(self, why: str) -> None:
        """Scoring failed or was cancelled (``why``, for the user): a report promised for when
        it finishes is not written, and the user is told, never silently. (A partial report
        is not written: its clip score would read as the clip's.)"""
        path, self.pending = self.pending, None
        if path is not None:
            self._warn(
                "Report not written",
                f"The report was to be written when scoring finished, but {why}.\n\nNothing was written to {path}.",
            )

    def export_to(self, path: str, *, overwrite: bool | None = None) -> bool:
        from lusviewer.report import report_outputs

        existing = [p for p in report_outputs(path) if p.exists()]
        if existing and not (
            overwrite
            if overwrite is not None
            else self._ask("Overwrite?", "Replace " + " and ".join(p.name for p in existing) + "?")
        ):
            return False
        try:
            written = self._c.export(path)
        except (OSError, RuntimeError) as exc:
            self._warn("Export failed", failure_line(path, exc))
            return False
        self._notify(f"Wrote {written[0]}" + "".join(f" and {p.name}" for p in written[1:]), 8000)
        return True

    def export_exam_dialog(self) -> None:
        exam = self._c.exam
        if not len(exam):
            return
        path = self._save_path("Export exam CSV", "exam.csv", Path(exam.entries[0].clip).parent)
        if path:
            self.export_exam_to(path)

    def export_exam_to(self, path: str, *, overwrite: bool | None = None) -> bool:
        c = self._c
        pending = c.queued + ([c.info.path] if c.running and c.info is not None and c.info.path not in c.exam else [])
        if pending and not self._ask(
            "The exam is not complete",
            f"{len(pending)} clip{'s are' if len(pending) != 1 else ' is'} still to be scored "
            f"({', '.join(Path(p).name for p in pending)}); the exam holds {len(c.exam)} zones. "
            "Export the zones scored so far?",
        ):
            return False
        if Path(path).exists() and not (
            overwrite if overwrite is not None else self._ask("Overwrite?", f"Replace {Path(path).name}?")
        ):
            return False
        try:
            out = self._c.export_exam(path)
        except (OSError, ValueError) as exc:
            self._warn("Export failed", failure_line(path, exc))
            return False
        self._notify(f"Wrote {out} ({self._c.exam.summary()})", 8000)
        return True

    def export_report_dialog(self) -> None:
        exam = self._c.exam
        if not len(exam):
            return
        dialog = ExamFieldsDialog(self._parent, self.fields)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.fields = dialog.fields()
        path = self._save_path("Export exam report", "exam.pdf", Path(exam.entries[0].clip).parent, "PDF (*.pdf)")
        if path:
            if Path(path).suffix.lower() != ".pdf":  # a name typed without its extension
                path += ".pdf"
            self.export_report_to(path, self.fields)

    def export_report_to(self, path: str, fields: ExamFields | None = None, *, overwrite: bool | None = None) -> bool:
        """The exam's PDF report (the same numbers as its CSV); asks as :meth:`export_exam_to` does."""
        from lusviewer.report.exam_report import build_exam_report
        from lusviewer.ui.exam_report import write_exam_pdf

        c = self._c
        if not len(c.exam):
            return False
        pending = c.queued + ([c.info.path] if c.running and c.info is not None and c.info.path not in c.exam else [])
        if pending and not self._ask(
            "The exam is not complete",
            f"{len(pending)} clip{'s are' if len(pending) != 1 else ' is'} still to be scored; the exam holds "
            f"{len(c.exam)} zones. Export the zones scored so far?",
        ):
            return False
        if Path(path).exists() and not (
            overwrite if overwrite is not None else self._ask("Overwrite?", f"Replace {Path(path).name}?")
        ):
            return False
        # a busy cursor meanwhile: the frames pictured are read and the pages painted here, on the
        # GUI thread (1.6 s for a 14-zone exam of COVID-BLUeS clips, the window still)
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        failure = ""
        try:
            self._add_thumbnails()
            out = write_exam_pdf(path, build_exam_report(c.exam_session, fields or self.fields))
        except (OSError, ValueError) as exc:
            failure = failure_line(path, exc)
        finally:
            QApplication.restoreOverrideCursor()  # before any warning: its dialog is no wait
        if failure:
            self._warn("Export failed", failure)
            return False
        self._notify(f"Wrote {out} ({c.exam.summary()})", 8000)
        return True

    def _add_thumbnails(self) -> None:
        """The worst frame (most severe finding: :func:`~lusviewer.report.exam_report.most_severe_frame`,
        as the Clip tab's "Jump to worst frame") of each clip of the exam, read now (a few frames:
        quick) where not kept yet."""
        from dataclasses import replace

        from lusviewer.io import open_clip
        from lusviewer.report.exam_report import pictured_frame, thumbnail_of

        session = self._c.exam_session
        for e in session.exam.entries:
            detail = session.details.get(e.clip)
            if detail is None or detail.thumbnail is not None:
                continue
            index = e.worst_frame
            try:
                with open_clip(e.clip) as reader:
                    if len(detail.scores):  # the worst frame that shows a picture, as the Clip tab's
                        index = pictured_frame(detail.scores, detail.weak, e.worst_frame, reader.frame)
                    frame = reader.frame(index)
            except Exception as exc:  # the report shows an empty frame box; the scores are what matter
                log.warning("%s: worst frame %d not shown in the exam report (%s)", e.clip, index, exc)
                continue
            session.details[e.clip] = replace(detail, thumbnail=thumbnail_of(frame), thumbnail_frame=index)
