"""Zones on the chest: read from each supported file naming, given by --zone-from (regex
or clip,zone CSV), kept with the exam, flagged when given twice, and in the exam CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lusviewer.report import ExamSession
from lusviewer.report.aggregate import summarize_clip
from lusviewer.report.exam import EXAM_COLUMNS
from lusviewer.report.exam_report import diagram_cells
from lusviewer.report.zones import (
    BLUE_ZONES,
    SOLDATI_ZONES,
    ZoneRuleError,
    normalise_zone,
    scheme_for,
    zone_from_name,
    zone_rule,
)


def _result(clip: str, scores: list[int], unfamiliar: bool | None = False) -> Any:
    return SimpleNamespace(
        clip=clip,
        probs=np.eye(4, dtype=np.float32)[scores],
        scores=np.array(scores),
        summary=summarize_clip(scores, fps=25.0),
        unfamiliar=unfamiliar,
        model_name="m 1",
        weights_sha256="a" * 64,
    )


@pytest.mark.parametrize(
    ("name", "protocol", "zone"),
    [
        # COVID-BLUeS: patient_<ID>_<POINT>[_2].mp4
        ("videos/patient_11_L1.mp4", None, "L1"),
        ("videos/patient_11_R3.mp4", 6, "R3"),
        ("videos/patient_1_R1_2.mp4", 6, "R1"),  # a second clip of the point
        ("patient_4_l2.avi", None, "L2"),
        # Soldati's 14 zones by code
        ("exam/scan-R5.mp4", 14, "R5"),
        ("exam/L7.dcm", 14, "L7"),
        ("exam/scan-R5.mp4", 6, None),  # no BLUE point
        # Soldati's zones in words
        ("Right_anterior_upper.mp4", 14, "R7"),
        ("left-posterior-basal.mp4", 14, "L1"),
        ("pt3 LEFT lat inf.mov", None, "L4"),
        ("right posterior middle.mp4", 14, "R2"),
        ("right_anterior_upper.mp4", 6, None),  # not a BLUE point
        # BLUE points in words
        ("left-upper-BLUE.mp4", 6, "L1"),
        ("right_lower_blue.mp4", None, "R2"),
        ("Right PLAPS.mp4", 6, "R3"),
        ("right PLAPS.mp4", 14, None),
        # nothing, or more than one zone
        ("clip_0001.mp4", None, None),
        ("R1_L2.mp4", None, None),
        ("right_left_anterior_upper.mp4", 14, None),
        ("patient_12.mp4", None, None),
        ("R12.mp4", None, None),
    ],
)
def test_zone_from_each_naming(name: str, protocol: int | None, zone: str | None) -> None:
    assert zone_from_name(name, protocol) == zone


def test_schemes_and_their_zones() -> None:
    assert [z.code for z in BLUE_ZONES] == ["R1", "R2", "R3", "L1", "L2", "L3"]
    assert len(SOLDATI_ZONES) == 14 and len({z.code for z in SOLDATI_ZONES}) == 14
    assert {(z.region, z.level) for z in SOLDATI_ZONES if z.side == "R"} == {
        ("posterior", "lower"), ("posterior", "middle"), ("posterior", "upper"),
        ("lateral", "lower"), ("lateral", "upper"), ("anterior", "lower"), ("anterior", "upper"),
    }  # fmt: skip
    assert scheme_for(None, ["R1", "L3"]) is BLUE_ZONES
    assert scheme_for(None, ["R1", "L6"]) is SOLDATI_ZONES  # only Soldati has a sixth zone
    assert scheme_for(14, []) is SOLDATI_ZONES and scheme_for(6, ["R6"]) is BLUE_ZONES
    assert normalise_zone(" r 5 ", 14) == "R5" and normalise_zone("R5", 6) is None
    assert normalise_zone("left lateral upper", None) == "L5" and normalise_zone("chest", None) is None


def test_zone_rule_regex_and_csv(tmp_path: Path) -> None:
    rule = zone_rule(r"_(?P<zone>[lr]\d)\.mp4$")
    assert rule("a/scan_l2.mp4") == "L2" and rule("a/scan.mp4") is None
    assert zone_rule(r"zone-(\w+)")("x/zone-R4.mp4") == "R4"  # first group
    table = tmp_path / "zones.csv"
    table.write_text("clip,zone\nfirst.mp4,R1\nsub/second.mp4,left lateral upper\nthird,l3\n")
    rule = zone_rule(str(table), None)
    assert rule("/data/first.mp4") == "R1"  # by file name
    assert rule("sub/second.mp4") == "L5"  # as given
    assert rule("elsewhere/third.avi") == "L3"  # by name without extension
    assert rule("other.mp4") is None
    bad = tmp_path / "bad.csv"
    bad.write_text("clip,zone\nfirst.mp4,chest\n")
    with pytest.raises(ZoneRuleError, match=r"bad\.csv: line 2: 'chest' is no zone"):
        zone_rule(str(bad))
    with pytest.raises(ZoneRuleError, match="neither a CSV file nor a regular expression"):
        zone_rule("(unclosed")


def test_session_places_clips_keeps_choices_and_flags_twice(tmp_path: Path) -> None:
    session = ExamSession(6)
    session.scored(_result("v/patient_1_R1.mp4", [1] * 10))
    session.scored(_result("v/patient_1_R1_2.mp4", [2] * 10))
    session.scored(_result("v/clip_7.mp4", [0] * 10))
    exam = session.exam
    assert [exam.body_zone(e.clip) for e in exam.entries] == ["R1", "R1", None]
    assert exam.repeated_zones == ["R1"] and "zone R1 more than once" in exam.summary()
    # the clinician places the unnamed clip and moves the second R1 clip: chosen zones are kept when scored again
    assert session.set_body_zone("v/clip_7.mp4", "L2") and session.set_body_zone("v/patient_1_R1_2.mp4", "L1")
    assert not session.set_body_zone("v/clip_7.mp4", "L2")  # the same again: no change
    session.scored(_result("v/patient_1_R1_2.mp4", [3] * 10))
    assert exam.body_zone("v/patient_1_R1_2.mp4") == "L1" and exam.repeated_zones == []
    with pytest.raises(ValueError, match="none of"):
        exam.set_body_zone("v/clip_7.mp4", "X9")
    cells = {c.zone.code: c for c in diagram_cells(exam)}
    assert (cells["R1"].state, cells["R1"].score) == ("scored", 1)
    assert (cells["L1"].score, cells["L2"].score) == (3, 0)
    assert cells["R2"].state == cells["R3"].state == cells["L3"].state == "not scanned"
    out = session.export(tmp_path / "exam.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(EXAM_COLUMNS) and EXAM_COLUMNS[10:] == ("body_zone", "complete")
    assert EXAM_COLUMNS[:10] == (
        "clip", "zone", "clip_score", "frames", "worst_frame", "unfamiliar", "model", "weights_sha256",
        "clinician_score", "confidence",
    )  # fmt: skip  # the contract: the old columns, in their order
    assert [r["body_zone"] for r in rows] == ["R1", "L1", "L2", "BLUE points"]
    session.remove("v/clip_7.mp4")
    assert exam.body_zone("v/clip_7.mp4") is None


def test_zone_rule_goes_before_the_file_name_and_cells_show_withheld() -> None:
    session = ExamSession(14, zone_rule=lambda clip: "R6" if "first" in clip else None)
    session.scored(_result("v/first_L2.mp4", [2] * 10))
    session.scored(_result("v/second_L2.mp4", [3] * 10, unfamiliar=True))  # withheld: no reliable score
    exam = session.exam
    assert exam.body_zone("v/first_L2.mp4") == "R6" and exam.body_zone("v/second_L2.mp4") == "L2"
    exam.set_clinician_score("v/first_L2.mp4", 3)
    cells = {c.zone.code: c for c in diagram_cells(exam)}
    assert len(cells) == 14 and exam.scheme_name == "Soldati 14 zones"
    assert (cells["R6"].state, cells["R6"].score, cells["R6"].clinician, cells["R6"].differs) == ("scored", 2, 3, True)
    assert cells["L2"].state == "withheld" and cells["L2"].score is None
