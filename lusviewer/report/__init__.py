"""Score reports (CSV) and clip aggregation rules (no Qt)."""

from lusviewer.report.aggregate import RULES, ClipSummary, summarize_clip
from lusviewer.report.csv_report import (
    CLIP_COLUMNS,
    FRAME_COLUMNS,
    ReportWriter,
    clips_path_for,
    write_report,
)

__all__ = [
    "CLIP_COLUMNS",
    "FRAME_COLUMNS",
    "RULES",
    "ClipSummary",
    "ReportWriter",
    "clips_path_for",
    "summarize_clip",
    "write_report",
]
