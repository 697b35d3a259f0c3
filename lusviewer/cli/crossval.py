"""``lusviewer crossval``: patient-disjoint k-fold cross-validation of model variants, optionally
repeated with other fold draws (``--repeats``)."""

from __future__ import annotations

import argparse

from lusviewer.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    Command,
    check_training_paths,
    err,
    number_list,
    says_data_errors,
)
from lusviewer.cli.options import add_data_args, add_training_args, variants
from lusviewer.cli.train import train_config


def add_arguments(cv: argparse.ArgumentParser) -> None:
    cv.add_argument(
        "--out",
        default="runs/crossval",
        help="folder for report.md, metrics.csv, PNGs, checkpoints; rerun to resume (default runs/crossval)",
    )
    cv.add_argument("-k", "--folds", type=int, default=5, help="number of patient-disjoint folds (default 5)")
    cv.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="N",
        help="repeat the k-fold N times with other fold draws (repeat r: seed + 1000 r; default 1); "
        "report.md then compares the variants from every out-of-fold clip with patient-bootstrap intervals",
    )
    from lusviewer.model.hybrid import PAPER_VARIANTS

    cv.add_argument(
        "--variants",
        default=",".join(PAPER_VARIANTS),
        help=f"comma-separated, of {', '.join(variants())} (default: the paper's three, {','.join(PAPER_VARIANTS)})",
    )
    cv.add_argument(
        "--run-folds",
        default=None,
        metavar="LIST",
        help="train only these folds (0-based, e.g. 0,1) in this process, to run folds in parallel on "
        "several GPUs or machines sharing --out; a run without it then writes the report",
    )
    add_data_args(cv)
    add_training_args(cv)


def _folds(args: argparse.Namespace) -> list[int] | None:
    """The folds of --run-folds; None, with the reason said, when they are no folds of this run."""
    try:
        return number_list("--run-folds", args.run_folds, noun="fold", example="0,1", size=args.folds)
    except ValueError as exc:
        err(f"error: {exc}")
        return None


@says_data_errors
def run(args: argparse.Namespace) -> int:
    from lusviewer.training.crossval import run_crossval

    chosen = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    bad = [v for v in chosen if v not in variants()]
    if bad:
        err(f"error: unknown variant(s) {bad}; choose from {', '.join(variants())}")
        return EXIT_USAGE
    only = None
    if args.run_folds is not None:
        only = _folds(args)
        if only is None:
            return EXIT_USAGE
    problem = check_training_paths(args, "out", "cache_dir")
    if problem:
        err(f"error: {problem}")
        return EXIT_USAGE
    if args.repeats < 1:
        err(f"error: --repeats {args.repeats}: expected 1 or more")
        return EXIT_USAGE
    report = run_crossval(train_config(args), k=args.folds, variants=chosen, only_folds=only, repeats=args.repeats)
    if report is None:
        print(
            f"{args.out}: folds {','.join(map(str, only or []))} done; for the report, run the same command "
            "without --run-folds once every fold is done"
        )
        return EXIT_OK
    print(report.read_text())
    return EXIT_OK


COMMAND = Command(
    name="crossval",
    help="patient-disjoint k-fold cross-validation of model variants (default: the paper's three); report.md",
    description="Train and test each variant on the same k patient-disjoint folds (stratified by each "
    "patient's worst score; validation patients for early stopping come from each fold's training side). "
    "Writes report.md (laid out like the paper's Table 2), metrics.csv, confusion matrices and every test "
    "clip's out-of-fold prediction; with --repeats, every test frame's probabilities too, for "
    "`lusviewer crossval-report` and `lusviewer calibrate`. Every fold checkpoints under --out: rerun to "
    "resume.",
    add_arguments=add_arguments,
    run=run,
    resumable=True,
)
