"""What the commands share: exit codes, the one-line error, a command's description,
and the checks of the data and the options the training commands make before any work."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lusviewer.model import LoadedModel

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and help in ``lusviewer --help``, its options, what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None
    #: Interrupted, it says "rerun the same command to resume" (it keeps checkpoints).
    resumable: bool = False


def printable(text: str) -> str:
    """``text`` as one printable line (newlines, ANSI escapes, bytes that are not UTF-8
    backslash-escaped, as :func:`lusviewer.io.display_path` does for names)."""
    if text.isprintable():
        return text
    from lusviewer.io import display_path

    return display_path(text)


def err(msg: str) -> None:
    """One line ``lusviewer: <msg>`` on stderr; whatever ``msg`` holds (a file name with a
    newline or an ANSI escape), it stays one printable line."""
    print(f"lusviewer: {printable(msg)}", file=sys.stderr, flush=True)


def not_scored_line(given: list[str], failed: list[str]) -> str:
    """The closing line of a run where ``failed`` could not be scored: each counted as what
    it is. A path given on the command line is an "input"; one found in a folder given is a
    "file" (or "folder": a subfolder that cannot be read, a folder of frame images), so that
    three clips failing in one folder given are not "3 inputs"."""
    from lusviewer.wording import count

    named = set(given)
    inputs = sum(p in named for p in failed)
    found = [p for p in failed if p not in named]
    folders = sum(Path(p).is_dir() for p in found)
    parts = [count(inputs, "input")] if inputs else []
    inside = [count(n, noun) for n, noun in ((len(found) - folders, "file"), (folders, "folder")) if n]
    if inside:
        parts.append(" and ".join(inside) + " in the folders given")
    return f"{' and '.join(parts)} could not be scored (see above); the report holds the others"


#: What ``--device`` takes.
_DEVICE = re.compile(r"auto|cpu|cuda(?::([0-9]+))?")


def device_problem(device: str) -> str | None:
    """Why ``--device`` cannot be used here (None when it can); torch is imported only
    for ``cuda``."""
    m = _DEVICE.fullmatch(device)
    if not m:
        return f"--device {device}: not a device this tool runs on; expected auto, cpu, cuda or cuda:N"
    if device.startswith("cuda"):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            return f"--device {device}: no CUDA device is available here; use --device cpu (or auto)"
        if m.group(1) is not None and int(m.group(1)) >= n:
            return f"--device {device}: there is no such CUDA device here (cuda:0 to cuda:{n - 1})"
    return None


@dataclass
class _Said:
    """What the warning handler said during the clip being scored."""

    lines: set[str] = field(default_factory=set)
    incomplete: bool = False


class WarningLines(logging.Handler):
    """The CLI's handler of logger ``lusviewer``: each record is one line
    ``lusviewer: warning: <message>`` on stderr (escaped: one printable line).

    Records of ``lusviewer.model.weights`` are not printed: they come back in
    ``LoadedModel.warnings``, which the commands print (:func:`say_model_warnings`).
    Within one clip (:meth:`begin_clip`), a message is said once, and so is the clip's
    being incomplete (a reader may find it at open and again while reading)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said = _Said()

    def begin_clip(self) -> None:
        self.said = _Said()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "lusviewer.model.weights" or record.name.startswith("lusviewer.model.weights."):
            return
        try:
            msg = " ".join(record.getMessage().split())
        except Exception:  # a malformed record must not end the run
            msg = str(record.msg)
        incomplete = "incomplete" in msg
        if msg in self.said.lines or (incomplete and self.said.incomplete):
            return
        self.said.lines.add(msg)
        self.said.incomplete |= incomplete
        level = "error" if record.levelno >= logging.ERROR else "warning"
        err(f"{level}: {msg}")


@contextlib.contextmanager
def warning_lines() -> Iterator[WarningLines]:
    """While a command runs: the library's log records (logger ``lusviewer``) and Python
    warnings (pydicom's, torch's) are each one prefixed line on stderr, nothing is
    printed unprefixed; put back as they were afterwards (``run`` is also a library call)."""
    handler = WarningLines()
    logger = logging.getLogger("lusviewer")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False

    def show(message: Warning | str, category: type[Warning], *_args: object, **_kw: object) -> None:
        text = " ".join(str(message).split())
        err(f"warning: {text if len(text) <= 200 else text[:197] + '...'}")

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show  # type: ignore[assignment]
            yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def current_warning_lines() -> WarningLines | None:
    """The handler :func:`warning_lines` attached, if a command is running."""
    return next((h for h in logging.getLogger("lusviewer").handlers if isinstance(h, WarningLines)), None)


#: What ``load_model`` may raise for a card that is not a card (JSON ``NaN`` where a text
#: belongs, nesting too deep to parse) besides ModelError: said as one line too.
CARD_FAILURES: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def load_model_or_say(path: str) -> LoadedModel | None:
    """The model at ``path`` (card or weights, hash verified), its warnings said; None,
    with one line saying why, when it cannot be loaded."""
    from lusviewer.io import display_path
    from lusviewer.model import ModelError, load_model

    try:
        loaded = load_model(path)
    except ModelError as exc:
        err(f"error: cannot load the model: {exc}")
        return None
    except CARD_FAILURES as exc:
        err(f"error: cannot load the model: {display_path(path)}: not a valid model card ({type(exc).__name__}: {exc})")
        return None
    say_model_warnings(loaded)
    return loaded


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own log lines (``[ERROR:0@1.2] global cap_ffmpeg_impl.hpp ...``) off while
    clips are read: the readers say each problem as one line of their own."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def say_model_warnings(loaded: object) -> None:
    """Each of ``LoadedModel.warnings`` (a legacy card whose settings are not bound to
    its weights) as one ``lusviewer: warning:`` line."""
    for w in getattr(loaded, "warnings", ()):
        err(f"warning: {w}")


def data_error(exc: BaseException) -> str:
    """One line for a researcher: what is wrong with the data or the options, no traceback."""
    from lusviewer.io import ClipError

    if isinstance(exc, ClipError):
        return f"error: cannot read {exc}; fix or remove that clip from the labels"
    if isinstance(exc, OSError) and exc.filename:
        return f"error: {exc.filename}: {exc.strerror or exc}"
    return f"error: {exc}"


def data_errors() -> tuple[type[BaseException], ...]:
    """Failures of the data or options that the training commands report in one line
    (anything else is a bug, and keeps its traceback)."""
    from lusviewer.io import ClipError

    return (ValueError, ClipError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def says_data_errors(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A training command whose failures of the data or the options (:func:`data_errors`)
    are said in one line (exit 2); anything else keeps its traceback."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except data_errors() as exc:
            err(data_error(exc))
            return EXIT_USAGE

    return wrapped


def check_training_paths(args: argparse.Namespace, *folders: str) -> str | None:
    """Options the training commands would otherwise fail on after the work: folders
    that are files, validation fractions outside (0, 1) (0 allowed for train and crossval:
    no validation), zero epochs."""
    for name in folders:
        value = getattr(args, name, None)
        if value and Path(value).exists() and not Path(value).is_dir():
            return f"--{name.replace('_', '-')} {value}: is a file; expected a folder"
    vf = getattr(args, "val_fraction", None)
    no_validation = args.command in ("train", "crossval") and vf == 0  # fixed epochs, the last kept
    if vf is not None and not 0 < vf < 1 and not no_validation:
        return f"--val-fraction {vf:g}: must be between 0 and 1 (validation patients pick the best epoch)"
    if getattr(args, "cnn_epochs", 1) < 1:
        return "--cnn-epochs must be at least 1"
    for name, least, inclusive in _LEAST:
        value = getattr(args, name, None)
        if value is None or isinstance(value, bool):
            continue
        if not (value >= least if inclusive else value > least):  # NaN fails too
            flag = "-k" if name == "folds" else f"--{name.replace('_', '-')}"
            return f"{flag} {value}: must be {'at least' if inclusive else 'above'} {least:g}"
    if getattr(args, "lstm_epochs", 1) < 1 and "cnn_lstm" in _variants(args):
        return "--lstm-epochs must be at least 1 for cnn_lstm (its second stage trains the LSTM)"
    return None


#: The least each numeric option of the training commands may be, and whether that least
#: itself is allowed: below it a run failed late (a traceback, or after the hours of stage 1)
#: or trained nothing and wrote the model as trained (--batch-size -4).
_LEAST: tuple[tuple[str, float, bool], ...] = (
    ("batch_size", 1, True), ("frames_per_clip", 1, True), ("input_size", 16, True), ("early_stop", 1, True),
    ("threads", 0, True), ("epochs", 1, True), ("folds", 2, True), ("lstm_epochs", 0, True),
    ("end_to_end_epochs", 0, True), ("pretrain_epochs", 0, True), ("aux_weight", 0, True), ("weight_decay", 0, True),
    ("width", 0, False), ("sord_alpha", 0, False), ("lr", 0, False), ("end_to_end_lr", 0, False),
    ("cnn_minutes", 0, False), ("lstm_minutes", 0, False), ("end_to_end_minutes", 0, False),
    ("pretrain_minutes", 0, False), ("minutes", 0, False),
)  # fmt: skip


def _variants(args: argparse.Namespace) -> set[str]:
    """The variants a training command will train (train: --variant; crossval: --variants)."""
    one = getattr(args, "variant", None)
    many = getattr(args, "variants", None)
    return {one} if isinstance(one, str) else {v.strip() for v in many.split(",")} if isinstance(many, str) else set()


def number_list(option: str, text: str, *, noun: str, example: str, size: int | None = None) -> list[int]:
    """The numbers of a comma list option (``--run-folds 0,2``, ``--repeats-only 0``), sorted,
    each once; empty items (``0,,1``, a trailing comma) are ignored. :class:`ValueError`, one
    line naming the option, what was given and what is wrong, for no number, an item that is
    not a whole number, or one below 0 or (with ``size``) not below ``size``."""
    given = f"{option} {text!r}"
    expected = f"expected {noun} numbers such as {example}"
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{given}: no {noun} number; {expected}")
    numbers = set()
    for item in items:
        if not re.fullmatch(r"[+-]?[0-9]+", item):
            raise ValueError(f"{given}: {item!r} is not a whole number; {expected}")
        numbers.add(int(item))
    span = f"0..{size - 1}" if size is not None else "from 0"
    outside = [n for n in sorted(numbers) if n < 0 or (size is not None and n >= size)]
    if outside:
        raise ValueError(f"{given}: there is no {noun} {outside[0]}: {noun}s are numbered {span}")
    return sorted(numbers)
