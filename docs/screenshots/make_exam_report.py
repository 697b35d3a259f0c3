"""Pictures of the exam report (PDF) for the README, from real clips scored with the shipped model.

    python docs/screenshots/make_exam_report.py CLIP [CLIP ...] --zones 6 --name exam-report-6 \
        [--zone-csv zones.csv] [--labels ../shared/data/covid-blues/severity.csv] \
        [--patient ID --date DATE --operator NAME]

Scores the clips (CPU), places each on the chest from its file name or ``--zone-csv``
(clip,zone: zones assigned by hand), records as "the clinician's score" the dataset's
own per-clip label where ``--labels`` gives one (COVID-BLUeS ``severity.csv``), writes
``NAME.pdf`` (not kept in the repository) and converts it with ``pdftoppm -r 80 -png`` to
``docs/screenshots/NAME-<page>.png``. The same path as ``lusviewer score --exam-report``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--zones", type=int, choices=[6, 14], required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--zone-csv", default=None)
    ap.add_argument("--labels", default=None, help="CSV video_file,Severity Score: the clinician's scores")
    ap.add_argument("--patient", default="")
    ap.add_argument("--date", default="")
    ap.add_argument("--operator", default="")
    ap.add_argument("--pdf", default=None, help="keep the PDF here (default: a temporary folder)")
    args = ap.parse_args()

    from lusviewer.cli.common import load_model_or_say
    from lusviewer.inference import ScoringEngine
    from lusviewer.io import open_clip
    from lusviewer.report.aggregate import low_confidence
    from lusviewer.report.exam_report import ExamFields, build_exam_report, most_severe_frame, thumbnail_of
    from lusviewer.report.session import ExamSession
    from lusviewer.report.zones import zone_rule
    from lusviewer.resources import default_model_path
    from lusviewer.ui.exam_report import write_exam_pdf

    loaded = load_model_or_say(str(default_model_path()))
    assert loaded is not None
    engine = ScoringEngine(loaded, device="cpu")
    session = ExamSession(args.zones, zone_rule=zone_rule(args.zone_csv, args.zones) if args.zone_csv else None)
    labels: dict[str, int] = {}
    if args.labels:
        with open(args.labels, newline="") as fh:
            labels = {r["video_file"].strip(): int(float(r["Severity Score"])) for r in csv.DictReader(fh)}
    for clip in args.clips:
        with open_clip(clip) as reader:
            result = engine.score_clip(reader)
        with open_clip(clip) as reader:
            # the worst frame, its most severe finding, as the viewer's PDF shows it
            worst = most_severe_frame(result.scores, low_confidence(result.probs), result.summary.worst_frame)
            thumb = thumbnail_of(reader.frame(worst))
        session.scored(result, thumbnail=thumb)
        label = labels.get(Path(clip).stem)
        if label is not None:
            session.set_clinician_score(result.clip, label)
        print(clip, result.summary.clip_score, session.exam.body_zone(result.clip), label)
    report = build_exam_report(session, ExamFields(args.patient, args.date, args.operator))
    with tempfile.TemporaryDirectory() as tmp:
        pdf = write_exam_pdf(args.pdf or Path(tmp) / f"{args.name}.pdf", report)
        subprocess.run(["pdftoppm", "-r", "80", "-png", str(pdf), str(OUT / args.name)], check=True)
        session.export(Path(tmp) / "exam.csv")
        print((Path(tmp) / "exam.csv").read_text())
    print(report.headline, "|", report.clinician_line)


if __name__ == "__main__":
    main()
