"""``lusviewer calibrate``: temperature scaling of a model from its recipe's cross-validation,
and (``--clip-rule``) the expected clip rule's thresholds fitted by prevalence on the same
out-of-fold predictions at that temperature."""

from __future__ import annotations

import argparse

from lusviewer.cli.common import EXIT_OK, EXIT_USAGE, Command, err
from lusviewer.wording import count


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cv", required=True, metavar="DIR", help="the --out folder of the recipe's `lusviewer crossval`")
    p.add_argument("--variant", default=None, help="the variant in DIR (default: the model's)")
    p.add_argument("--model", required=True, metavar="CARD", help="the model card (.json) to calibrate")
    p.add_argument(
        "--clip-rule",
        action="store_true",
        help="also fit the expected clip rule's thresholds (each score as common as the experts give it) on the "
        "out-of-fold clips at the fitted temperature; with --write-card the card's default clip rule becomes it",
    )
    p.add_argument(
        "--write-card",
        action="store_true",
        help="write the temperature (and, with --clip-rule, the clip rule) into the card's inference settings "
        "and its ECE into metrics.calibration (re-binds the card); without it, only print them",
    )


def run(args: argparse.Namespace) -> int:
    from lusviewer.model import ModelError, load_model
    from lusviewer.model.weights import record_in_card
    from lusviewer.training.calibrate_cv import calibrate, load_out_of_fold
    from lusviewer.training.cliprule import card_rule

    try:
        loaded = load_model(args.model)
        variant = args.variant or loaded.card.config.variant
        oof = load_out_of_fold(args.cv, variant)
    except (ValueError, ModelError, OSError) as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    r = calibrate(oof)
    note = (
        f"temperature scaling fitted on {count(int(r['frames']), 'out-of-fold frame')} of "
        f"{count(oof.clips, 'test clip')} "
        f"({oof.runs} fold runs of `{args.cv}`, variant {variant}; each frame's target its clip's score); "
        f"top-label ECE {r['ece_before']:.3f} before, {r['ece_after']:.3f} after (temperature fitted on the "
        "other half of the patients)"
    )
    print(f"T = {r['temperature']:.3f}; {note}")
    settings: dict[str, object] = {"temperature": r["temperature"], "calibration_check": note}
    if args.clip_rule:
        try:
            rule = card_rule(args.cv, variant, r["temperature"])
        except (ValueError, OSError) as exc:
            err(f"error: {exc}")
            return EXIT_USAGE
        print(f"clip rule: expected, thresholds {rule['thresholds']} ({rule['fitted']})")
        settings["clip_rule"] = {"rule": rule["rule"], "thresholds": rule["thresholds"]}
        settings["clip_rule_check"] = rule["fitted"]
    if args.write_card:
        record_in_card(loaded.card_path, "inference", settings)
        record_in_card(
            loaded.card_path,
            "metrics",
            {"calibration": {k: r[k] for k in ("temperature", "ece_before", "ece_after", "frames")}},
        )
        print(f"wrote the temperature{' and the clip rule' if args.clip_rule else ''} into {loaded.card_path}")
    return EXIT_OK


COMMAND = Command(
    name="calibrate",
    help="fit a model's temperature (and the expected clip rule's thresholds) on its recipe's out-of-fold "
    "predictions; ECE before and after",
    add_arguments=add_arguments,
    run=run,
)
