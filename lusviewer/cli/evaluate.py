"""``lusviewer evaluate``: score labelled clips with a model; metrics, report.md, confusion PNGs."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lusviewer.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    Command,
    data_error,
    data_errors,
    err,
    load_model_or_say,
    printable,
    quiet_opencv,
)
from lusviewer.cli.options import add_data_args, add_option, add_rule
from lusviewer.wording import count

if TYPE_CHECKING:
    from lusviewer.model import LoadedModel
    from lusviewer.training.data import LabelledClip


def add_arguments(e: argparse.ArgumentParser) -> None:
    add_data_args(e)
    add_option(e, "--model", help="model card .json (default: $LUSVIEWER_MODEL, else the shipped model)")
    e.add_argument(
        "-o",
        "--output",
        default="evaluation",
        help="folder for metrics.csv, report.md, PNGs (default: evaluation, in the current folder)",
    )
    add_option(e, "--device", help="auto (default: CUDA when present), cpu, cuda, cuda:N")
    add_option(e, "--batch-size")
    add_rule(e, help="clip score rule (default auto: the one the model card names, else persistent)")
    e.add_argument(
        "--card-val-patients",
        action="store_true",
        help="only the validation patients named in the model card (reproduces the card's numbers; a card "
        "trained on every patient, like the shipped one, names none)",
    )
    e.add_argument(
        "--baseline-score",
        type=int,
        choices=[0, 1, 2, 3],
        default=None,
        help="compare with always answering this score (default: the majority score of the model's "
        "training clips, from its card; for a card without it, such as the shipped one, the most common score of "
        "the evaluated clips, which is chosen with their labels and so favours the baseline; the report says which)",
    )
    e.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="resamples of the patients for 95%% intervals (default 2000; 0: none)",
    )
    add_option(e, "--quiet")


def _cv_key(metrics: dict[str, object]) -> str:
    """Where a card keeps its recipe's cross-validation: ``metrics.repeated_cv`` (or an older
    ``metrics.crossval``), or that it has none."""
    for key in ("repeated_cv", "crossval"):
        if key in metrics:
            return f"metrics.{key}"
    return "where it has one"


def _card_val_patients(loaded: LoadedModel, clips: list[LabelledClip]) -> list[LabelledClip] | None:
    """The clips of the validation patients the card names; None, with the reason said, when none."""
    split = loaded.card.training.get("split", {})
    val = set(split.get("val_patients", []))
    if not val and split.get("train_patients"):
        err(
            "error: the model was trained on every patient of its data (no validation patients): its expected "
            "performance is its recipe's cross-validation, which its card reports "
            f"({_cv_key(loaded.card.metrics)}; `lusviewer info`); evaluate it on other data"
        )
        return None
    if not val:
        err("error: the model card names no validation patients")
        return None
    clips = [c for c in clips if c.group in val]
    if not clips:
        err(
            "error: no clip of this data belongs to the card's validation patients "
            f"({', '.join(sorted(val)[:8])}{'…' if len(val) > 8 else ''}): is it the same data, "
            "with the same patient rule (--group-by / --group-column) as in training?"
        )
        return None
    return clips


def _baseline(args: argparse.Namespace, loaded: LoadedModel, clips: list[LabelledClip]) -> tuple[int, str]:
    """The score of the always-the-same-answer baseline, and where it comes from."""
    from collections import Counter

    if args.baseline_score is not None:
        return args.baseline_score, "given with --baseline-score"
    card_major = loaded.card.metrics.get("baselines", {}).get("majority_class")
    if card_major is not None:
        return int(card_major), "the most common score of the model's training clips, from its card"
    baseline = Counter(c.score for c in clips).most_common(1)[0][0] if clips else 0
    return baseline, "the most common score of the evaluated clips"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lusviewer.resources import default_model_path
    from lusviewer.training.data import load_dataset_with
    from lusviewer.training.evaluate import evaluate_model, write_eval_report

    if args.batch_size < 1:
        err(f"error: --batch-size {args.batch_size}: must be at least 1")
        return EXIT_USAGE
    if args.bootstrap < 0 or 0 < args.bootstrap < 100:
        err(f"error: --bootstrap {args.bootstrap}: use 0 (no intervals) or at least 100 resamples")
        return EXIT_USAGE
    loaded = load_model_or_say(args.model or str(default_model_path()))
    if loaded is None:
        return EXIT_USAGE
    if Path(args.output).exists() and not Path(args.output).is_dir():
        err(f"error: -o {args.output}: is a file; expected a folder for the report")
        return EXIT_USAGE
    try:
        clips = load_dataset_with(args)
    except data_errors() as exc:
        err(f"error: cannot read the data: {data_error(exc).removeprefix('error: ')}")
        return EXIT_USAGE
    if args.card_val_patients:
        kept = _card_val_patients(loaded, clips)
        if kept is None:
            return EXIT_USAGE
        clips = kept
    seen = set(loaded.card.training.get("split", {}).get("train_patients", []))
    trained_on = [c for c in clips if c.group in seen]
    if trained_on:  # their scores measure fitting, not generalisation
        err(
            f"warning: {len(trained_on)} of the {count(len(clips), 'clip')} belong to the model's own training "
            f"patients (from its card: {count(len({c.group for c in trained_on}), 'patient')}); their metrics are "
            "no test. "
            "--card-val-patients keeps only the held-out ones."
        )
    baseline, source = _baseline(args, loaded, clips)
    bar = tqdm(total=len(clips), unit="clip", disable=args.quiet, file=sys.stderr)

    def on_clip(i: int, n: int, path: str) -> None:
        bar.update(1 if i else 0)
        bar.set_description(printable(Path(path).name)[:30])

    with quiet_opencv():
        result = evaluate_model(
            loaded,
            clips,
            device=args.device,
            batch_size=args.batch_size,
            rule=args.rule,
            on_clip=on_clip,
            baseline_score=baseline,
            baseline_source=source,
            bootstrap_reps=args.bootstrap,
        )
    bar.update(1)
    bar.close()
    report = write_eval_report(result, args.output, command=shlex.join(["lusviewer", *sys.argv[1:]]))
    for failure in result.failed:
        err(f"error: {failure}")
    print(report.read_text())
    return EXIT_SOME_FAILED if result.failed else EXIT_OK


COMMAND = Command(
    name="evaluate",
    help="score labelled clips with a model; metrics, report.md, confusion PNGs",
    description="Score labelled clips through the real engine and compare with the labels, frame and clip "
    "level, with 95 % intervals from resampling patients and a baseline that always answers one score; "
    "clip AUCs, patient-level agreement, and the clips flagged as unlike the model's training clips. "
    "Warns when clips belong to the model's own training patients (the shipped model was trained on every "
    "COVID-BLUeS development patient: its numbers on them are not held-out numbers).",
    add_arguments=add_arguments,
    run=run,
)
