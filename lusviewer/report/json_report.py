"""The score report as one JSON file (``lusviewer score -o report.json``), for scripts.

The same report as the CSV pair (:mod:`lusviewer.report.csv_report`), in one file: each
clip with the clip CSV's fields, under the same names and with the same numbers, typed
(numbers as numbers, ``yes``/``no`` as true/false, an empty cell as null), and its frames
under ``per_frame`` with the frame CSV's fields (less ``clip``, ``model`` and
``weights_sha256``, which are the clip's). It is built from the CSV's own rows
(:func:`~lusviewer.report.csv_report.frame_rows`, :func:`~lusviewer.report.csv_report.clip_row`),
so the two cannot drift apart, and it keeps the CSV's contract: a clip scored on fewer
frames than its header announces has ``complete: false``, a clip unlike the training
clips ``confidence: "withheld"`` (its ``clip_score`` is the model's output, not a
finding). Unlike the CSV, it also lists the inputs that could not be scored, with the
reason, under ``not_scored``, and says in ``all_scored`` whether there were any: a script
reading only this file still sees a partial run as partial.

Written like the CSV: streamed, clip by clip, to a temporary file, renamed into place
when complete (``all_scored`` and ``not_scored`` come last, after ``clips``); temporary
files of a killed run are removed by the next run that writes the same report.
"""

from __future__ import annotations

import contextlib
import json
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from lusviewer.report.csv_report import (
    CLIP_COLUMNS,
    FRAME_COLUMNS,
    ClipScores,
    ReportError,
    clip_row,
    frame_rows,
    remove_stale_temporaries,
    tmp_name,
)
from lusviewer.report.csvsafe import unescape_cell

#: What ``report`` says in every file; ``format_version`` changes only when a field
#: changes meaning or goes; new fields may be added within a version.
REPORT_KIND = "lusviewer score report"
FORMAT_VERSION = 1

#: The frame fields each clip's ``per_frame`` rows leave out: they are the clip's.
CLIP_LEVEL = ("clip", "model", "weights_sha256")
PER_FRAME_KEYS = tuple(c for c in FRAME_COLUMNS if c not in CLIP_LEVEL)

_INTS = {"frames", "clip_score", "n0", "n1", "n2", "n3", "worst_frame", "low_confidence_frames", "frame", "score"}
_FLOATS = {"fps", "recon_error_mean", "p_a_lines", "p_b_lines", "time_s", "p0", "p1", "p2", "p3", "recon_error"}
_YES_NO = {"unfamiliar", "complete"}


def is_json_report(path: str | os.PathLike[str]) -> bool:
    """Whether ``-o path`` asks for the JSON report (its name ends ``.json``, any case)."""
    return Path(path).suffix.lower() == ".json"


def _value(column: str, cell: str) -> Any:
    """A CSV cell as the JSON value of its column: an empty cell is null."""
    if column in _YES_NO:
        return {"yes": True, "no": False}.get(cell)
    if cell == "" and column in _INTS | _FLOATS:
        return None
    if column in _INTS:
        return int(cell)
    if column in _FLOATS:
        return float(cell)
    return cell


def clip_entry(frames: Sequence[Sequence[str]], clip: Sequence[str], *, from_csv: bool = False) -> dict[str, Any]:
    """One clip of the JSON report from its CSV rows (``from_csv``: read back from a CSV
    file, whose text cells carry :func:`~lusviewer.report.csvsafe.csv_cell`'s ``'``)."""

    def cell(text: str) -> str:
        return unescape_cell(text) if from_csv else text

    if len(clip) != len(CLIP_COLUMNS) or any(len(f) != len(FRAME_COLUMNS) for f in frames):
        raise ValueError("a row does not have the report's columns")
    entry: dict[str, Any] = {c: _value(c, cell(v)) for c, v in zip(CLIP_COLUMNS, clip, strict=True)}
    entry["per_frame"] = [
        {c: _value(c, cell(v)) for c, v in zip(FRAME_COLUMNS, row, strict=True) if c not in CLIP_LEVEL}
        for row in frames
    ]
    return entry


class JsonReportWriter:
    """Streams clips into the JSON report (each clip written as it comes, so memory does not
    grow with the number of clips) and renames it into place on :meth:`commit`, as
    :class:`~lusviewer.report.csv_report.ReportWriter` does the CSV: leaving the block
    without ``commit()`` leaves an earlier report as it was and no temporary file; a
    failure to write is one :class:`ReportError`, after which no temporary file is left."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from lusviewer import __version__

        self.path = Path(path)
        self.outputs: tuple[Path, ...] = (self.path,)
        self._tmp = tmp_name(self.path, os.getpid())
        self._fh: TextIO | None = None
        self._not_scored: list[dict[str, str]] = []
        self.n_clips = 0
        self._closed = False
        head = {"report": REPORT_KIND, "format_version": FORMAT_VERSION, "lusviewer_version": __version__}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.path)
            self._fh = open(self._tmp, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            self._fh.write("{\n" + "".join(f" {_dumps(k)}: {_dumps(v)},\n" for k, v in head.items()) + ' "clips": [')
        except OSError as exc:
            self.discard()
            raise ReportError(f"{self.path}: the report cannot be written ({_describe(exc)})") from None

    def add(self, result: ClipScores) -> None:
        self.add_rows(frame_rows(result), clip_row(result))

    def add_rows(self, frames: Sequence[Sequence[str]], clip: Sequence[str], *, from_csv: bool = False) -> None:
        """One clip's rows, as :func:`frame_rows` and :func:`clip_row` make them or (``from_csv``)
        as read back from a report's CSV files; a write failure discards the report."""
        if self._closed or self._fh is None:
            raise ReportError(f"{self.path}: the report was already committed or discarded")
        text = textwrap.indent(_dumps(clip_entry(frames, clip, from_csv=from_csv), indent=1), "  ")
        self._write(("\n" if not self.n_clips else ",\n") + text)
        self.n_clips += 1

    def not_scored(self, clip: str, reason: str) -> None:
        """An input that could not be scored (a clip, a folder), and why: listed in the report."""
        self._not_scored.append({"clip": clip, "reason": reason})

    def _write(self, text: str) -> None:
        assert self._fh is not None
        try:
            self._fh.write(text)
        except OSError as exc:
            self.discard()
            raise ReportError(f"{self.path}: the report could not be written ({_describe(exc)})") from None

    def commit(self) -> None:
        if self._closed or self._fh is None:
            raise ReportError(f"{self.path}: the report was already committed or discarded")
        tail = {"not_scored": self._not_scored, "all_scored": not self._not_scored}
        self._write(
            ("\n ],\n" if self.n_clips else "],\n")
            + ",\n".join(f" {_dumps(k)}: {textwrap.indent(_dumps(v, indent=1), ' ').lstrip()}" for k, v in tail.items())
            + "\n}\n"
        )
        try:
            self._fh.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.discard()
            kept = "an earlier one is kept"
            raise ReportError(f"{self.path}: the report could not be put in place ({_describe(exc)}); {kept}") from None
        self._closed = True

    def discard(self) -> None:
        """Close and remove the temporary file; never raises."""
        if self._closed:
            return
        self._closed = True
        if self._fh is not None:
            with contextlib.suppress(OSError, ValueError):
                self._fh.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> JsonReportWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


def _dumps(value: Any, indent: int | None = None) -> str:
    # strict JSON: NaN/inf never reach here (an empty cell is null), allow_nan=False keeps it so
    return json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
