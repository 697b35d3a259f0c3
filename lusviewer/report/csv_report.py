"""The CSV score report: a public contract read by scripts and spreadsheets.

``report.csv`` has one row per frame, ``report_clips.csv`` (same stem + ``_clips``)
one row per clip. The columns below are fixed in name and order; new columns may
only ever be appended. Both files are written to temporary files and renamed into
place when the report is complete, so a reader never sees half a report.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TextIO

import numpy as np

from lusviewer.report.aggregate import low_confidence

FRAME_COLUMNS = (
    "clip", "frame", "time_s", "p0", "p1", "p2", "p3", "score", "recon_error", "model", "weights_sha256",
)  # fmt: skip
CLIP_COLUMNS = (
    "clip", "frames", "fps", "clip_score", "rule", "n0", "n1", "n2", "n3", "worst_frame", "model",
    "weights_sha256",
    # appended: the clip's mean reconstruction error, and "yes" when it is above the model
    # card's limit (images unlike the training clips: scores unreliable), "no", or empty
    # when the card gives no limit
    "recon_error_mean", "unfamiliar",
    # appended: frames whose most probable score has a probability below 0.5 (weak calls)
    "low_confidence_frames",
)  # fmt: skip


class _Summary(Protocol):
    clip_score: int
    rule: str
    counts: tuple[int, ...]
    worst_frame: int


class ClipScores(Protocol):
    """What a report needs of a scored clip (``inference.ClipResult`` has it)."""

    clip: str
    probs: np.ndarray
    scores: np.ndarray
    recon_error: np.ndarray
    summary: _Summary
    model_name: str
    weights_sha256: str

    @property
    def info(self) -> Any: ...

    @property
    def recon_error_mean(self) -> float: ...

    @property
    def unfamiliar(self) -> bool | None: ...


def clips_path_for(report: str | os.PathLike[str]) -> Path:
    """``report.csv`` -> ``report_clips.csv`` beside it."""
    p = Path(report)
    return p.with_name(f"{p.stem}_clips{p.suffix or '.csv'}")


def _fmt(x: float, digits: int) -> str:
    return "" if not np.isfinite(x) else f"{x:.{digits}f}"


def frame_rows(result: ClipScores) -> list[list[str]]:
    fps = float(result.info.fps)
    rows = []
    for i, (p, s, e) in enumerate(zip(result.probs, result.scores, result.recon_error, strict=True)):
        rows.append(
            [
                result.clip,
                str(i),
                _fmt(i / fps if fps > 0 else float("nan"), 4),
                *(_fmt(float(v), 6) for v in p[:4]),
                str(int(s)),
                _fmt(float(e), 6),
                result.model_name,
                result.weights_sha256,
            ]
        )
    return rows


def clip_row(result: ClipScores) -> list[str]:
    s = result.summary
    counts = list(s.counts) + [0] * (4 - len(s.counts))
    return [
        result.clip,
        str(len(result.scores)),
        _fmt(float(result.info.fps), 3),
        str(s.clip_score),
        s.rule,
        *(str(c) for c in counts[:4]),
        str(s.worst_frame),
        result.model_name,
        result.weights_sha256,
        _fmt(result.recon_error_mean, 6),
        {True: "yes", False: "no", None: ""}[result.unfamiliar],
        str(int(low_confidence(result.probs).sum())),
    ]


class ReportWriter:
    """Streams clips into a report; renames the files into place on :meth:`commit`.

    Use as a context manager: leaving the block without ``commit()`` (an error,
    Ctrl-C) removes the temporary files and leaves any earlier report untouched.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.clips_path = clips_path_for(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._tmp_clips = self.clips_path.with_name(f".{self.clips_path.name}.{os.getpid()}.tmp")
        self._fh: TextIO = open(self._tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._fh_clips: TextIO = open(self._tmp_clips, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._frames = csv.writer(self._fh)
        self._clips = csv.writer(self._fh_clips)
        self._frames.writerow(FRAME_COLUMNS)
        self._clips.writerow(CLIP_COLUMNS)
        self.n_clips = 0
        self._closed = False

    def add(self, result: ClipScores) -> None:
        self._frames.writerows(frame_rows(result))
        self._clips.writerow(clip_row(result))
        self.n_clips += 1

    def commit(self) -> None:
        """Rename both files into place. If the second rename fails, the first is undone
        (an earlier report is put back), so the report and its clip file always match."""
        self._fh.close()
        self._fh_clips.close()
        backup = None
        if self.path.is_file():
            backup = self.path.with_name(f".{self.path.name}.{os.getpid()}.bak")
            os.replace(self.path, backup)
        try:
            os.replace(self._tmp, self.path)
            os.replace(self._tmp_clips, self.clips_path)
        except OSError:
            if backup is not None:
                os.replace(backup, self.path)
            elif not self._tmp.exists():  # the new report went in: take it out again
                self.path.unlink(missing_ok=True)
            raise
        if backup is not None:
            backup.unlink(missing_ok=True)
        self._closed = True

    def discard(self) -> None:
        if self._closed:
            return
        self._fh.close()
        self._fh_clips.close()
        for f in (self._tmp, self._tmp_clips):
            f.unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


def output_problem(path: str | os.PathLike[str], *, inputs: Sequence[str] = ()) -> str | None:
    """Why ``path`` cannot be written as an output file (``None`` when it can), checked
    before any work is done: it is a folder, an input, under a file, or not writable."""
    p = Path(path)
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError) as exc:
        return f"{p}: cannot be resolved ({exc})"
    if resolved in {Path(i).resolve() for i in inputs}:
        return f"{p} is one of the input clips: it would be overwritten"
    if p.is_dir():
        return f"{p} is a folder"
    parent = resolved.parent
    while not parent.exists():  # the folders still to be made
        parent = parent.parent
    if not parent.is_dir():
        return f"{p}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        return f"{p}: no permission to write there (or a read-only file system)"
    return None


def write_report(path: str | os.PathLike[str], results: Sequence[ClipScores]) -> tuple[Path, Path]:
    """Write a whole report at once (the viewer's export uses this)."""
    with ReportWriter(path) as w:
        for r in results:
            w.add(r)
        w.commit()
        return w.path, w.clips_path
