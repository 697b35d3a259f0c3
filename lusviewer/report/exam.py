"""One patient's examination: the clip (zone) scores and their LUS total score.

A clinician scores each lung zone's clip on the 0-3 scale; the LUS score of the
examination is the sum over the zones (0-42 over the 14 zones of Soldati et al.'s
protocol, 0-18 over the 6 BLUE points). :class:`Exam` keeps one entry per clip (a clip
scored again replaces its entry) and :func:`write_exam_csv` writes it as a CSV with a
last row holding the total. Beside the model's score, the clinician may record their
own score per zone (kept when the clip is scored again), so the CSV holds both and how
often they agree. A clip whose score is withheld (unlike the training clips:
:func:`~lusviewer.report.aggregate.clip_confidence`) is no finding: its zone is left out
of the total, which is then INCOMPLETE, as with a zone not scored; an uncertain zone is
counted and marked. Clips of different patients in one exam are named (:meth:`Exam.other_patient`).
No Qt here: the viewer and ``lusviewer score --exam`` share
it, and change it through :class:`~lusviewer.report.session.ExamSession`.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lusviewer.report.aggregate import CONFIDENCES, clip_confidence
from lusviewer.report.csv_report import ClipScores
from lusviewer.report.zones import Zone, scheme_for

EXAM_COLUMNS = (
    "clip", "zone", "clip_score", "frames", "worst_frame", "unfamiliar", "model", "weights_sha256",
    # appended: the clinician's own score of the zone (0-3), empty where none was recorded
    "clinician_score",
    # appended: "confident", "uncertain" (counted in the total) or "withheld" (no reliable
    # score: not in the total); on the TOTAL row, how many zones are uncertain and withheld
    "confidence",
    # appended: the zone on the chest (report.zones: "R1".."R3"/"L1".."L3" BLUE points, "R1".."R7"/
    # "L1".."L7" Soldati's 14 zones), read from the file name or chosen; empty where none;
    # on the TOTAL row the scheme ("BLUE points", "Soldati 14 zones") and any zone given twice
    "body_zone",
    # appended: "no" for a clip that decoded fewer frames than its header announces (cut short or
    # damaged: scored on the frames present, as the report's `complete`), else "yes"; on the TOTAL
    # row "no" when any zone's clip is incomplete
    "complete",
)  # fmt: skip
#: ``clip`` of the CSV's last row, the exam's total.
TOTAL_ROW = "TOTAL"
#: Zones of the most detailed common protocol (Soldati et al.: 14); more suggests several patients.
MAX_ZONES = 14
#: Exam protocols by their number of zones: the LUS score's maximum is 3 per zone.
PROTOCOLS = {6: "6 zones (BLUE points)", 14: "14 zones (Soldati et al.)"}


def zone_of(path: str | os.PathLike[str]) -> str:
    """The zone's label: the clip's file name without its extension (``patient_7_L2``)."""
    return Path(path).stem


#: A patient id in a clip's name: ``patient_<N>``, the rule ``training.data.group_of`` uses
#: by default (that module needs torch; this one must not).
PATIENT_RE = re.compile(r"patient_(\d+)")


def patient_of(path: str | os.PathLike[str]) -> str | None:
    """The patient id in a clip's file name, else in its path (``patient_17``: ``"17"``); None when none."""
    m = PATIENT_RE.search(Path(path).name) or PATIENT_RE.search(str(path))
    return m.group(1) if m else None


@dataclass(frozen=True)
class ExamEntry:
    clip: str
    zone: str
    clip_score: int
    frames: int
    worst_frame: int
    unfamiliar: bool | None
    model: str
    weights_sha256: str
    #: :func:`~lusviewer.report.aggregate.clip_confidence`; when not given: "withheld" for
    #: an unfamiliar clip, else "confident"
    confidence: str = ""
    #: False: the clip decoded fewer frames than its header announces (scored on the frames present)
    complete: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.clip_score <= 3:
            raise ValueError(f"{self.clip}: clip score {self.clip_score} is not on the 0-3 scale")
        if not self.confidence:
            object.__setattr__(self, "confidence", "withheld" if self.unfamiliar else "confident")
        if self.confidence not in CONFIDENCES:
            raise ValueError(f"{self.clip}: confidence {self.confidence!r}; expected one of {CONFIDENCES}")

    @property
    def withheld(self) -> bool:
        """No reliable score: not counted in the exam's total."""
        return self.confidence == "withheld"

    @classmethod
    def from_result(cls, result: ClipScores, zone: str | None = None) -> ExamEntry:
        return cls(
            clip=result.clip,
            zone=zone or zone_of(result.clip),
            clip_score=int(result.summary.clip_score),
            frames=len(result.scores),
            worst_frame=int(result.summary.worst_frame),
            unfamiliar=result.unfamiliar,
            model=result.model_name,
            weights_sha256=result.weights_sha256,
            confidence=clip_confidence(result),
            complete=bool(getattr(getattr(result, "info", None), "complete", True)),  # stand-ins may have no info
        )


class Exam:
    """The scored clips of one examination, in the order they were first scored."""

    def __init__(self, zones: int | None = None) -> None:
        #: The protocol's number of zones (:data:`PROTOCOLS`), or None: the zones scored.
        self.zones = zones
        self._entries: dict[str, ExamEntry] = {}
        self._clinician: dict[str, int] = {}  # clip -> the clinician's own score
        self._body: dict[str, str] = {}  # clip -> its zone on the chest (report.zones code)
        #: Inputs meant for this exam that could not be scored: the total lacks their zones.
        self.not_scored: list[str] = []

    def add(self, entry: ExamEntry) -> None:
        """Add a clip; a clip already in the exam (same path) is replaced in place."""
        self._entries[entry.clip] = entry

    def remove(self, clip: str) -> None:
        self._entries.pop(clip, None)
        self._clinician.pop(clip, None)
        self._body.pop(clip, None)

    def clear(self) -> None:
        self._entries.clear()
        self._clinician.clear()
        self._body.clear()
        self.not_scored.clear()

    def set_body_zone(self, clip: str, code: str | None) -> None:
        """Place a clip of the exam on the chest (a :mod:`~lusviewer.report.zones` code), or
        with ``None`` take it off; kept when the clip is scored again."""
        from lusviewer.report.zones import ALL_CODES

        if clip not in self._entries:
            raise KeyError(f"{clip}: not in the exam")
        if code is None:
            self._body.pop(clip, None)
        elif code not in ALL_CODES:
            raise ValueError(f"{clip}: zone {code!r} is none of {', '.join(ALL_CODES)}")
        else:
            self._body[clip] = code

    def body_zone(self, clip: str) -> str | None:
        """The clip's zone on the chest (``"L2"``), None where it has none yet."""
        return self._body.get(clip)

    @property
    def scheme(self) -> tuple[Zone, ...]:
        """The zones the exam's clips are placed on (:func:`~lusviewer.report.zones.scheme_for`)."""
        return scheme_for(self._zones, self._body.values())

    @property
    def scheme_name(self) -> str:
        return "Soldati 14 zones" if len(self.scheme) == 14 else "BLUE points"

    @property
    def repeated_zones(self) -> list[str]:
        """Zones given to more than one clip (by their zone on the chest, else their label), sorted."""
        where = Counter(self._body.get(e.clip) or e.zone for e in self._entries.values())
        return sorted(z for z, c in where.items() if c > 1)

    def set_clinician_score(self, clip: str, score: int | None) -> None:
        """Record (or, with ``None``, forget) the clinician's own score of a clip in the exam."""
        if clip not in self._entries:
            raise KeyError(f"{clip}: not in the exam")
        if score is None:
            self._clinician.pop(clip, None)
        elif not 0 <= int(score) <= 3:
            raise ValueError(f"{clip}: clinician score {score} is not on the 0-3 scale")
        else:
            self._clinician[clip] = int(score)

    def clinician_score(self, clip: str) -> int | None:
        return self._clinician.get(clip)

    @property
    def clinician_total(self) -> int | None:
        """The clinician's LUS score: the sum of their zone scores, once every zone has one."""
        if not self._entries or len(self._clinician) < len(self._entries):
            return None
        return sum(self._clinician.values())

    @property
    def n_clinician(self) -> int:
        return len(self._clinician)

    @property
    def n_agree(self) -> int:
        """Zones where the model's clip score equals the clinician's score; a withheld zone
        (no reliable score) never agrees: the viewer shows the clinician no score there."""
        return sum(not (e := self._entries[c]).withheld and e.clip_score == s for c, s in self._clinician.items())

    @property
    def entries(self) -> list[ExamEntry]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, clip: object) -> bool:
        return clip in self._entries

    @property
    def total(self) -> int:
        """The LUS score: the sum of the clips' scores, withheld ones left out."""
        return sum(e.clip_score for e in self._entries.values() if not e.withheld)

    @property
    def n_withheld(self) -> int:
        """Zones with no reliable score (unlike the training clips): not in the total."""
        return sum(e.withheld for e in self._entries.values())

    @property
    def n_uncertain(self) -> int:
        """Zones whose score is uncertain: in the total, marked."""
        return sum(e.confidence == "uncertain" for e in self._entries.values())

    @property
    def incomplete(self) -> bool:
        """The total lacks zones: of the protocol not scored, or with no reliable score."""
        return bool(self.missing_zones or self.n_withheld)

    def other_patient(self, clip: str) -> str | None:
        """Why ``clip`` seems to be another patient's than the exam's other clips, or None:
        a different patient id in the names (``patient_17`` vs ``patient_20``) or, where a
        name carries none, a different folder."""
        others = [e.clip for e in self._entries.values() if e.clip != clip]
        if not others:
            return None
        name = Path(clip).name
        mine = patient_of(clip)
        theirs = sorted({p for c in others if (p := patient_of(c)) is not None}, key=lambda p: (len(p), p))
        if mine is not None and theirs:
            if mine in theirs:
                return None
            return f"{name} is of patient {mine}; the exam holds patient {', '.join(theirs)}"
        folders = list(dict.fromkeys(str(Path(c).parent) for c in others))
        folder = str(Path(clip).parent)
        if folder not in folders:
            return f"{name} is in {folder}; the exam's clips are in {', '.join(folders)}"
        return None

    @property
    def patients_note(self) -> str:
        """ "clips of 2 patients (17, 20)" or "clips from 2 folders" when the exam mixes them; else ""."""
        clips = [e.clip for e in self._entries.values()]
        ids = sorted({p for c in clips if (p := patient_of(c)) is not None}, key=lambda p: (len(p), p))
        if len(ids) > 1:
            return f"clips of {len(ids)} patients ({', '.join(ids)})"
        if not ids or any(patient_of(c) is None for c in clips):
            folders = {str(Path(c).parent) for c in clips}
            if len(folders) > 1:
                return f"clips from {len(folders)} folders: one patient?"
        return ""

    @property
    def zones(self) -> int | None:
        return self._zones

    @zones.setter
    def zones(self, value: int | None) -> None:
        if value is not None and value not in PROTOCOLS:
            raise ValueError(f"exam protocol of {value} zones; expected one of {sorted(PROTOCOLS)}")
        self._zones = value

    @property
    def maximum(self) -> int:
        """3 per zone: of the protocol's zones, or of the zones scored when none is set."""
        return 3 * (self._zones if self._zones is not None else len(self._entries))

    @property
    def n_zones_scanned(self) -> int:
        """The distinct zones the clips were recorded at (by their zone on the chest, else their
        label, as :attr:`repeated_zones`): a zone given to two clips is one zone."""
        return self.distinct_zones()

    def distinct_zones(self, *, withheld: bool = True) -> int:
        """The distinct zones of the clips (as :attr:`n_zones_scanned`); without ``withheld``,
        only of clips whose score counts in the total."""
        return len({self._body.get(e.clip) or e.zone for e in self._entries.values() if withheld or not e.withheld})

    @property
    def missing_zones(self) -> int:
        """Zones of the protocol not yet scored (0 without a protocol). Counted by zone, not by
        clip: 14 clips with one zone given twice left L6 unscanned on the diagram while the
        total read "14 of 14 zones", complete."""
        return max(0, self._zones - self.n_zones_scanned) if self._zones is not None else 0

    @property
    def n_incomplete(self) -> int:
        """Zones whose clip is incomplete (cut short or damaged: scored on the frames present)."""
        return sum(not e.complete for e in self._entries.values())

    @property
    def n_unfamiliar(self) -> int:
        return sum(bool(e.unfamiliar) for e in self._entries.values())

    @property
    def models(self) -> list[str]:
        """The distinct models (by weights hash) that scored the entries, first use first."""
        return list(dict.fromkeys(e.weights_sha256 for e in self._entries.values()))

    def summary(self) -> str:
        """One line for people: total, zones, and what makes the total less reliable."""
        if not self._entries:
            return "No clip in the exam yet"
        n = len(self._entries)
        w = self.n_withheld
        withheld = f"{w} zone{'s' if w != 1 else ''} with no reliable score (unlike the training clips; not in total)"
        if self.missing_zones:
            text = (
                f"LUS score {self.total} of {self.maximum}, INCOMPLETE: {self.n_zones_scanned} of {self._zones} "
                "zones scored"
            )
            text += f", {withheld}" if w else ""
        elif w:
            text = f"LUS score {self.total} of {self.maximum}, INCOMPLETE: {withheld}"
        elif self._zones is None:
            text = f"LUS score {self.total} of {self.maximum} ({n} zone{'s' if n != 1 else ''})"
        else:
            text = f"LUS score {self.total} of {self.maximum} ({self.n_zones_scanned} of {self._zones} zones)"
        if self.n_clinician:
            text += "; clinician " + (
                f"{self.clinician_total}"
                if self.clinician_total is not None
                else f"{self.n_clinician} of {n} zones scored"
            )
            text += f", agrees on {self.n_agree} of {self.n_clinician}"
        notes = []
        if self.not_scored:
            k = len(self.not_scored)
            notes.append(f"{k} clip{'s' if k != 1 else ''} could not be scored (not in the total)")
        repeated = self.repeated_zones
        if repeated:
            notes.append(f"zone {', '.join(repeated)} more than once")
        if n > (self._zones or MAX_ZONES):
            notes.append(f"more than the {self._zones or MAX_ZONES} zones of one exam: several patients?")
        if self.n_uncertain:
            notes.append(f"{self.n_uncertain} uncertain (counted)")
        if self.n_incomplete:
            k = self.n_incomplete
            notes.append(f"{k} clip{'s' if k != 1 else ''} incomplete (scored on the frames present)")
        if self.patients_note:
            notes.append(self.patients_note)
        if len(self.models) > 1:
            notes.append(f"scored by {len(self.models)} different models")
        return text + (f"; {', '.join(notes)}" if notes else "")


def _blank_if_none(value: int | None) -> str:
    return "" if value is None else str(value)


def _clinician_note(exam: Exam) -> str:
    """The TOTAL row's account of the clinician's scores (none recorded: nothing)."""
    if not exam.n_clinician:
        return ""
    if exam.clinician_total is None:
        return f"; clinician scored {exam.n_clinician} of {len(exam)} zones (no clinician total)"
    return f"; clinician total {exam.clinician_total}, agreeing with the model on {exam.n_agree} of {len(exam)} zones"


def write_exam_csv(path: str | os.PathLike[str], exam: Exam) -> Path:
    """One row per clip, then the total (``clip`` = ``TOTAL``, ``clip_score`` = the sum,
    ``frames`` = the number of zones). Written to a temporary file and renamed into place."""
    if not len(exam):
        raise ValueError("the exam has no scored clip")
    from lusviewer.report.csv_report import ENCODING_ERRORS, remove_stale_temporaries, tmp_name
    from lusviewer.report.csvsafe import safe_writer

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)  # left by a killed run
    tmp = tmp_name(path, os.getpid())
    try:
        with open(tmp, "w", newline="", encoding="utf-8", errors=ENCODING_ERRORS) as fh:
            # every cell OWASP-neutralised (a zone named "=cmd|..."); the dialect of the other reports
            w = safe_writer(fh, dialect=csv.excel)
            w.writerow(EXAM_COLUMNS)
            for e in exam.entries:
                w.writerow(
                    [
                        e.clip,
                        e.zone,
                        e.clip_score,
                        e.frames,
                        e.worst_frame,
                        {True: "yes", False: "no", None: ""}[e.unfamiliar],
                        e.model,
                        e.weights_sha256,
                        _blank_if_none(exam.clinician_score(e.clip)),
                        e.confidence,
                        exam.body_zone(e.clip) or "",
                        "yes" if e.complete else "no",
                    ]
                )
            models = exam.models
            entries = exam.entries
            w.writerow(
                [
                    TOTAL_ROW,
                    f"LUS score, sum of {len(exam)} zones (maximum {exam.maximum}"
                    + (f", protocol of {exam.zones} zones" if exam.zones is not None else "")
                    + ")"
                    + (
                        f"; INCOMPLETE, {exam.missing_zones} zone{'s' if exam.missing_zones != 1 else ''} not scored"
                        if exam.missing_zones
                        else ""
                    )
                    + (
                        f"; INCOMPLETE, {exam.n_withheld} zone{'s' if exam.n_withheld != 1 else ''} "
                        "with no reliable score (withheld, not in the total)"
                        if exam.n_withheld
                        else ""
                    )
                    + (f"; {len(exam.not_scored)} more could not be scored" if exam.not_scored else "")
                    + _clinician_note(exam),
                    exam.total,
                    len(exam),
                    "",
                    "yes" if exam.n_unfamiliar else "no" if all(e.unfamiliar is not None for e in entries) else "",
                    entries[0].model if len(models) == 1 else f"{len(models)} models",
                    models[0] if len(models) == 1 else "",
                    _blank_if_none(exam.clinician_total),
                    f"{exam.n_uncertain} uncertain, {exam.n_withheld} withheld",
                    exam.scheme_name
                    + (f"; given twice: {', '.join(exam.repeated_zones)}" if exam.repeated_zones else ""),
                    "no" if exam.n_incomplete else "yes",
                ]
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
