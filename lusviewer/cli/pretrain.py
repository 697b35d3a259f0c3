"""``lusviewer pretrain``: self-supervised pretraining (SimSiam) of the DenseNet-201 branch."""

from __future__ import annotations

import argparse
from pathlib import Path

from lusviewer.cli.common import EXIT_OK, EXIT_USAGE, Command, check_training_paths, err, says_data_errors
from lusviewer.cli.options import add_data_args, add_option, add_options, run_options


def add_arguments(pt: argparse.ArgumentParser) -> None:
    add_data_args(pt)
    pt.add_argument("--out", required=True, help="the .safetensors to write; its card goes beside it")
    pt.add_argument("--work-dir", default="runs/pretrain", help="checkpoints; rerun to resume (default runs/pretrain)")
    pt.add_argument(
        "--extra", action="append", metavar="FOLDER", help="a folder of unlabelled clips to learn from too (repeat)"
    )
    add_options(pt, "--cache-dir", "--tiny", "--seed")
    add_option(pt, "--val-fraction", help_suffix=" (as in train)")
    add_options(pt, "--input-size", "--frames-per-clip")
    add_option(pt, "--batch-size", default=64, help="pairs of views per batch (default 64)")
    pt.add_argument(
        "--epochs", type=int, default=100, help="epoch cap; a larger one continues a finished run (default 100)"
    )
    pt.add_argument(
        "--minutes",
        type=float,
        default=60.0,
        help="wall-clock budget, minutes (the cosine decay follows it; default 60)",
    )
    pt.add_argument(
        "--lr", type=float, default=0.05, help="base learning rate, scaled by batch size / 256 (default 0.05)"
    )
    pt.add_argument("--no-probe", action="store_true", help="skip the linear probe at the end")
    add_options(pt, "--fp32", "--threads", "--device")


@says_data_errors
def run(args: argparse.Namespace) -> int:
    from lusviewer.training.data import data_options
    from lusviewer.training.pretrain import PretrainConfig, run_pretrain

    if not args.out.endswith(".safetensors"):
        err(f"error: --out {args.out}: expected a .safetensors path (the card goes beside it as .json)")
        return EXIT_USAGE
    cfg = PretrainConfig(
        **data_options(args),
        **run_options(args),
        out=args.out,
        work_dir=args.work_dir,
        extra=list(args.extra or []),
        epochs=args.epochs,
        minutes=args.minutes,
        lr=args.lr,
        probe=not args.no_probe,
    )
    problem = check_training_paths(args, "work_dir", "cache_dir")
    if problem or Path(args.out).is_dir():
        err(f"error: {problem or f'--out {args.out}: is a folder; expected a .safetensors file path'}")
        return EXIT_USAGE
    run_pretrain(cfg)
    return EXIT_OK


COMMAND = Command(
    name="pretrain",
    help="self-supervised pretraining of the DenseNet-201 branch on LUS frames (SimSiam), for --init-densenet",
    description="Learns the DenseNet-201 branch from unlabelled LUS frames (SimSiam): the frames of the "
    "training patients of the split that `lusviewer train` makes with the same --seed and --val-fraction "
    "(their labels unused), plus any --extra folders of clips. Writes OUT.safetensors (torchvision key "
    "names, for `lusviewer train --init-densenet OUT.safetensors`) and OUT.json (recipe, data, sha256, and "
    "a linear probe of the frozen features against a random initialisation on the validation patients).",
    add_arguments=add_arguments,
    run=run,
    resumable=True,
)
