"""``lusviewer crossval-report``: compare recipes from their saved out-of-fold predictions."""

from __future__ import annotations

import argparse

from lusviewer.cli.common import EXIT_OK, EXIT_USAGE, Command, err


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="--out folders of `lusviewer crossval` runs (same data, -k, --seed and --repeats); "
        "each (folder, variant) is one recipe",
    )
    p.add_argument(
        "-o",
        "--out",
        default="crossval-report.md",
        help="the Markdown report, also printed (and a .csv of the point estimates beside it); "
        "default: crossval-report.md in the current folder",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="RECIPE",
        help="the recipe the others are compared with, as FOLDER:VARIANT (default: the first)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="patient resamples (default 1000)")


def run(args: argparse.Namespace) -> int:
    from lusviewer.io import display_path
    from lusviewer.training.cvreport import write_repeated_report

    if args.bootstrap < 100:
        err(f"error: --bootstrap {args.bootstrap}: use at least 100 resamples")
        return EXIT_USAGE
    try:
        path = write_repeated_report(args.dirs, args.out, reference=args.reference, reps=args.bootstrap)
    except ValueError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except OSError as exc:  # the report cannot be written there
        err(f"error: {args.out}: cannot write the report: {exc.strerror or exc}")
        return EXIT_USAGE
    print(path.read_text())
    err(f"wrote {display_path(path)} and {display_path(path.with_suffix('.csv'))}")
    return EXIT_OK


COMMAND = Command(
    name="crossval-report",
    help="compare recipes from saved cross-validation predictions: paired, with patient-bootstrap intervals",
    add_arguments=add_arguments,
    run=run,
)
