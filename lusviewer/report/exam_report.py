"""What the exam report shows, built from the exam session: the fields the clinician
typed, the total with its protocol, one row per clip and one cell per zone of the chest
diagram, and where the scores came from. No Qt here: ``lusviewer.ui.exam_report`` paints
it (viewer and ``lusviewer score --exam-report`` alike), ``lusviewer.ui.chest_diagram``
draws its cells. The numbers are the exam CSV's (:func:`~lusviewer.report.exam.write_exam_csv`):
the same :class:`~lusviewer.report.exam.Exam` object is read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lusviewer.report.exam import Exam
from lusviewer.report.session import ClipDetail, ExamSession
from lusviewer.report.zones import Zone, zone_from_name, zone_named
from lusviewer.wording import count

#: Printed on every page of the report.
RESEARCH_ONLY = "Research use only, not a medical device"


@dataclass(frozen=True)
class ExamFields:
    """What the clinician types for the report; never guessed from the files ("" : left blank)."""

    patient: str = ""
    date: str = ""
    operator: str = ""


@dataclass(frozen=True)
class ZoneRow:
    """One clip of the exam, as its report row shows it."""

    clip: str
    label: str  # the exam CSV's ``zone`` (the clip's name without extension)
    zone: Zone | None  # where on the chest; None: not placed
    model_score: int
    confidence: str  # "confident", "uncertain", "withheld"
    clinician: int | None
    frames: int
    worst_frame: int  # the exam CSV's: the frame behind the clip score
    unfamiliar: bool | None
    repeated: bool  # its zone is given to another clip too
    detail: ClipDetail | None = None

    @property
    def severe_frame(self) -> int:
        """The clip's worst frame, its most severe finding (:func:`most_severe_frame`); the
        CSV's ``worst_frame`` (the frame behind the clip score) where no per-frame scores are kept."""
        if self.detail is None or not len(self.detail.scores):
            return self.worst_frame
        if self.detail.thumbnail_frame is not None:  # the frame pictured (a blank frame skipped)
            return self.detail.thumbnail_frame
        return most_severe_frame(self.detail.scores, self.detail.weak, self.worst_frame)

    @property
    def score_text(self) -> str:
        if self.confidence == "withheld":
            return f"no reliable score (model {self.model_score})"
        return f"{self.model_score}, uncertain" if self.confidence == "uncertain" else str(self.model_score)

    @property
    def familiarity_text(self) -> str:
        return {True: "UNLIKE the training clips", False: "like the training clips", None: "not checked"}[
            self.unfamiliar
        ]


@dataclass(frozen=True)
class ZoneCell:
    """One zone of the chest diagram. ``state``: "scored" (``score`` counted, ``confidence``
    "confident" or "uncertain"), "withheld" (scanned, no reliable score), "not scored"
    (scanned: its clip could not be opened or scored, or its scoring was stopped) or
    "not scanned"."""

    zone: Zone
    state: str
    score: int | None = None
    confidence: str = ""
    clinician: int | None = None
    clips: int = 0  # clips placed on this zone (more than one: flagged)

    @property
    def differs(self) -> bool:
        """The clinician's score is recorded and is not the model's."""
        return self.clinician is not None and self.state == "scored" and self.clinician != self.score


@dataclass(frozen=True)
class ExamReport:
    fields: ExamFields
    protocol: int | None
    scheme: tuple[Zone, ...]
    scheme_name: str
    headline: str  # "LUS score 8 / 18, 6 of 6 zones"
    total: int
    maximum: int
    clinician_line: str
    notes: list[str]
    rows: list[ZoneRow]
    cells: list[ZoneCell]
    models: list[tuple[str, str]]  # (name and version, weights sha256), first use first
    devices: list[str]
    lusviewer_version: str
    unplaced: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def headline(exam: Exam) -> str:
    """The report's total: ``LUS score 8 / 18, 6 of 6 zones`` (+ ``, INCOMPLETE``)."""
    counted = len(exam) - exam.n_withheld
    if exam.zones is not None:  # by zone: a zone given to two clips is one of the protocol's zones
        counted = exam.distinct_zones(withheld=False)
    of = exam.zones if exam.zones is not None else len(exam)
    text = f"LUS score {exam.total} / {exam.maximum}, {counted} of {of} zones"
    return text + (", INCOMPLETE" if exam.incomplete else "")


def clinician_line(exam: Exam) -> str:
    if not exam.n_clinician:
        return "Clinician's total: none recorded"
    if exam.clinician_total is None:
        return f"Clinician's total: none ({exam.n_clinician} of {count(len(exam), 'zone')} scored)"
    return (
        f"Clinician's total: {exam.clinician_total} / {exam.maximum} "
        f"(agrees with the model on {exam.n_agree} of {exam.n_clinician} zones)"
    )


def _notes(exam: Exam, unplaced: int) -> list[str]:
    notes = []
    # a zone whose clip could not be scored was scanned: the notes name it below, not as "not scanned"
    missing = max(0, exam.missing_zones - len(exam.not_scored))
    if missing:
        notes.append(f"{missing} zone{'s' if missing != 1 else ''} of the protocol not scanned")
    if exam.n_withheld:
        notes.append(
            f"{exam.n_withheld} zone{'s' if exam.n_withheld != 1 else ''} with no reliable score "
            "(clip unlike the training clips): not in the total"
        )
    if exam.n_uncertain:
        notes.append(f"{exam.n_uncertain} uncertain score{'s' if exam.n_uncertain != 1 else ''} (weak calls): counted")
    if exam.repeated_zones:
        notes.append(f"zone {', '.join(exam.repeated_zones)} given to more than one clip: each clip counted")
    if unplaced:
        notes.append(f"{unplaced} clip{'s' if unplaced != 1 else ''} not placed on the chest")
    if exam.not_scored:
        k = len(exam.not_scored)
        notes.append(
            f"{k} clip{'s' if k != 1 else ''} could not be scored: " + ", ".join(Path(p).name for p in exam.not_scored)
        )
    if exam.patients_note:
        notes.append(exam.patients_note)
    return notes


def not_scored_zones(exam: Exam, zone_rule: Callable[[str], str | None] | None = None) -> dict[str, int]:
    """Zone code -> how many of the exam's clips that could not be scored (:attr:`Exam.not_scored`)
    were meant for it: by ``zone_rule`` (``--zone-from``), else by the clip's file name."""
    where: dict[str, int] = {}
    for clip in exam.not_scored:
        code = (zone_rule(clip) if zone_rule is not None else None) or zone_from_name(clip, exam.zones)
        if code is not None:
            where[code] = where.get(code, 0) + 1
    return where


def diagram_cells(exam: Exam, zone_rule: Callable[[str], str | None] | None = None) -> list[ZoneCell]:
    """One cell per zone of the exam's scheme: the worst counted score of the clips placed
    there (withheld clips count only where no other clip is), the clinician's (highest) score.
    A zone with no scored clip whose clip could not be scored (:func:`not_scored_zones`) was
    scanned: "not scored", never "not scanned"."""
    failed = not_scored_zones(exam, zone_rule)
    cells = []
    for z in exam.scheme:
        mine = [e for e in exam.entries if exam.body_zone(e.clip) == z.code]
        counted = [e for e in mine if not e.withheld]
        clin = [s for e in mine if (s := exam.clinician_score(e.clip)) is not None]
        best_clin = max(clin) if clin else None
        if counted:
            worst = max(counted, key=lambda e: (e.clip_score, e.confidence == "confident"))
            cells.append(ZoneCell(z, "scored", worst.clip_score, worst.confidence, best_clin, len(mine)))
        elif mine:
            cells.append(ZoneCell(z, "withheld", None, "withheld", best_clin, len(mine)))
        elif z.code in failed:
            cells.append(ZoneCell(z, "not scored", clips=failed[z.code]))
        else:
            cells.append(ZoneCell(z, "not scanned"))
    return cells


def build_exam_report(session: ExamSession, fields: ExamFields | None = None) -> ExamReport:
    """The report of the session's exam as it stands."""
    from lusviewer import __version__

    exam = session.exam
    if not len(exam):
        raise ValueError("the exam has no scored clip")
    scheme = exam.scheme
    order = {z.code: k for k, z in enumerate(scheme)}
    repeated = set(exam.repeated_zones)
    rows = []
    for e in exam.entries:
        code = exam.body_zone(e.clip)
        zone = zone_named(code, scheme) if code else None
        rows.append(
            ZoneRow(
                clip=e.clip,
                label=e.zone,
                zone=zone,
                model_score=e.clip_score,
                confidence=e.confidence,
                clinician=exam.clinician_score(e.clip),
                frames=e.frames,
                worst_frame=e.worst_frame,
                unfamiliar=e.unfamiliar,
                repeated=(code or e.zone) in repeated,
                detail=session.details.get(e.clip),
            )
        )
    rows.sort(key=lambda r: order.get(r.zone.code, len(order)) if r.zone else len(order) + 1)  # stable
    cells = diagram_cells(exam, session.zone_rule)
    entries = exam.entries
    names = {e.weights_sha256: e.model for e in entries}
    devices = list(dict.fromkeys(d.device for d in session.details.values() if d.device))
    unplaced = sum(r.zone is None for r in rows)
    return ExamReport(
        fields=fields or ExamFields(),
        protocol=exam.zones,
        scheme=scheme,
        scheme_name=exam.scheme_name,
        headline=headline(exam),
        total=exam.total,
        maximum=exam.maximum,
        clinician_line=clinician_line(exam),
        notes=_notes(exam, unplaced),
        rows=rows,
        cells=cells,
        models=[(names[sha], sha) for sha in exam.models],
        devices=devices,
        lusviewer_version=__version__,
        unplaced=unplaced,
    )


def most_severe_frame(
    scores: np.ndarray, weak: np.ndarray | None = None, prefer: int | None = None, skip: Collection[int] = ()
) -> int:
    """The clip's worst frame as a clinician means it, its most severe finding: of the frames
    of the highest frame score (confident calls first, where any is), ``prefer`` (the frame
    behind the clip score) where it is one of them, else the middle of their longest run.
    Not always the CSV's ``worst_frame``, the frame behind the clip score (of the frames that
    make the clip score): a clip scored 0 by its rule may hold frames scored 1 (seen:
    patient_11_R2, clip score 0, 'worst frame' 47 a frame scored 0 while 27 frames score 1).
    Frames in ``skip`` (frames with no picture: :func:`pictured_frame`) are never chosen
    while another frame is left."""
    s = np.asarray(scores, dtype=np.int64)
    if s.size == 0:
        raise ValueError("a clip needs at least one scored frame")
    left = np.ones(s.size, dtype=bool)
    left[[i for i in skip if 0 <= i < s.size]] = False
    if not left.any():
        left[:] = True
    top = left & (s == s[left].max())
    if weak is not None:
        sure = top & ~np.asarray(weak, dtype=bool)[: s.size]
        if sure.any():
            top = sure
    if prefer is not None and 0 <= prefer < s.size and top[prefer]:
        return int(prefer)
    edges = np.diff(np.r_[0, top.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))  # the first of the longest runs
    return int((starts[k] + ends[k] - 1) // 2)


#: A frame whose pixels span fewer grey levels than this shows nothing (a blank frame).
BLANK_RANGE = 8
#: :func:`pictured_frame` reads at most this many blank frames (a clip of blank frames: its worst frame as scored).
MAX_BLANK_READS = 16


def blank_frame(frame: np.ndarray) -> bool:
    """No picture in the frame: every pixel (nearly) the same, as the two black frames that
    open 25 of the 287 COVID-BLUeS clips (patient_6_R1: frames 0 and 1)."""
    f = np.asarray(frame)
    return f.size == 0 or int(f.max()) - int(f.min()) < BLANK_RANGE


def pictured_frame(
    scores: np.ndarray, weak: np.ndarray | None, prefer: int | None, read: Callable[[int], np.ndarray]
) -> int:
    """:func:`most_severe_frame` among the frames that show a picture (``read(i)``: frame
    ``i``; only the frames chosen are read, one more per blank frame met): the worst frame
    a clinician is shown and the report pictures. A clip scored 0 whose frames all score 0
    had its first frame, black, as its worst frame (12 of the 287 COVID-BLUeS clips); a
    clip with no picture (:data:`MAX_BLANK_READS` blank frames met) keeps the last frame tried."""
    skip: set[int] = set()
    while True:
        index = most_severe_frame(scores, weak, prefer, skip)
        if index in skip or len(skip) >= MAX_BLANK_READS or not blank_frame(read(index)):
            return index
        skip.add(index)


def thumbnail_of(frame: np.ndarray, width: int = 200) -> np.ndarray:
    """A small RGB copy of a frame for the report (nearest of every k-th pixel: no OpenCV needed here)."""
    f = np.asarray(frame)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    step = max(1, f.shape[1] // width)
    return np.ascontiguousarray(f[::step, ::step, :3]).astype(np.uint8, copy=False)
