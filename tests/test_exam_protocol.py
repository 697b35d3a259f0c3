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
