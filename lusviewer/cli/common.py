"""What the commands share: exit codes, the one-line error, a command's description,
and the checks of the data and the options the training commands make before any work."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def err(msg: str) -> None:
    print(f"lusviewer: {msg}", file=sys.stderr, flush=True)


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
    that are files, validation fractions outside (0, 1), zero epochs."""
    for name in folders:
        value = getattr(args, name, None)
        if value and Path(value).exists() and not Path(value).is_dir():
            return f"--{name.replace('_', '-')} {value}: is a file; expected a folder"
    vf = getattr(args, "val_fraction", None)
    if vf is not None and not 0 < vf < 1:
        return f"--val-fraction {vf}: must be between 0 and 1 (validation patients pick the best epoch)"
    if getattr(args, "cnn_epochs", 1) < 1:
        return "--cnn-epochs must be at least 1"
    return None
