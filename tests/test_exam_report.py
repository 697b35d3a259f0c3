"""The exam report: the chest diagram's colours per score, the zone drop-down of the Exam
tab, the PDF written atomically with the exam CSV's numbers (read back with pdftotext
where installed), the CLI's --exam-report and --zone-from, and the timeline in seconds."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import ROOT
from PySide6.QtCore import QRectF, QSettings
from PySide6.QtGui import QColor, QImage, QPainter

from lusviewer.report import ExamSession
from lusviewer.report.aggregate import summarize_clip
from lusviewer.report.exam_report import ExamFields, ZoneCell, build_exam_report, diagram_cells
from lusviewer.report.zones import BLUE_ZONES, SOLDATI_ZONES
from lusviewer.ui.chest_diagram import NOT_SCANNED_FILL, WITHHELD_FILL, paint_chest, zone_boxes, zone_labels
from lusviewer.ui.palette import SCORE_COLOURS

TIMEOUT = 60_000
PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(PDFTOTEXT is None, reason="pdftotext (poppler-utils) is not installed")


def _result(clip: str, scores: list[int], unfamiliar: bool | None = False, weak: bool = False) -> Any:
    probs = np.eye(4, dtype=np.float32)[scores]
    if weak:
        probs = probs * 0.2 + 0.2  # top probability 0.4: low-confidence frames
    return SimpleNamespace(
        clip=clip,
        probs=probs,
        scores=np.array(scores),
        summary=summarize_clip(scores, fps=25.0),
        unfamiliar=unfamiliar,
        model_name="lusviewer-hybrid 1",
        weights_sha256="ab" * 32,
        info=SimpleNamespace(fps=25.0),
        device="cpu",
        precision="fp32",
    )


def _session(zones: int, n: int) -> ExamSession:
    """An exam of ``n`` clips named by their zone; scores 0-3 in turn, one withheld, one weak."""
    session = ExamSession(zones)
    scheme = BLUE_ZONES if zones == 6 else SOLDATI_ZONES
    for k, zone in enumerate(scheme[:n]):
        score = k % 4
        session.scored(
            _result(f"exam/patient_7_{zone.code}.mp4", [score] * 30, unfamiliar=k == 2, weak=k == 1),
            thumbnail=np.full((30, 40, 3), 60 * (k % 4), dtype=np.uint8),
        )
    return session


def _pdf_text(path: Path) -> str:
    assert PDFTOTEXT is not None
    out = subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return out.stdout


def _render(cells: list[ZoneCell], w: int = 600, h: int = 260) -> QImage:
    img = QImage(w, h, QImage.Format.Format_RGB32)
    img.fill(QColor("white"))
    painter = QPainter(img)
    paint_chest(painter, QRectF(0, 0, w, h), cells)
    painter.end()
    return img


def _fill_at(img: QImage, box: QRectF) -> str:
    """The most common colour in a patch of a zone's region away from its text (bottom left,
    inset): its fill, between the lines of a texture."""
    x0, y0 = int(box.left() + box.width() * 0.08), int(box.bottom() - box.height() * 0.2)
    seen = Counter(img.pixelColor(x, y).name() for x in range(x0, x0 + 10) for y in range(y0, y0 + 10))
    return str(seen.most_common(1)[0][0])


def test_withheld_zone_prints_the_clinicians_score(qapp: Any) -> None:
    """A zone the model withheld prints the clinician's score where one is recorded: the
    zone's only score (seen in viewer-exam.png: patient 17's R3, clinician 1, showed only
    an unreadable 'no reliable score')."""
    bare = ZoneCell(BLUE_ZONES[4], "withheld", None, "withheld")
    theirs = ZoneCell(BLUE_ZONES[4], "withheld", None, "withheld", clinician=1)
    assert zone_labels(bare) == ("–", "no reliable score")
    assert zone_labels(theirs) == ("–", "clin. 1")
    assert zone_labels(ZoneCell(BLUE_ZONES[0], "scored", 2, "uncertain", clinician=1)) == ("2?", "clin. 1")
    assert zone_labels(ZoneCell(BLUE_ZONES[0], "scored", 1, "confident", clinician=1)) == ("1", "")
    assert zone_labels(ZoneCell(BLUE_ZONES[0], "not scanned")) == ("", "not scanned")
    assert _render([bare]) != _render([theirs])  # the painted tile says it too


def test_diagram_colours_each_zone_by_its_score(qapp: Any) -> None:
    cells = [ZoneCell(BLUE_ZONES[k], "scored", k, "confident") for k in range(4)]
    cells += [ZoneCell(BLUE_ZONES[4], "withheld", None, "withheld"), ZoneCell(BLUE_ZONES[5], "not scanned")]
    img = _render(cells)
    boxes = zone_boxes(QRectF(0, 0, 600, 260), cells)
    assert set(boxes) == {z.code for z in BLUE_ZONES}
    for k in range(4):
        assert _fill_at(img, boxes[BLUE_ZONES[k].code]) == SCORE_COLOURS[k]
    assert _fill_at(img, boxes["L3"]) == NOT_SCANNED_FILL
    withheld = [
        img.pixelColor(x, int(boxes["L2"].center().y())).name()
        for x in range(int(boxes["L2"].left()) + 4, int(boxes["L2"].right()) - 4)
    ]
    assert WITHHELD_FILL in withheld and "#6a6a6a" in withheld  # grey, hatched
    # a texture for 2 and 3 (grey-scale print), none for 0 and 1
    for k in range(4):
        b = boxes[BLUE_ZONES[k].code]
        x0, y0 = int(b.left() + b.width() * 0.08), int(b.bottom() - b.height() * 0.2)
        colours = {img.pixelColor(x, y).name() for x in range(x0, x0 + 10) for y in range(y0, y0 + 10)}
        assert (len(colours) > 1) == (k >= 2), k
    # the 14 zones: every zone has its own region (front, back and both sides), none overlap
    cells14 = [ZoneCell(z, "scored", k % 4, "confident") for k, z in enumerate(SOLDATI_ZONES)]
    boxes14 = zone_boxes(QRectF(0, 0, 600, 260), cells14)
    assert len(boxes14) == 14
    rects = list(boxes14.values())
    assert not any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1 :])
    img14 = _render(cells14)
    for k, z in enumerate(SOLDATI_ZONES):
        assert _fill_at(img14, boxes14[z.code]) == SCORE_COLOURS[k % 4]


def test_exam_panel_zone_drop_down_and_live_diagram(qtbot: Any) -> None:
    from lusviewer.ui.exam_panel import ExamPanel

    panel = ExamPanel()
    qtbot.addWidget(panel)
    session = ExamSession(6)
    session.scored(_result("v/patient_1_R1.mp4", [1] * 10))
    session.scored(_result("v/clip_b.mp4", [2] * 10))
    exam = session.exam

    def show() -> None:
        panel.set_exam(
            exam.entries,
            exam.summary(),
            zones={e.clip: z for e in exam.entries if (z := exam.body_zone(e.clip))},
            zone_choices=tuple(z.code for z in BLUE_ZONES),
            cells=diagram_cells(exam),
        )

    show()
    assert panel.zone_box(0).currentText() == "R1" and panel.zone_box(1).currentText() == "—"
    assert [panel.zone_box(1).itemText(i) for i in range(panel.zone_box(1).count())] == [
        "—",
        "R1",
        "R2",
        "R3",
        "L1",
        "L2",
        "L3",
    ]
    assert panel.table.horizontalHeader().visualIndex(4) == 1  # the zone column is shown second
    assert {c.zone.code: c.state for c in panel.diagram.cells}["L2"] == "not scanned"
    chosen: list[tuple[str, object]] = []
    panel.body_zone_changed.connect(lambda clip, code: chosen.append((clip, code)))
    box = panel.zone_box(1)
    box.setCurrentIndex(box.findData("L2"))
    assert chosen == [("v/clip_b.mp4", "L2")]
    session.set_body_zone(*chosen[0])  # what the controller does with it
    show()
    assert {c.zone.code: (c.state, c.score) for c in panel.diagram.cells}["L2"] == ("scored", 2)
    # the same zone twice: marked in the row and the note
    box = panel.zone_box(1)
    box.setCurrentIndex(box.findData("R1"))
    session.set_body_zone(*chosen[-1])
    show()
    assert "zone R1 given twice" in panel.table.item(0, 3).text() and "given twice" in panel.table.item(1, 3).text()
    assert "background" in panel.zone_box(1).styleSheet()


@pytest.mark.parametrize(("zones", "n", "pages"), [(6, 6, 1), (14, 14, 2)])
def test_pdf_report_has_the_exam_csv_numbers(qapp: Any, tmp_path: Path, zones: int, n: int, pages: int) -> None:
    from lusviewer.ui.exam_report import write_exam_pdf

    session = _session(zones, n)
    first = session.exam.entries[0].clip
    session.exam.set_clinician_score(first, 3)
    csv_path = session.export(tmp_path / "exam.csv")
    report = build_exam_report(session, ExamFields("ID-42", "2026-12-02", "Dr Who"))
    out = write_exam_pdf(tmp_path / "exam.pdf", report)
    assert out.read_bytes().startswith(b"%PDF") and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = rows[-1]
    assert report.total == int(total["clip_score"])
    assert report.headline.startswith(f"LUS score {total['clip_score']} / {3 * zones}, {n - 1} of {zones} zones")
    by_clip = {r.clip: r for r in report.rows}
    for row in rows[:-1]:
        mine = by_clip[row["clip"]]
        assert (str(mine.model_score), mine.confidence, mine.zone.code if mine.zone else "") == (
            row["clip_score"],
            row["confidence"],
            row["body_zone"],
        )
        assert str(mine.clinician if mine.clinician is not None else "") == row["clinician_score"]
    if PDFTOTEXT is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the PDF's text is not read back")
    text = _pdf_text(out)
    assert text.count("\f") == pages
    flat = " ".join(text.split())
    for expected in (
        report.headline,
        "Research use only, not a medical device",
        "ID-42",
        "2026-12-02",
        "Dr Who",
        "ab" * 32,
        "lusviewer-hybrid 1",
        "Device cpu",
        "no reliable score",
        *(f"patient_7_{z.code}.mp4" for z in (BLUE_ZONES if zones == 6 else SOLDATI_ZONES)[:n]),
    ):
        assert expected in flat, expected
    assert f"Clinician's total: none (1 of {n} zones scored)" in flat


def test_pdf_is_written_atomically(qapp: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lusviewer.ui import exam_report

    report = build_exam_report(_session(6, 3))
    target = tmp_path / "exam.pdf"
    target.write_bytes(b"the earlier report")

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(exam_report, "paint_report", broken)
    with pytest.raises(OSError, match="disk full"):
        exam_report.write_exam_pdf(target, report)
    assert target.read_bytes() == b"the earlier report" and sorted(p.name for p in tmp_path.iterdir()) == ["exam.pdf"]
    monkeypatch.undo()
    exam_report.write_exam_pdf(target, report)
    assert target.read_bytes().startswith(b"%PDF") and sorted(p.name for p in tmp_path.iterdir()) == ["exam.pdf"]
    with pytest.raises(OSError):
        exam_report.write_exam_pdf(target / "inside-a-file.pdf", report)  # its folder is a file


def test_timeline_axis_in_seconds_and_cursor_label(qtbot: Any) -> None:
    from lusviewer.ui.timeline import ScoreTimeline

    t = ScoreTimeline()
    qtbot.addWidget(t)
    t.set_fps(25.0)
    t.reset(250)
    t.set_cursor(50)
    assert t.cursor_label.textItem.toPlainText().strip() == "frame 50 · 2.00 s"
    assert t.score_axis.tickStrings([25.0, 50.0], 1.0, 25.0) == ["25", "50"]  # frames
    t.set_seconds(True)
    assert t.score_axis.tickStrings([25.0, 50.0], 1.0, 25.0) == ["1", "2"]  # seconds
    ticks = t.score_axis.tickValues(0.0, 250.0, 600)
    assert all(float(v / 25.0).is_integer() for v in ticks[0][1])  # at round seconds
    assert t.prob_plot.getAxis("bottom").labelText == "time (s)"
    t.set_fps(0.0)  # no frame rate: frames, whatever the toggle says
    assert t.score_axis.tickStrings([25.0], 1.0, 25.0) == ["25"] and t.cursor_text(3).strip() == "frame 3"


@pytest.fixture
def window(qtbot: Any, tiny_model: Path, tmp_path: Path) -> Iterator[Any]:
    from lusviewer.ui.main_window import MainWindow

    w = MainWindow(str(tiny_model), QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), quiet=True)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.controller.model_status is not None, timeout=TIMEOUT)
    yield w
    w.close()


@pytest.mark.usefixtures("no_leaked_threads")
def test_viewer_and_cli_report_the_same_exam(
    qtbot: Any, window: Any, synthetic_clip: Path, tiny_model: Path, tmp_path: Path
) -> None:
    first = tmp_path / "patient_3_L1.mp4"
    second = tmp_path / "scan_b.mp4"
    for clip in (first, second):
        clip.write_bytes(synthetic_clip.read_bytes())
        with qtbot.waitSignal(window.controller.exam_changed, timeout=TIMEOUT):
            assert window.open_clip(str(clip))
    panel, exam = window.exam_panel, window.controller.exam
    window.exam_panel.protocol.setCurrentIndex(panel.protocol.findData(6))
    assert window.act_export_report.isEnabled() and window.act_export_report.shortcut().toString() == "Ctrl+P"
    assert panel.zone_box(0).currentText() == "L1" and panel.zone_box(1).currentText() == "—"
    box = panel.zone_box(1)
    box.setCurrentIndex(box.findData("R3"))  # the clinician places the clip named without a zone
    assert exam.body_zone(str(second)) == "R3"
    assert {c.zone.code: c.state for c in panel.diagram.cells}["R3"] == "scored"  # live
    assert window.exporter.export_exam_to(str(tmp_path / "gui.csv"))
    assert window.exporter.export_report_to(str(tmp_path / "gui.pdf"), ExamFields("P3", "", ""))
    zones = tmp_path / "zones.csv"
    zones.write_text(f"clip,zone\n{second.name},R3\n")
    out = subprocess.run(
        [sys.executable, "-m", "lusviewer", "score", str(first), str(second), "--model", str(tiny_model),
         "-o", str(tmp_path / "cli.csv"), "--exam", str(tmp_path / "cli-exam.csv"), "--exam-zones", "6",
         "--zone-from", str(zones), "--exam-report", str(tmp_path / "cli.pdf"), "--patient-id", "P3"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "gui.csv").read_text() == (tmp_path / "cli-exam.csv").read_text()
    assert "exam report: LUS score" in out.stderr and (tmp_path / "cli.pdf").read_bytes().startswith(b"%PDF")
    if PDFTOTEXT is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the PDFs' text is not compared")
    gui, cli = (" ".join(_pdf_text(tmp_path / f"{k}.pdf").split()) for k in ("gui", "cli"))
    headline = f"LUS score {exam.total} / 18, 2 of 6 zones, INCOMPLETE"
    assert headline in gui and headline in cli and "P3" in gui and "P3" in cli
    assert "patient_3_L1.mp4" in cli and "scan_b.mp4" in cli and "R3" in cli


def test_cli_refuses_a_bad_zone_rule(tmp_path: Path, tiny_model: Path, synthetic_clip: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lusviewer", "score", str(synthetic_clip), "--model", str(tiny_model),
         "-o", str(tmp_path / "r.csv"), "--zone-from", "(bad"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2 and "--zone-from (bad: neither a CSV file nor a regular expression" in out.stderr
    assert not (tmp_path / "r.csv").exists()


def test_cli_says_which_clip_has_no_zone(tmp_path: Path, tiny_model: Path, synthetic_clip: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lusviewer", "score", str(synthetic_clip), "--model", str(tiny_model),
         "-o", str(tmp_path / "r.csv"), "--exam-report", str(tmp_path / "exam.pdf"), "-q"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "synthetic.mp4: no zone on the chest (from its name): not placed on the report's diagram" in out.stderr
    assert (tmp_path / "exam.pdf").read_bytes().startswith(b"%PDF")
    if PDFTOTEXT is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the PDF's text is not read back")
    assert "1 clip not placed on the chest" in " ".join(_pdf_text(tmp_path / "exam.pdf").split())


def test_exam_fields_dialog_keeps_what_is_typed(qtbot: Any) -> None:
    from lusviewer.ui.export import ExamFieldsDialog

    dialog = ExamFieldsDialog(None, ExamFields(operator="Dr A"))
    qtbot.addWidget(dialog)
    assert (dialog.patient.text(), dialog.date.text(), dialog.operator.text()) == ("", "", "Dr A")  # nothing guessed
    dialog.patient.setText("  P-7 ")
    dialog.date.setText("2 Dec 2026")
    assert dialog.fields() == ExamFields("P-7", "2 Dec 2026", "Dr A")


def test_zones_of_clips_that_could_not_be_scored_are_not_called_not_scanned(qapp: Any, tmp_path: Path) -> None:
    """An exam whose last clips were cancelled (Esc) or failed: the PDF's text said they
    "could not be scored" while its chest diagram, and the note "3 zones of the protocol not
    scanned", called their zones not scanned. Their zones now read "not scored" (a cross on
    white, a solid edge), with a key entry, and the notes no longer count them as not scanned."""
    from lusviewer.ui.exam_report import write_exam_pdf

    session = _session(6, 3)  # R1 R2 R3 scored
    session.failed("exam/patient_7_L1.mp4")  # cancelled, or failed
    session.failed("exam/patient_7_L2.mp4")
    report = build_exam_report(session)
    states = {c.zone.code: c.state for c in report.cells}
    assert states == {
        "R1": "scored",
        "R2": "scored",
        "R3": "withheld",
        "L1": "not scored",
        "L2": "not scored",
        "L3": "not scanned",
    }
    from lusviewer.ui.chest_diagram import NOT_SCORED_MARK, has_not_scored

    assert has_not_scored(report.cells)
    assert zone_labels(next(c for c in report.cells if c.zone.code == "L1")) == (NOT_SCORED_MARK, "not scored")
    assert "1 zone of the protocol not scanned" in report.notes
    assert any(n.startswith("2 clips could not be scored") for n in report.notes)
    # painted unlike a zone not scanned
    cells = [c for c in report.cells if c.zone.code in ("L1", "L3")]
    boxes = zone_boxes(QRectF(0, 0, 600, 260), cells)
    img = _render(cells)

    def crop(code: str) -> list[str]:
        b = boxes[code].toRect()
        return [img.pixelColor(x, y).name() for y in range(b.top(), b.bottom()) for x in range(b.left(), b.right())]

    dark = [sum(QColor(c).lightness() < 100 for c in crop(code)) for code in ("L1", "L3")]
    assert dark[0] > 2 * dark[1], dark  # the cross and the solid edge (L3: its code and "not scanned")
    out = write_exam_pdf(tmp_path / "exam.pdf", report)
    if PDFTOTEXT is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the PDF's text is not read back")
    flat = " ".join(_pdf_text(out).split())
    assert "× could not be scored" in flat  # the key
    assert "2 clips could not be scored: patient_7_L1.mp4, patient_7_L2.mp4" in flat
    assert "3 zones of the protocol not scanned" not in flat


def test_cli_report_shows_the_most_severe_frame(
    tmp_path: Path, tiny_model: Path, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's PDF takes its picture from the frame its caption names, the clip's most
    severe finding (the viewer's export does the same), not the CSV's worst_frame."""
    import csv

    import numpy as np

    from lusviewer.__main__ import main
    from lusviewer.cli import score as score_cli
    from lusviewer.report.aggregate import low_confidence
    from lusviewer.report.csv_report import clips_path_for
    from lusviewer.report.exam_report import most_severe_frame

    asked: list[int] = []
    monkeypatch.setattr(score_cli, "_thumbnail", lambda path, frame: asked.append(frame))
    out = tmp_path / "r.csv"
    assert main(["score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(out),
                 "--exam-report", str(tmp_path / "exam.pdf"), "-q"]) == 0  # fmt: skip
    frames = list(csv.DictReader(out.open()))
    probs = np.array([[float(r[f"p{k}"]) for k in range(4)] for r in frames])
    scores = np.array([int(r["score"]) for r in frames])
    (clip,) = csv.DictReader(clips_path_for(out).open())
    assert asked == [most_severe_frame(scores, low_confidence(probs), int(clip["worst_frame"]))]


def test_cli_picture_frame_differs_from_the_csv_worst_frame_where_the_finding_does() -> None:
    """A clip scored 0 by its rule with a run of confident 1s: the CSV's worst_frame (the
    frame behind the clip score, here 0) is not the frame the PDF must show (the middle
    of the run of 1s)."""
    from types import SimpleNamespace

    import numpy as np

    from lusviewer.cli.score import _severe_frame

    scores = np.array([0, 0, 1, 1, 1, 0, 0])
    probs = np.eye(4)[scores] * 0.9 + 0.025
    result = SimpleNamespace(scores=scores, probs=probs, summary=SimpleNamespace(worst_frame=0))
    assert _severe_frame(result) == 3  # type: ignore[arg-type]
