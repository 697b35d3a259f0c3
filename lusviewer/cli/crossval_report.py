"""``lusviewer crossval-report``: compare recipes from their saved out-of-fold predictions."""

from __future__ import annotations

import argparse

from lusviewer.cli.common import EXIT_OK, EXIT_USAGE, Command, err, number_list


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="--out folders of `lusviewer crossval` runs (same data, -k, --seed and --repeats); "
        "each (folder, variant) is one recipe; DIR@expected[:T|:nested] scores it by the expected clip rule "
        "with nested prevalence thresholds (frames at temperature T, or at one fitted per fold on the other folds)",
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
    p.add_argument(
        "--repeats-only",
        default=None,
        metavar="LIST",
        help="compare only these repeats (0-based, e.g. 0) of every recipe: a run that has finished "
        "some repeats against runs that have finished all",
    )
    p.add_argument(
        "--patients",
        default=None,
        metavar="LIST",
        help="compare only these patients' clips (comma-separated patient ids, e.g. another model's "
        "validation patients); clip rules are still fitted nested on every fold",
    )
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="patient resamples (default 1000)")


def run(args: argparse.Namespace) -> int:
    from lusviewer.io import display_path
    from lusviewer.training.cvreport import write_repeated_report

    if args.bootstrap < 100:
        err(f"error: --bootstrap {args.bootstrap}: use at least 100 resamples")
        return EXIT_USAGE
    repeats = None
    if args.repeats_only is not None:
        try:
            repeats = number_list("--repeats-only", args.repeats_only, noun="repeat", example="0 or 0,1")
        except ValueError as exc:
            err(f"error: {exc}")
            return EXIT_USAGE
    patients = None
    if args.patients is not None:
        patients = [p.strip() for p in args.patients.split(",") if p.strip()]
        if not patients:
            err(f"error: --patients {args.patients!r}: expected patient ids such as 2,6,17")
            return EXIT_USAGE
    try:
        path = write_repeated_report(
            args.dirs, args.out, reference=args.reference, reps=args.bootstrap, repeats=repeats, patients=patients
        )
    except (ValueError, KeyError, TypeError) as exc:  # a result.json damaged or of another program: named
        bad = _unreadable_result(args.dirs) if not isinstance(exc, ValueError) or _from_json(exc) else None
        err(f"error: {bad or exc}")
        return EXIT_USAGE
    except OSError as exc:  # the report cannot be written there
        err(f"error: {args.out}: cannot write the report: {exc.strerror or exc}")
        return EXIT_USAGE
    print(path.read_text())
    err(f"wrote {display_path(path)} and {display_path(path.with_suffix('.csv'))}")
    return EXIT_OK


def _from_json(exc: ValueError) -> bool:
    import json

    return isinstance(exc, json.JSONDecodeError | UnicodeDecodeError)


#: What the report reads of each fold's result.json, and of each of its clip rows.
_RESULT_KEYS = ("variant", "fold", "clips")
_CLIP_KEYS = ("clip", "group", "score", "pred", "risk")


def _unreadable_result(dirs: list[str]) -> str | None:
    """The first fold result under ``dirs`` that is no result the report can read, with
    why (None when each reads): the report itself stops at such a file with a bare JSON
    or key error that does not name it."""
    import json

    from lusviewer.io import display_path
    from lusviewer.training.cvreport import parse_spec
    from lusviewer.wording import count

    for d in dirs:
        try:
            root = parse_spec(d)[0]
        except ValueError:
            continue
        for f in sorted(root.glob("fold*/*/result.json")) + sorted(root.glob("rep*/fold*/*/result.json")):
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                return (
                    f"{display_path(f)}: not a fold result that can be read ({getattr(exc, 'strerror', None) or exc})"
                )
            if not isinstance(rec, dict) or not isinstance(rec.get("clips"), list):
                return f"{display_path(f)}: not a fold result of lusviewer crossval (no list of clips)"
            missing = [k for k in _RESULT_KEYS if k not in rec]
            rows = [c for c in rec["clips"] if not (isinstance(c, dict) and all(k in c for k in _CLIP_KEYS))]
            if missing or rows:
                what = (
                    f"no {', '.join(missing)}"
                    if missing
                    else f"{count(len(rows), 'clip row')} without all of {', '.join(_CLIP_KEYS)}"
                )
                return f"{display_path(f)}: not a fold result of lusviewer crossval ({what}); rerun that fold"
    return None


COMMAND = Command(
    name="crossval-report",
    help="compare recipes from saved cross-validation predictions: paired, with patient-bootstrap intervals",
    description="Compare recipes from the out-of-fold predictions that `lusviewer crossval` saved, without "
    "retraining: clip QWK, MAE, exact, within-one, balanced accuracy, macro-F1, clip AUCs, patient "
    "LUS-total Spearman (and A-/B-line AUCs), beside always-0, always-1 and a patient-majority oracle, with "
    "patient-bootstrap intervals and paired differences. Recipes tested on other folds are refused.",
    add_arguments=add_arguments,
    run=run,
)
