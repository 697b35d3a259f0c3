"""Command line: ``lusviewer score|info|evaluate|crossval|crossval-report|calibrate|train|pretrain``,
one module per subcommand; :mod:`lusviewer.cli.main` holds the parser and :func:`run`."""

from lusviewer.cli.common import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE
from lusviewer.cli.info import model_summary
from lusviewer.cli.main import SUBCOMMANDS, build_parser, run
from lusviewer.cli.selftest import self_test

__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "SUBCOMMANDS",
    "build_parser",
    "model_summary",
    "run",
    "self_test",
]
