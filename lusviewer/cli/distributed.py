"""``lusviewer score`` under ``torchrun``: each rank scores its share of the clips, rank 0
merges one report.

    torchrun --nproc-per-node 2 -m lusviewer score FOLDER -o report.csv

The clips (the inputs searched as one process would, sorted within each folder) are
dealt out by position: clip ``i`` goes to rank ``i % WORLD_SIZE``. Each rank scores its
share with its own engine (CPU, or ``cuda:LOCAL_RANK`` when CUDA is chosen) and commits
its part, ``report.rank1of2.csv`` and ``report.rank1of2_clips.csv``, atomically like any
report. The ranks then tell rank 0 what they scored and what failed (a few bytes a clip,
over torch.distributed with gloo, as training's processes talk); rank 0 writes the one
report, in the order one process would have written it, from the parts, and removes them.

A clip that cannot be scored is named on stderr as always. A rank that fails as a whole
(its model does not load, its part cannot be written, an unforeseen error) is named too;
its clips are missing. Whenever clips are missing, the report holds the others, a third
file ``report_missing.csv`` lists each missing clip with its rank and the reason, the
parts stay beside the report, and the exit status is 1. A rank killed outright (out of
memory) ends the run as torchrun ends it: parts already committed stay.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from lusviewer.cli.common import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, err, not_scored_line, quiet_opencv
from lusviewer.wording import count

#: The ranks meet once, at the end: the slowest share sets the wait, so the collective's
#: timeout is long (torch's default of 30 minutes could end a large archive's run).
MEET_TIMEOUT = timedelta(hours=48)

MISSING_COLUMNS = ("clip", "rank", "reason")


def launched() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _csv_suffix(p: Path) -> str:
    """The suffix of a CSV beside report ``p``: its own, ``.csv`` for a JSON report or none."""
    return ".csv" if not p.suffix or p.suffix.lower() == ".json" else p.suffix


def part_path(report: str | os.PathLike[str], rank: int, world: int) -> Path:
    """Rank ``rank``'s part of ``report``: ``report.rank1of2.csv`` beside it (a CSV pair, for
    a JSON report too: rank 0 writes the JSON from the parts)."""
    p = Path(report)
    return p.with_name(f"{p.stem}.rank{rank}of{world}{_csv_suffix(p)}")


def missing_path_for(report: str | os.PathLike[str]) -> Path:
    """``report.csv`` -> ``report_missing.csv``: the clips a distributed run could not score
    (``report.json`` -> ``report_missing.csv``; the JSON lists them under ``not_scored`` too)."""
    p = Path(report)
    return p.with_name(f"{p.stem}_missing{_csv_suffix(p)}")


def share_of(clips: list[str], rank: int, world: int) -> list[str]:
    """The clips rank ``rank`` scores: every ``world``-th, from position ``rank``."""
    return [c for i, c in enumerate(clips) if i % world == rank]


@dataclass
class Outcome:
    """What one rank did with its share (sent to rank 0)."""

    rank: int
    part: str
    scored: list[tuple[str, int]] = field(default_factory=list)  # clip, frames (rows in the part)
    failed: dict[str, str] = field(default_factory=dict)  # clip -> reason
    error: str | None = None  # the rank failed as a whole: its clips not scored or failed are missing


class _Tee:
    """stderr, with the ``lusviewer: error:`` lines said through it kept (the reason a clip failed)."""

    PREFIX = "lusviewer: error: "

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.errors: list[str] = []
        self._line = ""

    def write(self, text: str) -> int:
        # progress bars redraw with \r: a line ends at either
        *lines, self._line = re.split(r"[\r\n]", self._line + text)
        self.errors.extend(line[len(self.PREFIX) :] for line in lines if line.startswith(self.PREFIX))
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def last_error(self, since: int) -> str | None:
        return self.errors[-1] if len(self.errors) > since else None


@contextlib.contextmanager
def errors_kept() -> Iterator[_Tee]:
    tee, stderr = _Tee(sys.stderr), sys.stderr
    sys.stderr = tee
    try:
        yield tee
    finally:
        sys.stderr = stderr


def _score_share(args: argparse.Namespace, share: list[str], outcome: Outcome, said: _Tee) -> None:
    """Score ``share`` into this rank's part (committed when the share is done)."""
    from lusviewer.cli import score
    from lusviewer.report import ReportWriter

    engine = score._engine(args)
    if engine is None:
        outcome.error = f"the model could not be loaded ({said.last_error(0) or 'see above'})"
        return
    with ReportWriter(outcome.part) as writer, quiet_opencv():
        for path in share:
            before = len(said.errors)
            result = score._score_clip(engine, path, args.quiet)
            if result is None:
                outcome.failed[path] = said.last_error(before) or "could not be scored"
                continue
            if result.unfamiliar:
                from lusviewer.io import display_path

                err(f"warning: {display_path(path)}: {result.familiarity_warning}")
            writer.add(result)
            outcome.scored.append((path, len(result.scores)))
        writer.commit()


def _join(device: str) -> tuple[int, int, str]:
    """Join torchrun's process group (gloo: the ranks exchange only their outcomes);
    this rank, the world size, and the device its engine uses."""
    import torch
    import torch.distributed as dist

    from lusviewer.training.loop import dist_info

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=MEET_TIMEOUT)
    rank, world = dist_info()
    if device in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return rank, world, device


def run_share(args: argparse.Namespace, clips: list[str], failed_inputs: list[tuple[str, str]]) -> int:
    """This rank's share of ``lusviewer score``; on rank 0, then, the merged report.
    The exit status: rank 0's says whether every input is in the report; another rank's,
    whether its own share was scored."""
    import torch.distributed as dist

    if args.exam:
        if os.environ.get("RANK", "0") == "0":
            err("error: --exam is not for torchrun (one patient's exam is a few clips): score them in one process")
        return EXIT_USAGE
    rank, world, device = _join(args.device)
    mine = share_of(clips, rank, world)
    # One set of progress bars and model lines (rank 0's); errors and warnings from every rank.
    args = argparse.Namespace(**{**vars(args), "device": device, "quiet": args.quiet or rank != 0})
    outcome = Outcome(rank, str(part_path(args.output, rank, world)))
    with errors_kept() as said:
        try:
            _score_share(args, mine, outcome, said)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # named, and the other ranks' work is kept
            if not isinstance(exc, OSError):  # a bug, not a disk or a file: its traceback
                traceback.print_exc()
            outcome.error = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            outcome.scored.clear()  # its part was discarded with the error: those clips are missing too
    if outcome.error:
        err(f"error: rank {rank} of {world} failed: {outcome.error}")
    outcomes: list[Outcome | None] = [None] * world
    dist.all_gather_object(outcomes, outcome)
    status = EXIT_SOME_FAILED if outcome.error else EXIT_OK
    if rank == 0:
        status = merge(
            args.output,
            clips,
            [o for o in outcomes if o is not None],
            failed_inputs,
            quiet=args.quiet,
            given=args.paths,
        )
    dist.destroy_process_group()
    return status


def _read_part(outcome: Outcome) -> tuple[list[list[str]], list[list[str]]]:
    """A part's frame rows and clip rows, headers left out."""
    from lusviewer.report import clips_path_for

    rows: list[list[list[str]]] = []
    for path in (Path(outcome.part), clips_path_for(outcome.part)):
        with open(path, newline="", encoding="utf-8") as fh:
            rows.append(list(csv.reader(fh))[1:])
    frames, clip_rows = rows
    if len(clip_rows) != len(outcome.scored) or len(frames) != sum(n for _, n in outcome.scored):
        raise ValueError("its rows do not match the clips the rank scored")
    return frames, clip_rows


def merge(
    output: str,
    clips: list[str],
    outcomes: list[Outcome],
    failed_inputs: list[tuple[str, str]],
    *,
    quiet: bool = False,
    given: list[str] | None = None,
) -> int:
    """Rank 0: the report from the ranks' parts, the clips in the order one process scores
    them; the clips missing, with the reason, in ``report_missing.csv``; the exit status.
    ``failed_inputs``: the inputs whose search failed, each with the reason (said already);
    ``given``: the paths on the command line (a failure inside a folder given is a file, not an input)."""
    from lusviewer.io import display_path
    from lusviewer.report import clips_path_for, report_writer
    from lusviewer.report.csv_report import ReportError

    world = len(outcomes)
    rows: dict[str, tuple[list[list[str]], list[str]]] = {}
    missing: dict[str, tuple[int, str]] = {}
    for o in outcomes:
        try:
            frames, clip_rows = _read_part(o) if o.scored else ([], [])
        except (OSError, ValueError, csv.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            err(f"error: {display_path(o.part)}: rank {o.rank}'s part cannot be read ({reason})")
            o.error, o.scored = f"its part {o.part} cannot be read ({reason})", []
            frames, clip_rows = [], []
        start = 0
        for (clip, n), clip_row in zip(o.scored, clip_rows, strict=True):
            rows[clip] = (frames[start : start + n], clip_row)
            start += n
        for clip in share_of(clips, o.rank, world):
            if clip in o.failed:
                missing[clip] = (o.rank, o.failed[clip])
            elif clip not in rows:
                missing[clip] = (o.rank, f"rank {o.rank} of {world} failed: {o.error or 'its part is incomplete'}")
    parts = [Path(o.part) for o in outcomes if Path(o.part).is_file()]
    _write_missing(output, clips, missing)
    if not rows:
        err("error: no clip could be scored; no report written")
        return EXIT_SOME_FAILED
    try:
        with report_writer(output) as writer:
            for path, reason in failed_inputs:
                writer.not_scored(path, reason)
            for clip in clips:
                if clip in rows:
                    writer.add_rows(*rows[clip], from_csv=True)
                elif clip in missing:
                    writer.not_scored(clip, missing[clip][1])
            writer.commit()
    except ReportError as exc:
        err(f"error: {exc}; the ranks' parts are kept: {', '.join(display_path(p) for p in parts)}")
        return EXIT_USAGE
    if not quiet:
        paths = " and ".join(display_path(p) for p in writer.outputs)
        err(f"wrote {paths} ({count(writer.n_clips, 'clip')})")
    if missing:
        err(
            f"{count(len(missing), 'clip')} missing from the report, listed with the reason in "
            f"{display_path(missing_path_for(output))}; the ranks' parts are kept: "
            f"{', '.join(display_path(p) for p in parts)}"
        )
    else:  # all in the report: the parts have served
        for p in parts:
            for f in (p, clips_path_for(p)):
                with contextlib.suppress(OSError):
                    f.unlink()
    if failed_inputs:
        err(not_scored_line([p for p, _ in failed_inputs] if given is None else given, [p for p, _ in failed_inputs]))
    return EXIT_SOME_FAILED if missing or failed_inputs else EXIT_OK


def _write_missing(output: str, clips: list[str], missing: dict[str, tuple[int, str]]) -> None:
    """``report_missing.csv`` (atomically), or no such file when nothing is missing (one
    left by an earlier run would mislead)."""
    from lusviewer.report.csv_report import tmp_name
    from lusviewer.report.csvsafe import safe_writer

    path = missing_path_for(output)
    if not missing:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return
    tmp = tmp_name(path, os.getpid())
    try:
        with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
            w = safe_writer(fh)
            w.writerow(MISSING_COLUMNS)
            w.writerows([clip, str(missing[clip][0]), missing[clip][1]] for clip in clips if clip in missing)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        err(f"error: {path}: the list of missing clips could not be written ({exc.strerror or exc})")
