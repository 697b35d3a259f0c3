"""The CSV score report: a public contract read by scripts and spreadsheets.

``report.csv`` has one row per frame, ``report_clips.csv`` (same stem + ``_clips``)
one row per clip. The columns below are fixed in name and order; new columns may
only ever be appended. Both files are written to temporary files and renamed into
place when the report is complete, so a reader never sees half a report; temporary
files left by a killed run are removed by the next run that writes the same report.
Every cell goes through :func:`lusviewer.report.csvsafe.csv_cell` (no live formulas).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TextIO

import numpy as np

from lusviewer.report.aggregate import clip_confidence, low_confidence
from lusviewer.report.csvsafe import safe_writer

#: The findings a model may have auxiliary heads for (``lusviewer.model.hybrid.AUX_FINDINGS``,
#: repeated here: the report imports no torch), each a ``p_<name>`` column of both files.
KNOWN_FINDINGS = ("a_lines", "b_lines")
FINDING_COLUMNS = tuple(f"p_{name}" for name in KNOWN_FINDINGS)

FRAME_COLUMNS = (
    "clip", "frame", "time_s", "p0", "p1", "p2", "p3", "score", "recon_error", "model", "weights_sha256",
    # appended: the frame's probability of each finding (A-lines, B-lines), empty where the
    # model card does not show it (``inference.findings_shown``: not validated)
    *FINDING_COLUMNS,
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
    # appended: "yes" when every frame the clip's header announces was decoded, "no" when
    # the clip ended early or its frames stopped decoding (scored on the frames present);
    # then where and how the clip was scored: the device ("cpu", "cuda") and the precision
    # ("fp32", "bf16", "fp16"): bf16 and fp32 may give the same scores with probabilities
    # that differ by a few hundredths
    "complete", "device", "precision",
    # appended: how far the clip score may be read as a finding (aggregate.clip_confidence):
    # "confident", "uncertain" (most frames, or the frames of the clip score, are weak
    # calls) or "withheld" (unlike the training clips: no reliable score)
    "confidence",
    # appended: the clip's mean per-frame probability of each finding (A-lines, B-lines; 3
    # decimals), empty where the model card does not show it (``inference.findings_shown``)
    *FINDING_COLUMNS,
)  # fmt: skip


#: A file name that is not UTF-8 (Python holds its bytes as surrogates) is written with
#: the bytes as ``\\udcXX`` escapes: the CSV stays valid UTF-8 and the row is not lost.
ENCODING_ERRORS = "backslashreplace"


class ReportError(OSError):
    """A report could not be written (disk full, no permission, name too long...).
    ``str()`` is one line naming the file and the reason."""


class _Summary(Protocol):
    # read-only members: the frozen ClipSummary satisfies them
    @property
    def clip_score(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def counts(self) -> tuple[int, ...]: ...
    @property
    def worst_frame(self) -> int: ...


class ClipScores(Protocol):
    """What a report needs of a scored clip (``inference.ClipResult`` has it)."""

    clip: str
    probs: np.ndarray
    scores: np.ndarray
    recon_error: np.ndarray
    model_name: str
    weights_sha256: str
    device: str
    precision: str

    @property
    def summary(self) -> _Summary: ...

    @property
    def info(self) -> Any: ...

    @property
    def recon_error_mean(self) -> float: ...

    @property
    def unfamiliar(self) -> bool | None: ...


def clips_path_for(report: str | os.PathLike[str]) -> Path:
    """``report.csv`` -> ``report_clips.csv`` beside it. Never raises: a path without a
    file name (``''``, a folder) gets ``_clips.csv`` inside it, and :func:`output_problem`
    refuses such an output anyway."""
    p = Path(report)
    if p.name in ("", ".", ".."):
        return p / "_clips.csv"
    return p.with_name(f"{p.stem}_clips{p.suffix or '.csv'}")


def _fmt(x: float, digits: int) -> str:
    return "" if not np.isfinite(x) else f"{x:.{digits}f}"


def _finding_columns(result: ClipScores) -> tuple[np.ndarray | None, list[int | None]]:
    """The result's findings (T, F) or None, and for each of :data:`KNOWN_FINDINGS` its
    column there (None: not shown). Results from before findings existed have none."""
    findings = getattr(result, "findings", None)
    names = tuple(getattr(result, "finding_names", ()) or ())
    if findings is None or not names:
        return None, [None] * len(KNOWN_FINDINGS)
    return findings, [names.index(k) if k in names else None for k in KNOWN_FINDINGS]


def frame_rows(result: ClipScores) -> list[list[str]]:
    fps = float(result.info.fps)
    findings, cols = _finding_columns(result)
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
                *("" if c is None or findings is None else _fmt(float(findings[i, c]), 6) for c in cols),
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
        # ``ClipInfo.complete`` is newer than this report; a reader without it read every frame
        "yes" if getattr(result.info, "complete", True) else "no",
        result.device,
        result.precision,
        clip_confidence(result),
        *_finding_means(result),
    ]


def _finding_means(result: ClipScores) -> list[str]:
    findings, cols = _finding_columns(result)
    if findings is None or not len(findings):
        return [""] * len(KNOWN_FINDINGS)
    means = findings.astype(np.float64).mean(0)
    return ["" if c is None else _fmt(float(means[c]), 3) for c in cols]


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def tmp_name(path: Path, pid: int, kind: str = "tmp") -> Path:
    """The writers' temporary (``.r.csv.<pid>.tmp``) or backup (``.bak``) file beside ``path``."""
    return path.with_name(f".{path.name}.{pid}.{kind}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files a killed writer of ``path`` left beside it
    (``.<name>.<pid>.tmp`` of a process that no longer runs), and its backup of an
    earlier report (``.<name>.<pid>.bak``) when the report itself is in place. Only
    files of exactly that pattern, of dead processes, are touched; returns them.
    POSIX only (elsewhere a PID cannot be checked without side effects): a no-op."""
    if os.name != "posix":
        return []
    target = Path(path)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.([0-9]+)\.(tmp|bak)")
    removed: list[Path] = []
    try:
        names = os.listdir(target.parent if str(target.parent) else ".")
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or pid <= 0 or _pid_alive(pid):
            continue
        f = target.with_name(name)
        if m.group(2) == "bak" and not target.is_file():
            continue  # the only copy of the earlier report: a person decides
        with contextlib.suppress(OSError):
            if f.is_file() and not f.is_symlink():
                f.unlink()
                removed.append(f)
    return removed


class ReportWriter:
    """Streams clips into a report; renames the files into place on :meth:`commit`.

    Use as a context manager: leaving the block without ``commit()`` (an error,
    Ctrl-C) removes the temporary files and leaves any earlier report untouched.
    Any failure to write (disk full, a name too long, no permission) is raised as one
    :class:`ReportError`, after which no temporary file is left; :meth:`discard`
    never raises.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.clips_path = clips_path_for(self.path)
        self.outputs: tuple[Path, ...] = (self.path, self.clips_path)
        self._tmp = tmp_name(self.path, os.getpid())
        self._tmp_clips = tmp_name(self.clips_path, os.getpid())
        self._fhs: list[TextIO] = []
        self.n_clips = 0
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for target in (self.path, self.clips_path):
                remove_stale_temporaries(target)
            text: dict[str, Any] = {"newline": "", "encoding": "utf-8", "errors": ENCODING_ERRORS}
            self._fh: TextIO = open(self._tmp, "w", **text)  # noqa: SIM115
            self._fhs.append(self._fh)
            self._fh_clips: TextIO = open(self._tmp_clips, "w", **text)  # noqa: SIM115
            self._fhs.append(self._fh_clips)
            self._frames = safe_writer(self._fh)
            self._clips = safe_writer(self._fh_clips)
            self._frames.writerow(FRAME_COLUMNS)
            self._clips.writerow(CLIP_COLUMNS)
        except OSError as exc:
            self.discard()
            raise ReportError(f"{self.path}: the report cannot be written ({_describe(exc)})") from None

    def add(self, result: ClipScores) -> None:
        """Add one clip's rows; a write failure discards the report (:class:`ReportError`)."""
        self.add_rows(frame_rows(result), clip_row(result))

    def add_rows(self, frames: Sequence[Sequence[str]], clip: Sequence[str], *, from_csv: bool = False) -> None:
        """Add one clip's rows as :func:`frame_rows` and :func:`clip_row` make them, or as
        read back from a report (``from_csv``; the same here: ``csv_cell`` leaves its own
        output as it is)."""
        if self._closed:
            raise ReportError(f"{self.path}: the report was already committed or discarded")
        try:
            self._frames.writerows(frames)
            self._clips.writerow(clip)
        except OSError as exc:
            self.discard()
            raise ReportError(f"{self.path}: the report could not be written ({_describe(exc)})") from None
        self.n_clips += 1

    def not_scored(self, clip: str, reason: str) -> None:
        """An input that could not be scored: not in the CSV, whose contract is its columns
        (the command says it on stderr and in its exit status; the JSON report lists it)."""

    def commit(self) -> None:
        """Rename both files into place. If the second rename fails, the first is undone
        (an earlier report is put back), so the report and its clip file always match.
        On failure the temporary files are removed and :class:`ReportError` is raised."""
        if self._closed:
            raise ReportError(f"{self.path}: the report was already committed or discarded")
        try:
            self._fh.close()
            self._fh_clips.close()
        except OSError as exc:  # disk full shows here, when the buffers are flushed
            self.discard()
            raise ReportError(f"{self.path}: the report could not be written ({_describe(exc)})") from None
        backup = None
        try:
            if self.path.is_file():
                backup = tmp_name(self.path, os.getpid(), "bak")
                os.replace(self.path, backup)
            try:
                os.replace(self._tmp, self.path)
                os.replace(self._tmp_clips, self.clips_path)
            except OSError:
                if backup is not None:
                    os.replace(backup, self.path)
                    backup = None
                elif not self._tmp.exists():  # the new report went in: take it out again
                    self.path.unlink(missing_ok=True)
                raise
        except OSError as exc:
            self.discard()
            raise ReportError(
                f"{self.path}: the report could not be put in place ({_describe(exc)}); an earlier report is kept"
            ) from None
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink(missing_ok=True)
        self._closed = True

    def discard(self) -> None:
        """Close and remove the temporary files; never raises (called while unwinding)."""
        if self._closed:
            return
        self._closed = True
        for fh in self._fhs:
            with contextlib.suppress(OSError, ValueError):
                fh.close()
        for f in (self._tmp, self._tmp_clips):
            with contextlib.suppress(OSError):
                f.unlink(missing_ok=True)

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


#: Longest file name most file systems take (bytes), where ``pathconf`` cannot say.
_NAME_MAX = 255
#: What a writer adds to a name for its temporary file: ``.`` + ``.<pid>.tmp`` (PIDs up to 7 digits).
_TMP_EXTRA = len("..1234567.tmp")


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(folder, name))
    except (OSError, ValueError, AttributeError):
        return default


def output_problem(path: str | os.PathLike[str], *, inputs: Sequence[str] = ()) -> str | None:
    """Why ``path`` cannot be written as an output file (``None`` when it can), checked
    before any work is done: an empty name, not resolvable (a symlink loop), a folder,
    an existing device, FIFO or socket, an input, under a file, a name too long once the
    temporary suffix is added, or not writable. Never raises."""
    if not str(path):
        return "the output file name is empty"
    p = Path(path)
    if p.name in ("", ".", ".."):
        return f"{p} is a folder, not a file name"
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError) as exc:
        return f"{p}: cannot be resolved ({exc})"
    for i in inputs:
        try:
            same = Path(i).resolve() == resolved
        except (OSError, RuntimeError):  # an input that is a symlink loop: compared as written
            same = Path(os.path.abspath(i)) == resolved
        if same:
            return f"{p} is one of the input clips: it would be overwritten"
    try:
        if p.is_dir():
            return f"{p} is a folder"
        if p.exists() and not p.is_file():
            return f"{p} is not a regular file (a device, FIFO or socket): it would be replaced"
        parent = resolved.parent
        while not parent.exists():  # the folders still to be made
            parent = parent.parent
        if not parent.is_dir():
            return f"{p}: {parent} is a file, not a folder"
        name_max = _limit(parent, "PC_NAME_MAX", _NAME_MAX)
        if len(os.fsencode(p.name)) + _TMP_EXTRA > name_max:
            return f"{p}: the file name is too long ({len(os.fsencode(p.name))} bytes; at most {name_max - _TMP_EXTRA})"
        if len(os.fsencode(str(resolved))) + _TMP_EXTRA >= _limit(parent, "PC_PATH_MAX", 4096):
            return f"{p}: the path is too long"
        if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
            return f"{p}: no permission to write there (or a read-only file system)"
        # os.access says yes to root almost everywhere (/proc, some read-only mounts): try it
        try:
            fd, probe = tempfile.mkstemp(prefix=".lusviewer-probe.", dir=parent)
        except OSError as exc:
            return f"{p}: cannot create a file in {parent} ({_describe(exc)})"
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return f"{p}: the file name is too long"
        return f"{p}: cannot be written there ({_describe(exc)})"
    except ValueError as exc:  # e.g. a NUL byte in the name
        return f"{p}: not a usable file name ({exc})"
    return None


def write_report(path: str | os.PathLike[str], results: Sequence[ClipScores]) -> tuple[Path, Path]:
    """Write a whole report at once (the viewer's export uses this)."""
    with ReportWriter(path) as w:
        for r in results:
            w.add(r)
        w.commit()
        return w.path, w.clips_path
