"""Score reports (CSV) and clip aggregation rules (no Qt)."""

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
from lusviewer.report.session import ExamSession

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
    "ReportWriter",
    "clips_path_for",
    "low_confidence",
    "output_problem",
    "summarize_clip",
    "write_exam_csv",
    "write_report",
]
