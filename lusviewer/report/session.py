"""One examination being built: the :class:`~lusviewer.report.exam.Exam` and what
happened to the clips meant for it.

:class:`ExamSession` is the one place that changes an exam as its clips are scored,
fail, are removed, are given the clinician's score, or as its protocol changes, and
that knows whether the exam as it stands has been written. ``lusviewer score --exam``
and the viewer's controller both keep their exam through it. No Qt here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lusviewer.report.aggregate import low_confidence
from lusviewer.report.csv_report import ClipScores
from lusviewer.report.exam import Exam, ExamEntry, write_exam_csv
from lusviewer.report.zones import Zone, zone_from_name, zone_named


@dataclass(frozen=True)
class ClipDetail:
    """What the exam report shows of a scored clip beyond its exam row."""

    scores: np.ndarray  # per frame, 0-3
    weak: np.ndarray  # per frame, True: a low-confidence call (aggregate.low_confidence)
    fps: float
    device: str
    precision: str
    #: The worst frame (RGB, small), or None where it was not kept.
    thumbnail: np.ndarray | None = None
    #: The frame ``thumbnail`` shows, where it was chosen skipping blank frames
    #: (:func:`~lusviewer.report.exam_report.pictured_frame`); None: the most severe frame.
    thumbnail_frame: int | None = None

    @property
    def low_confidence_share(self) -> float:
        return float(np.mean(self.weak)) if len(self.weak) else 0.0


class ExamSession:
    """The exam of one patient as clips are scored, one after the other.

    Every change returns whether the exam changed (the viewer redraws only then).
    :attr:`exported` is False while the exam has changes not yet written."""

    def __init__(self, zones: int | None = None, zone_rule: Callable[[str], str | None] | None = None) -> None:
        self._exam = Exam(zones)
        #: False while the exam has changes not yet written by :meth:`export`.
        self.exported = True
        #: ``--zone-from``: a clip's zone on the chest, tried before its file name (report.zones.zone_rule).
        self.zone_rule = zone_rule
        #: Per clip in the exam, what its report row shows (per-frame scores, worst frame).
        self.details: dict[str, ClipDetail] = {}
        #: Clips whose zone the last change of protocol took off: the new protocol has no zone
        #: where they were recorded (:meth:`set_zones`).
        self.unplaced: list[str] = []

    @property
    def exam(self) -> Exam:
        """The exam itself (the same object for the whole session: cleared, never replaced)."""
        return self._exam

    def scored(self, result: ClipScores, zone: str | None = None, thumbnail: np.ndarray | None = None) -> ExamEntry:
        """A clip was scored: it joins the exam, replacing its earlier entry, and is no
        longer counted among the clips that could not be scored. Its zone on the chest is
        kept when it had one, else read by :attr:`zone_rule` or from its file name
        (:func:`~lusviewer.report.zones.zone_from_name`); ``thumbnail``: its worst frame."""
        entry = ExamEntry.from_result(result, zone)
        self._exam.add(entry)
        if entry.clip in self._exam.not_scored:  # scored after all
            self._exam.not_scored.remove(entry.clip)
        if self._exam.body_zone(entry.clip) is None:
            code = self.zone_rule(entry.clip) if self.zone_rule is not None else None
            code = code or zone_from_name(entry.clip, self._exam.zones)
            if code is not None:
                self._exam.set_body_zone(entry.clip, code)
        info = getattr(result, "info", None)
        self.details[entry.clip] = ClipDetail(
            scores=np.asarray(result.scores, dtype=np.int64).copy(),
            weak=low_confidence(result.probs),
            fps=float(getattr(info, "fps", 0.0) or 0.0),
            device=str(getattr(result, "device", "")),
            precision=str(getattr(result, "precision", "")),
            thumbnail=thumbnail,
        )
        self.exported = False
        return entry

    def set_body_zone(self, clip: str, code: str | None) -> bool:
        """The clinician places a clip on the chest (``None``: nowhere); the same zone again changes nothing."""
        if clip not in self._exam or self._exam.body_zone(clip) == code:
            return False
        self._exam.set_body_zone(clip, code)
        self.exported = False
        return True

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
        self.details.pop(clip, None)
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
        """The exam's protocol (6 or 14 zones, or None: the zones scored). The clips keep
        their places on the chest: where the protocol's zones are another scheme's (the BLUE
        points, Soldati's 14 zones), a clip's zone is that scheme's zone of the same place
        (the upper BLUE point ``R1``: Soldati's anterior upper ``R7``), and where the new
        scheme has no such zone (a PLAPS point; a posterior zone) it is taken off, for the
        clinician to choose (:attr:`unplaced`). A code kept as it was named another place
        in the other scheme: the right upper BLUE point was drawn, and reported, as the
        right posterior lower zone."""
        if zones == self._exam.zones:
            return False
        before = self._exam.scheme
        placed = {e.clip: z for e in self._exam.entries if (z := self._exam.body_zone(e.clip)) is not None}
        self._exam.zones = zones
        self.unplaced = []
        after = self._exam.scheme
        if after != before:
            for clip, code in placed.items():
                zone = zone_named(code, before)
                same = _same_place(zone, after) if zone is not None else None
                self._exam.set_body_zone(clip, same)
                if same is None:
                    self.unplaced.append(clip)
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
        self.details.clear()
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


def _same_place(zone: Zone, scheme: tuple[Zone, ...]) -> str | None:
    """The code of ``scheme``'s zone at ``zone``'s place on the chest (side, region, level), or None."""
    return next((z.code for z in scheme if (z.side, z.region, z.level) == (zone.side, zone.region, zone.level)), None)
