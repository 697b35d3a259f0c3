"""The ``lusviewer`` command line: the parser, and :func:`run`, which dispatches to
the desktop viewer, the self-test or one subcommand (one module per subcommand)."""

from __future__ import annotations

import argparse
import sys

from lusviewer import __version__
from lusviewer.cli import calibrate, crossval, crossval_report, evaluate, info, pretrain, score, train
from lusviewer.cli.common import EXIT_USAGE, Command, device_problem, err, warning_lines
from lusviewer.cli.selftest import self_test

#: In the order ``lusviewer --help`` lists them.
COMMANDS: dict[str, Command] = {
    m.COMMAND.name: m.COMMAND for m in (score, info, evaluate, crossval, crossval_report, calibrate, train, pretrain)
}
SUBCOMMANDS = tuple(COMMANDS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``only``, the options of that subcommand
    alone, none with ``only=""`` (the others keep their name and help, so that
    ``--version`` or ``score`` need not import what ``train``'s choices come from)."""
    p = argparse.ArgumentParser(
        prog="lusviewer",
        description="Lung-ultrasound severity scoring (0-3). Research software, not a medical device.",
    )
    p.add_argument("--version", action="version", version=f"lusviewer {__version__}")
    p.add_argument(
        "--self-test",
        action="store_true",
        help="load the shipped model, score the bundled sample clip, print one line (exit 0 = ok)",
    )
    sub = p.add_subparsers(dest="command")
    for name, command in COMMANDS.items():
        s = sub.add_parser(name, help=command.help, description=command.description)
        if only is None or name == only:
            command.add_arguments(s)
            s.set_defaults(func=command.run)
    return p


def threading_main() -> bool:
    """Signal handlers can only be set from the main thread (tests call ``run`` from others)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def run(argv: list[str]) -> int:
    """Run the command line ``argv``; its exit status. While it runs, every warning of
    the library or of Python is one ``lusviewer: warning:`` line on stderr (the desktop
    viewer shows its own)."""
    if not argv or (argv[0] not in SUBCOMMANDS and not argv[0].startswith("-")) or argv[0] == "--model":
        # `lusviewer` or `lusviewer CLIP [--model CARD]`: the desktop viewer.
        gui = argparse.ArgumentParser(prog="lusviewer", description="LUS Viewer (desktop app)")
        gui.add_argument("clip", nargs="?", default=None)
        gui.add_argument("--model", default=None)
        a = gui.parse_args(argv)
        from lusviewer.ui.app import run_gui

        return run_gui(a.clip, a.model)
    with warning_lines():
        return _run(argv)


def _run(argv: list[str]) -> int:
    if argv[:1] == ["--self-test"]:
        return self_test(argv[2] if argv[1:2] == ["--model"] and len(argv) > 2 else None)
    # argparse takes the first word that is no option for the subcommand (none of the
    # top-level options takes a value).
    parser = build_parser(only=next((a for a in argv if not a.startswith("-")), ""))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    problem = device_problem(args.device) if isinstance(getattr(args, "device", None), str) else None
    if problem:
        err(f"error: {problem}")
        return EXIT_USAGE
    import signal

    def terminated(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: temporary files removed, earlier reports kept

    previous = signal.signal(signal.SIGTERM, terminated) if threading_main() else None
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        resumable = COMMANDS[args.command].resumable
        print(
            "lusviewer: interrupted" + ("; rerun the same command to resume" if resumable else ""),
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # `lusviewer ... | head`: the reader left; files are written, say nothing more
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit does not raise again
        return 141  # as a process killed by SIGPIPE
    finally:
        if previous is not None:  # a caller's own handler (run() used as a library) is put back
            signal.signal(signal.SIGTERM, previous)
