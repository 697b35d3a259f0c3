"""``lusviewer score``: score clips (files or folders), write the per-frame and per-clip
CSV report and, with ``--exam``, the clips as one patient's exam."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, TypeVar

from lusviewer.cli import distributed
from lusviewer.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    Command,
    current_warning_lines,
    err,
    load_model_or_say,
    not_scored_line,
    quiet_opencv,
)
from lusviewer.cli.options import add_exam_zones, add_folder_batching, add_option, add_precision, add_rule
from lusviewer.wording import count

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    import numpy as np

    from lusviewer.inference import ClipResult, ScoringEngine
    from lusviewer.report import JsonReportWriter, ReportWriter
    from lusviewer.report.session import ExamSession


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("paths", nargs="+", metavar="PATH", help="a clip, or a folder of clips (searched recursively)")
    s.add_argument(
        "-o",
        "--output",
        default="report.csv",
        metavar="REPORT",
        help="the report (default: report.csv): REPORT, one row per frame, and REPORT_clips.csv, one row per "
        "clip; a name ending .json writes one JSON file instead, for scripts: each clip with the clip CSV's "
        "fields (typed) and its frames, and the inputs that could not be scored, with the reason",
    )
    add_option(s, "--model")
    add_option(s, "--device")
    add_precision(s)
    add_option(s, "--batch-size")
    add_folder_batching(s)
    add_rule(
        s,
        help="clip score rule (default auto: the one the model card names, else persistent; the shipped "
        "model names expected: its expected severity cut at the card's thresholds)",
    )
    s.add_argument(
        "--exam",
        default=None,
        metavar="CSV",
        help="also write the clips as one patient's exam: one row per clip (zone) and their LUS score total",
    )
    add_exam_zones(
        s,
        help="the exam's protocol: 6 zones (BLUE points) or 14 (Soldati); the total is then out of 18 or 42, "
        "and an exam with fewer clips is marked incomplete (default: out of the zones scored)",
    )
    s.add_argument(
        "--exam-report",
        default=None,
        metavar="PDF",
        help="also write the exam as a PDF report (one A4 page for 6 zones, two for 14): chest diagram, "
        "LUS score, one row per clip with its worst frame and per-frame scores, model provenance",
    )
    s.add_argument(
        "--zone-from",
        default=None,
        metavar="REGEX|CSV",
        help="each clip's zone on the chest: a clip,zone CSV, or a regular expression on the clip's path whose "
        "group 'zone' (else first group) is the zone (R1, l2, 'right lateral upper'); default: read from the "
        "file name (BLUE points L1-L3/R1-R3, Soldati's R1-R7/L1-L7, or words; see the README)",
    )
    s.add_argument("--patient-id", default="", help="the report's patient or exam id (never guessed from the files)")
    s.add_argument("--exam-date", default="", help="the report's exam date, as you write it")
    s.add_argument("--operator", default="", help="the report's operator")
    add_option(s, "--quiet", help="no progress bars")


def _inputs(args: argparse.Namespace) -> tuple[list[str], list[tuple[str, str]]]:
    """The clips of the inputs, and the inputs that failed, each with the reason (said):
    each problem met searching a folder (an unreadable subfolder, a link loop...) and each
    folder without a clip."""
    from lusviewer.io import ClipError, display_path, find_clips

    clips: list[str] = []
    problems: list[ClipError] = []
    failed: list[tuple[str, str]] = []
    for p in args.paths:
        before = len(problems)
        found = find_clips(p, on_error=problems.append)
        for problem in problems[before:]:
            err(f"error: {problem}")
            failed.append((problem.path, str(problem)))
        if os.path.isdir(p) and not found and len(problems) == before:
            reason = f"{display_path(p)}: no supported clips in this folder"
            err(f"error: {reason}")
            failed.append((p, reason))
        clips.extend(found)
    return _once(clips), failed


def _once(clips: list[str]) -> list[str]:
    """Each clip once: a file named twice (a folder and a clip in it, a link and its
    target, ``a/../a/x.mp4``) would be two rows of the report, counted twice by whoever
    sums it; the repeat is said in one warning line and left out."""
    from lusviewer.io import display_path

    seen: dict[object, str] = {}
    kept = []
    for path in clips:
        try:
            st = os.stat(path)
            key: object = (st.st_dev, st.st_ino)
        except (OSError, ValueError):  # opening it will say what is wrong; compared as written
            key = os.path.normpath(os.path.abspath(path))
        if key in seen:
            err(f"warning: {display_path(path)}: the same file as {display_path(seen[key])}, given before; scored once")
            continue
        seen[key] = path
        kept.append(path)
    return kept


def _output_problem(args: argparse.Namespace, clips: list[str]) -> str | None:
    """The outputs are checked before any work: a report that cannot be written, or one
    that would overwrite an input, is refused now rather than after scoring; so are an
    empty ``--exam``/``--exam-report`` name and a ``--zone-from`` CSV that does not exist."""
    from lusviewer.report import is_json_report, output_problem, report_outputs

    for flag, value in (("--exam", args.exam), ("--exam-report", getattr(args, "exam_report", None))):
        if value is not None and not value.strip():  # '' was taken as "not asked for": the exam was not written
            return f"error: {flag} {value!r}: an empty file name; name the file to write"
    zone_from = getattr(args, "zone_from", None)
    if zone_from and zone_from.lower().endswith(".csv") and not os.path.isfile(zone_from):
        # read as a regular expression, it matched no clip: every zone was left out, with a warning per clip
        return f"error: --zone-from {zone_from}: no such CSV file"
    reports = [str(p) for p in report_outputs(args.output)]
    if args.exam and is_json_report(args.exam):  # -o r.json writes JSON: an exam.json of CSV would mislead
        return f"error: --exam {args.exam}: the exam is written as CSV only; name it .csv (the JSON report is -o)"
    if args.exam and _same_file(args.exam, *reports):
        return f"error: --exam {args.exam} would overwrite the report: choose another file"
    pdf = getattr(args, "exam_report", None)
    if pdf and _same_file(pdf, *reports, *([args.exam] if args.exam else [])):
        return f"error: --exam-report {pdf} would overwrite another report: choose another file"
    for out in (*reports, *([args.exam] if args.exam else []), *([pdf] if pdf else [])):
        problem = output_problem(out, inputs=[*clips, *args.paths]) or _clip_named(out)
        if problem:
            return f"error: cannot write the report: {problem}"
    return None


def _clip_named(out: str | os.PathLike[str]) -> str | None:
    """An output named like a clip (``-o b.mp4``, ``--exam L2.avi``: most likely a clip meant as
    an input) is refused: writing there would replace a clip that is not among the inputs."""
    from lusviewer.io import SUPPORTED_EXTENSIONS, display_path
    from lusviewer.io.images import IMAGE_EXTENSIONS

    suffix = os.path.splitext(os.fspath(out))[1].lower()
    if suffix in SUPPORTED_EXTENSIONS + IMAGE_EXTENSIONS:
        exists = " (an existing file)" if os.path.lexists(out) else ""
        return (
            f"{display_path(out)}{exists} has a clip's or image's extension ({suffix}); a report is not written there"
        )
    return None


def _same_file(path: str, *others: str) -> bool:
    """Whether ``path`` names one of ``others`` (never raises: a name that cannot be
    resolved, a symlink loop, is compared as written)."""

    def where(p: str) -> str:
        try:
            return os.path.realpath(p, strict=False)
        except (OSError, ValueError):
            return os.path.abspath(p)

    return where(path) in {where(o) for o in others}


def _engine(args: argparse.Namespace) -> ScoringEngine | None:
    from lusviewer.inference import ScoringEngine
    from lusviewer.io import display_path
    from lusviewer.resources import default_model_path

    loaded = load_model_or_say(args.model or str(default_model_path()))
    if loaded is None:
        return None
    try:
        engine = ScoringEngine(
            loaded, device=args.device, precision=args.precision, batch_size=args.batch_size, rule=args.rule
        )
    except ValueError as exc:
        err(f"error: {exc}")
        return None
    if not args.quiet:
        err(f"model {loaded.card.display_name} ({display_path(loaded.weights_path.name)}) on {engine.description}")
    return engine


def _what(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _score_clip(engine: ScoringEngine, path: str, quiet: bool) -> ClipResult | None:
    """One clip scored with a progress bar; None, with the reason said, when it could not be."""
    from tqdm import tqdm

    from lusviewer.io import ClipError, display_path, open_clip

    said = current_warning_lines()
    if said is not None:
        said.begin_clip()
    name = display_path(path)
    try:
        reader = open_clip(path)
    except Exception as exc:  # a reader's unforeseen failure must not end the run
        err(f"error: {exc}" if isinstance(exc, ClipError) else f"error: {name}: cannot be opened ({_what(exc)})")
        return None
    at_open = reader.info.frame_count
    desc = display_path(os.path.basename(path))[:40]
    bar = tqdm(total=at_open, desc=desc, unit="frame", disable=quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = max(total, done)
        bar.n = done
        bar.refresh()

    try:
        with reader:  # reader.info.path is the path as given: the report's `clip`
            result = engine.score_clip(reader, progress=progress)
    except Exception as exc:  # one clip's failure never loses the others
        bar.close()
        err(f"error: {exc}" if isinstance(exc, ClipError) else f"error: {name}: could not be scored ({_what(exc)})")
        return None
    from lusviewer.report.aggregate import clip_confidence, clip_score_text

    # the viewer's words: "Score 2", "Score 2, uncertain", "No reliable score"
    bar.set_postfix_str(clip_score_text(result.summary.clip_score, clip_confidence(result)), refresh=True)
    bar.close()
    n = len(result.scores)  # the engine marks a clip that decoded fewer frames than promised incomplete
    if not result.info.complete and (said is None or not said.said.incomplete):
        what = "the clip is incomplete (cut short or damaged)"
        err(f"warning: {name}: {what}; scored on the {count(n, 'frame')} present")
    return result


def _batch_clips(args: argparse.Namespace, engine: ScoringEngine, clips: list[str]) -> bool:
    """Whether to score the clips together (the folder scorer): when asked, else with CUDA and several clips."""
    wanted = getattr(args, "batch_clips", None)
    return bool(wanted) if wanted is not None else engine.device.type == "cuda" and len(clips) > 1


def _results(
    args: argparse.Namespace, engine: ScoringEngine, clips: list[str]
) -> Generator[tuple[str, ClipResult | None], None, None]:
    """Each clip and its result (None: it could not be scored, said), in the order given."""
    if not _batch_clips(args, engine, clips):
        for path in clips:
            yield path, _score_clip(engine, path, args.quiet)
        return
    import logging

    from tqdm import tqdm

    from lusviewer.inference.folder import FolderScorer
    from lusviewer.io import display_path

    try:
        scorer = FolderScorer(
            engine,
            workers=getattr(args, "decode_workers", 0),
            capture=getattr(args, "cnn_capture", "auto"),
        )
    except ValueError as exc:
        err(f"error: {exc}")
        yield from ((path, None) for path in clips)
        return
    bar = tqdm(total=len(clips), desc="clips", unit="clip", disable=args.quiet, file=sys.stderr)
    readers = logging.getLogger("lusviewer.io")
    given = 0  # clips handed on so far
    failure: Exception | None = None
    try:
        with contextlib.closing(scorer.score(clips)) as outcomes:
            for outcome in _guarded(outcomes):
                given += 1
                said = current_warning_lines()
                if said is not None:
                    said.begin_clip()
                for level, line in outcome.logs:  # what the readers said while the clip was decoded
                    readers.log(level, "%s", line)
                bar.update(1)
                result = outcome.result
                if result is None:
                    err(f"error: {outcome.error}")
                    yield outcome.path, None
                    continue
                n = len(result.scores)
                if not result.info.complete and (said is None or not said.said.incomplete):
                    name = display_path(outcome.path)
                    what = "the clip is incomplete (cut short or damaged)"
                    err(f"warning: {name}: {what}; scored on the {count(n, 'frame')} present")
                yield outcome.path, result
    except _FolderFailed as exc:  # the run as a whole (a decoding process killed, the GPU): the rest clip by clip
        failure = exc.cause
    finally:
        bar.close()
    if failure is not None:
        err(
            f"warning: scoring the clips together stopped ({_what(failure)}); the {count(len(clips) - given, 'clip')} "
            "left are scored one by one"
        )
        for path in clips[given:]:
            yield path, _score_clip(engine, path, args.quiet)
        return
    if not args.quiet:
        s = scorer.stats
        rate = s.frames / s.wall_s if s.wall_s > 0 else 0.0
        err(
            f"scored {count(s.frames, 'frame')} of {count(len(clips), 'clip')} in {s.wall_s:.1f} s "
            f"({rate:.0f} frames/s, CNN {s.capture})"
        )


class _FolderFailed(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _guarded(items: Iterator[T]) -> Iterator[T]:
    """``items``, with a failure of the iterator itself (not of the code consuming it) as :class:`_FolderFailed`."""
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except Exception as exc:
            raise _FolderFailed(exc) from exc
        yield item


def _write(args: argparse.Namespace, writer: ReportWriter | JsonReportWriter, session: ExamSession) -> int | None:
    """Commit the report and write the exam; an exit status when that failed."""
    from lusviewer.io import display_path

    if not writer.n_clips:
        err("error: no clip could be scored; no report written")
        return EXIT_SOME_FAILED
    try:
        writer.commit()
    except OSError as exc:  # a ReportError: one line naming the report and the reason
        err(f"error: {exc}")
        return EXIT_USAGE
    if not args.quiet:
        paths = " and ".join(display_path(p) for p in writer.outputs)
        err(f"wrote {paths} ({count(writer.n_clips, 'clip')})")
    if args.exam:
        try:
            session.export(args.exam)
        except OSError as exc:
            err(f"error: {display_path(args.exam)}: the exam could not be written ({exc.strerror or exc})")
            return EXIT_SOME_FAILED
        err(f"exam: {session.exam.summary()}; wrote {display_path(args.exam)}")
    if args.exam_report:
        return _write_pdf(args, session)
    return None


def _severe_frame(result: ClipResult) -> int:
    """The frame the PDF shows and captions: the clip's most severe finding, as the
    viewer's export and the report's caption choose it (not always the CSV's
    ``worst_frame``, the frame behind the clip score)."""
    from lusviewer.report.aggregate import low_confidence
    from lusviewer.report.exam_report import most_severe_frame

    worst = int(result.summary.worst_frame)
    return most_severe_frame(result.scores, low_confidence(result.probs), worst) if len(result.scores) else worst


def _thumbnail(path: str, frame: int) -> np.ndarray | None:
    """The clip's worst frame, small, for the PDF report; None (said) when it cannot be read again."""
    from lusviewer.io import display_path, open_clip
    from lusviewer.report.exam_report import thumbnail_of

    try:
        with open_clip(path) as reader:
            return thumbnail_of(reader.frame(frame))
    except Exception as exc:  # the report is still written, without this picture
        err(f"warning: {display_path(path)}: worst frame {frame} not shown in the report ({_what(exc)})")
        return None


def _write_pdf(args: argparse.Namespace, session: ExamSession) -> int | None:
    """The exam's PDF report, painted offscreen by the viewer's painter (Qt imported only now)."""
    from lusviewer.io import display_path
    from lusviewer.report.exam_report import ExamFields, build_exam_report

    try:
        from lusviewer.ui.exam_report import write_exam_pdf

        report = build_exam_report(session, ExamFields(args.patient_id, args.exam_date, args.operator))
        write_exam_pdf(args.exam_report, report)
    except (OSError, ValueError, ImportError) as exc:
        err(f"error: {display_path(args.exam_report)}: the exam report could not be written ({exc})")
        return EXIT_SOME_FAILED
    if not args.quiet:
        err(f"exam report: {report.headline}; wrote {display_path(args.exam_report)}")
    return None


def run(args: argparse.Namespace) -> int:
    from lusviewer.io import display_path
    from lusviewer.report import report_writer
    from lusviewer.report.csv_report import ReportError
    from lusviewer.report.session import ExamSession

    if args.batch_size < 1:  # the engine would say "batch_size", after the folders were searched
        err(f"error: --batch-size {args.batch_size}: must be at least 1")
        return EXIT_USAGE
    clips, search_failures = _inputs(args)
    failed = [path for path, _ in search_failures]
    problem = _output_problem(args, clips)
    if problem:
        err(problem)
        return EXIT_USAGE
    if distributed.launched():  # under torchrun: this rank's share; rank 0 merges the report
        return distributed.run_share(args, clips, search_failures)
    engine = _engine(args)
    if engine is None:
        return EXIT_USAGE
    from lusviewer.report.zones import ZoneRuleError, zone_rule

    try:
        rule = zone_rule(args.zone_from, args.exam_zones) if args.zone_from else None
    except ZoneRuleError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    session = ExamSession(args.exam_zones, zone_rule=rule)
    mixed = False  # warned that the exam's clips are of several patients
    try:
        writer = report_writer(args.output)
    except ReportError as exc:  # one line naming the report and the reason; nothing left behind
        err(f"error: {exc}")
        return EXIT_USAGE
    for path, reason in search_failures:
        writer.not_scored(path, reason)
    results = _results(args, engine, clips)
    done = 0  # clips handed back so far, scored or not
    try:
        with writer, quiet_opencv(), contextlib.closing(results), distributed.errors_kept() as said:
            mark = len(said.errors)  # the error lines said since the last clip: a failed clip's reason
            for path, result in results:
                done += 1
                if result is None:
                    failed.append(path)
                    session.failed(path)
                    writer.not_scored(path, said.last_error(mark) or "could not be scored")
                    mark = len(said.errors)
                    continue
                if result.unfamiliar:  # warned even with -q: it changes how the scores may be read
                    err(f"warning: {display_path(path)}: {result.familiarity_warning}")
                try:
                    writer.add(result)
                except ReportError as exc:  # disk full: the report is discarded, no temporary file left
                    err(f"error: {exc}; no report written")
                    return EXIT_USAGE
                mark = len(said.errors)
                exam_wanted = args.exam or args.exam_report
                other = session.exam.other_patient(result.clip) if exam_wanted and not mixed else None
                if other:  # once: the exam's summary names them all
                    mixed = True
                    err(f"warning: {display_path(other)}: the exam's LUS score sums clips of more than one patient")
                thumb = _thumbnail(path, _severe_frame(result)) if args.exam_report else None
                session.scored(result, thumbnail=thumb)
                if (args.zone_from or args.exam_report) and session.exam.body_zone(result.clip) is None:
                    err(
                        f"warning: {display_path(path)}: no zone on the chest (from "
                        + ("--zone-from or " if args.zone_from else "")
                        + "its name): not placed on the report's diagram"
                    )
            status = _write(args, writer, session)
            if status is not None:
                return status
    except KeyboardInterrupt:  # the report is written whole or not at all: say what that means here
        kept = "; an earlier report there is kept" if os.path.exists(args.output) else ""
        err(f"stopped after {done} of {count(len(clips), 'clip')}: no report written{kept}")
        raise
    if failed:
        err(not_scored_line(args.paths, failed))
        return EXIT_SOME_FAILED
    return EXIT_OK


COMMAND = Command(
    name="score",
    help="score clips (files or folders) and write a per-frame and a per-clip CSV report (or one JSON file)",
    description=(
        "Score every frame of each clip and write REPORT (one row per frame) and "
        "REPORT_clips.csv (one row per clip: the clip score by the model card's rule, and its confidence: "
        "confident, uncertain or withheld), or, with -o REPORT.json, the same fields in one JSON file, with the "
        "inputs that could not be scored. A clip unlike the training clips has confidence withheld (its "
        "clip_score is no finding); one that decoded fewer frames than its header announces has complete no "
        "(false in JSON). Research software, not a medical device: a score is not a "
        "diagnosis. Exit status: 0 all inputs scored; 1 some input could not be scored (the others are in "
        "the report; when none could, no report is written); 2 usage error, the model cannot be loaded or "
        "the report cannot be written (no report); 130 interrupted."
    ),
    add_arguments=add_arguments,
    run=run,
)
