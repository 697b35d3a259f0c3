"""Score reports (CSV, JSON) and clip aggregation rules (no Qt)."""

import os
from pathlib import Path

from lusviewer.report.aggregate import LOW_CONFIDENCE, RULES, ClipSummary, low_confidence, summarize_clip
from lusviewer.report.csv_report import (
    CLIP_COLUMNS,
    FRAME_COLUMNS,
    ReportWriter,
    clips_path_for,
    output_problem,
    write_report,
)
from lusviewer.report.exam import EXAM_COLUMNS, PROTOCOLS, Exam, ExamEntry, write_exam_csv
from lusviewer.report.json_report import JsonReportWriter, is_json_report
from lusviewer.report.session import ExamSession


def report_writer(path: str | os.PathLike[str]) -> ReportWriter | JsonReportWriter:
    """The writer ``-o path`` asks for: the JSON report for a name ending ``.json``, else the
    CSV pair (``report.csv`` and ``report_clips.csv``)."""
    return JsonReportWriter(path) if is_json_report(path) else ReportWriter(path)


def report_outputs(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The files ``-o path`` writes: the JSON report, or the CSV and its ``_clips`` file."""
    return (Path(path),) if is_json_report(path) else (Path(path), clips_path_for(path))


__all__ = [
    "CLIP_COLUMNS",
    "EXAM_COLUMNS",
    "FRAME_COLUMNS",
    "LOW_CONFIDENCE",
    "PROTOCOLS",
    "RULES",
    "ClipSummary",
    "Exam",
    "ExamEntry",
    "ExamSession",
    "JsonReportWriter",
    "ReportWriter",
    "clips_path_for",
    "is_json_report",
    "low_confidence",
    "output_problem",
    "report_outputs",
    "report_writer",
    "summarize_clip",
    "write_exam_csv",
    "write_report",
]
