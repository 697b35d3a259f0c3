"""One examination being built: the :class:`~lusviewer.report.exam.Exam` and what
happened to the clips meant for it.

:class:`ExamSession` is the one place that changes an exam as its clips are scored,
fail, are removed, are given the clinician's score, or as its protocol changes, and
that knows whether the exam as it stands has been written. ``lusviewer score --exam``
and the viewer's controller both keep their exam through it. No Qt here.
"""

from __future__ import annotations

import os
from pathlib import Path

from lusviewer.report.csv_report import ClipScores
from lusviewer.report.exam import Exam, ExamEntry, write_exam_csv


class ExamSession:
    """The exam of one patient as clips are scored, one after the other.

    Every change returns whether the exam changed (the viewer redraws only then).
    :attr:`exported` is False while the exam has changes not yet written."""

    def __init__(self, zones: int | None = None) -> None:
        self._exam = Exam(zones)
        #: False while the exam has changes not yet written by :meth:`export`.
        self.exported = True

    @property
    def exam(self) -> Exam:
        """The exam itself (the same object for the whole session: cleared, never replaced)."""
        return self._exam

    def scored(self, result: ClipScores, zone: str | None = None) -> ExamEntry:
        """A clip was scored: it joins the exam, replacing its earlier entry, and is no
        longer counted among the clips that could not be scored."""
        entry = ExamEntry.from_result(result, zone)
        self._exam.add(entry)
        if entry.clip in self._exam.not_scored:  # scored after all
            self._exam.not_scored.remove(entry.clip)
        self.exported = False
        return entry

    def failed(self, path: str) -> bool:
        """A clip meant for the exam could not be opened or scored: the exam's total lacks
        its zone. Recorded once; a clip already in the exam keeps its earlier score."""
        if path in self._exam or path in self._exam.not_scored:
            return False
        self._exam.not_scored.append(path)
        self.exported = False
        return True

    def remove(self, clip: str) -> bool:
        if clip not in self._exam:
            return False
        self._exam.remove(clip)
        self.exported = not len(self._exam)  # an empty exam has nothing left to lose
        return True

    def set_clinician_score(self, clip: str, score: int | None) -> bool:
        """Record the clinician's own score of a zone beside the model's (``None``: none);
        a clip not in the exam, or the same score again, changes nothing."""
        if clip not in self._exam or self._exam.clinician_score(clip) == score:
            return False
        self._exam.set_clinician_score(clip, score)
        self.exported = False
        return True

    def set_zones(self, zones: int | None) -> bool:
        """The exam's protocol (6 or 14 zones, or None: the zones scored)."""
        if zones == self._exam.zones:
            return False
        self._exam.zones = zones
        if len(self._exam):
            self.exported = False
        return True

    @property
    def clinician_scores(self) -> dict[str, int]:
        """The clinician's scores by clip, for the clips that have one."""
        exam = self._exam
        return {e.clip: s for e in exam.entries if (s := exam.clinician_score(e.clip)) is not None}

    def clear(self) -> None:
        self._exam.clear()
        self.exported = True

    @property
    def unsaved(self) -> bool:
        """An exam of two or more clips, or with the clinician's own scores, with changes
        not yet exported: worth a question before it is dropped (one clip alone is no
        exam; its clip report has the same score)."""
        return (len(self._exam) > 1 or self._exam.n_clinician > 0) and not self.exported

    def export(self, path: str | os.PathLike[str]) -> Path:
        """The exam's CSV (one row per clip, then the LUS score total), atomically."""
        out = write_exam_csv(path, self._exam)
        self.exported = True
        return out
