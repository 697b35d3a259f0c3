"""``lusviewer calibrate``: temperature scaling of a model from its recipe's cross-validation."""

from __future__ import annotations

import argparse

from lusviewer.cli.common import EXIT_OK, EXIT_USAGE, Command, err


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cv", required=True, metavar="DIR", help="the --out folder of the recipe's `lusviewer crossval`")
    p.add_argument("--variant", default=None, help="the variant in DIR (default: the model's)")
    p.add_argument("--model", required=True, metavar="CARD", help="the model card (.json) to calibrate")
    p.add_argument("--write-card", action="store_true", help="write the temperature into the card (re-binds it)")


def run(args: argparse.Namespace) -> int:
    from lusviewer.model import ModelError, load_model
    from lusviewer.model.weights import record_in_card
    from lusviewer.training.calibrate_cv import calibrate, load_out_of_fold

    try:
        loaded = load_model(args.model)
        variant = args.variant or loaded.card.config.variant
        oof = load_out_of_fold(args.cv, variant)
    except (ValueError, ModelError, OSError) as exc:
        err(str(exc))
        return EXIT_USAGE
    r = calibrate(oof)
    note = (
        f"temperature scaling fitted on {int(r['frames'])} out-of-fold frames of {oof.clips} test clips "
        f"({oof.runs} fold runs of `{args.cv}`, variant {variant}; each frame's target its clip's score); "
        f"top-label ECE {r['ece_before']:.3f} before, {r['ece_after']:.3f} after (temperature fitted on the "
        "other half of the patients)"
    )
    print(f"T = {r['temperature']:.3f}; {note}")
    if args.write_card:
        record_in_card(loaded.card_path, "inference", {"temperature": r["temperature"], "calibration_check": note})
        record_in_card(
            loaded.card_path,
            "metrics",
            {"calibration": {k: r[k] for k in ("temperature", "ece_before", "ece_after", "frames")}},
        )
        print(f"wrote the temperature into {loaded.card_path}")
    return EXIT_OK


COMMAND = Command(
    name="calibrate",
    help="fit a model's temperature on its recipe's out-of-fold predictions; ECE before and after",
    add_arguments=add_arguments,
    run=run,
)
