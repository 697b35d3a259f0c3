"""Changing an exam's protocol keeps its clips where they were recorded on the chest.

Found by a clinician's walk through the viewer (patient 19's six COVID-BLUeS clips, BLUE
points R1-R3/L1-L3, then "14 zones (Soldati et al.)"): the six clips moved to the back of
the chest diagram, and the PDF report named patient_19_R1 (the right upper BLUE point,
anterior) "right posterior lower": the codes were kept and read in the other scheme."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lusviewer.report import ExamSession
from lusviewer.report.aggregate import summarize_clip
from lusviewer.report.zones import zone_named

BLUE_CLIPS = [f"p/patient_19_{z}.mp4" for z in ("R1", "R2", "R3", "L1", "L2", "L3")]


def _result(clip: str, score: int) -> Any:
    scores = [score] * 10
    return SimpleNamespace(
        clip=clip,
        probs=np.eye(4, dtype=np.float32)[scores],
        scores=np.array(scores),
        summary=summarize_clip(scores, fps=25.0),
        unfamiliar=False,
        model_name="m 1",
        weights_sha256="a" * 64,
    )


def _places(session: ExamSession) -> dict[str, str | None]:
    """Each clip's place on the chest, in words (None: not placed)."""
    exam = session.exam
    out: dict[str, str | None] = {}
    for e in exam.entries:
        code = exam.body_zone(e.clip)
        zone = zone_named(code, exam.scheme) if code is not None else None
        out[Path(e.clip).stem[-2:]] = None if zone is None else f"{zone.side} {zone.region} {zone.level}".strip()
    return out


def test_blue_points_keep_their_place_under_the_14_zones() -> None:
    session = ExamSession()  # "zones as scored": the names' BLUE points
    for clip in BLUE_CLIPS:
        session.scored(_result(clip, 1))
    assert _places(session)["R1"] == "R anterior upper"
    assert session.set_zones(14)
    # the upper and lower BLUE points lie in Soldati's anterior upper and lower zones; a PLAPS
    # point has no zone of its own among the 14 (lateral or posterior?): the clinician chooses
    assert [session.exam.body_zone(c) for c in BLUE_CLIPS] == ["R7", "R6", None, "L7", "L6", None]
    assert _places(session) == {
        "R1": "R anterior upper",
        "R2": "R anterior lower",
        "R3": None,
        "L1": "L anterior upper",
        "L2": "L anterior lower",
        "L3": None,
    }
    assert session.unplaced == [BLUE_CLIPS[2], BLUE_CLIPS[5]]
    # and back: the anterior zones are the BLUE points again
    assert session.set_zones(6)
    assert [session.exam.body_zone(c) for c in BLUE_CLIPS] == ["R1", "R2", None, "L1", "L2", None]
    assert session.unplaced == []


def test_a_protocol_of_the_same_scheme_moves_nothing() -> None:
    session = ExamSession()
    for clip in BLUE_CLIPS:
        session.scored(_result(clip, 2))
    assert session.set_zones(6)  # "as scored" drew the BLUE points already
    assert [session.exam.body_zone(c) for c in BLUE_CLIPS] == ["R1", "R2", "R3", "L1", "L2", "L3"]
    assert session.unplaced == []
    session.set_body_zone(BLUE_CLIPS[0], None)  # the clinician took one off: it stays off
    assert session.set_zones(None)
    assert session.exam.body_zone(BLUE_CLIPS[0]) is None and session.exam.body_zone(BLUE_CLIPS[1]) == "R2"


def test_soldati_posterior_zones_are_no_blue_points() -> None:
    session = ExamSession(zones=14)
    session.scored(_result("p/scan_R1.mp4", 3))  # Soldati's right posterior lower
    session.scored(_result("p/scan_R7.mp4", 0))  # right anterior upper
    assert session.set_zones(6)
    assert session.exam.body_zone("p/scan_R1.mp4") is None  # never the right upper BLUE point
    assert session.exam.body_zone("p/scan_R7.mp4") == "R1"
    assert session.unplaced == ["p/scan_R1.mp4"]
    assert session.exam.total == 3  # the scores stay; only the places change


pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")


def test_viewer_protocol_change_says_which_clips_need_a_zone(window: Any) -> None:
    """The table's zone boxes and the diagram follow the clips; the status bar names the
    clips the new protocol has no zone for."""
    c = window.controller
    for clip in BLUE_CLIPS:
        c.exam_session.scored(_result(clip, 1))
    c.exam_changed.emit()
    panel = window.exam_panel
    panel.protocol.setCurrentIndex(panel.protocol.findData(14))
    assert [panel.zone_box(r).currentData() for r in range(6)] == ["R7", "R6", None, "L7", "L6", None]
    codes = {cell.zone.code for cell in panel.diagram.cells if cell.state == "scored"}
    assert codes == {"R7", "R6", "L7", "L6"}, codes  # on the front, none on the back
    message = window.status_bar.message_label.fullText()
    assert "patient_19_R3.mp4, patient_19_L3.mp4 were recorded" in message, message


def test_a_zone_given_twice_leaves_another_unscanned() -> None:
    """Fourteen clips of a 14-zone exam, one moved onto R7 where another clip was: the diagram
    showed L6 "not scanned" while the total read "14 of 14 zones", complete (tab, PDF, CSV)."""
    from lusviewer.report.exam_report import build_exam_report

    session = ExamSession(zones=14)
    clips = [f"p/scan_{side}{k}.mp4" for side in "RL" for k in range(1, 8)]
    for clip in clips:
        session.scored(_result(clip, 1))
    exam = session.exam
    assert not exam.incomplete and exam.summary().startswith("LUS score 14 of 42 (14 of 14 zones)")
    session.set_body_zone("p/scan_L6.mp4", "R7")
    assert exam.repeated_zones == ["R7"] and exam.missing_zones == 1 and exam.incomplete
    assert exam.summary().startswith("LUS score 14 of 42, INCOMPLETE: 13 of 14 zones scored"), exam.summary()
    report = build_exam_report(session)
    assert report.headline == "LUS score 14 / 42, 13 of 14 zones, INCOMPLETE"
    assert "1 zone of the protocol not scanned" in report.notes
    assert {c.zone.code: c.state for c in report.cells}["L6"] == "not scanned"


def test_exam_csv_total_of_a_zone_given_twice_is_incomplete(tmp_path: Path) -> None:
    import csv

    from lusviewer.report.exam import write_exam_csv

    session = ExamSession(zones=6)
    for clip in BLUE_CLIPS:
        session.scored(_result(clip, 2))
    session.set_body_zone(BLUE_CLIPS[5], "L2")  # L3's clip placed on L2 too
    rows = list(csv.DictReader(write_exam_csv(tmp_path / "e.csv", session.exam).open(newline="")))
    total = rows[-1]
    # the sum of the six clips, but one of the six zones has none ("complete" is the clips' own)
    assert total["clip_score"] == "12" and "INCOMPLETE, 1 zone not scored" in total["zone"], total["zone"]
