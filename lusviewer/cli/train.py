"""``lusviewer train``: train a model (the CNN on frames, then, for ``cnn_lstm``, the LSTM on
frozen CNN features) and write its weights and model card."""

from __future__ import annotations

import argparse
from typing import Any

from lusviewer.cli.common import EXIT_OK, EXIT_USAGE, Command, check_training_paths, err, says_data_errors
from lusviewer.cli.options import add_data_args, add_training_args, run_options, variants


def default_name(variant: str) -> str:
    """The model's name when --name is not given: ``lusviewer-hybrid`` for the paper's hybrid
    (cnn_lstm, as always), else the variant's (``lusviewer-compact``): a compact model is not
    named a hybrid in its card, its file names and ``lusviewer score``'s ``model`` column."""
    return "lusviewer-hybrid" if variant == "cnn_lstm" else f"lusviewer-{variant.replace('_', '-')}"


def train_config(args: argparse.Namespace) -> Any:
    """The training recipe from the options of ``train`` or ``crossval`` (which has no
    --work-dir, --variant, --name, --model-version: their defaults)."""
    from lusviewer.training.data import data_options
    from lusviewer.training.train import TrainConfig

    return TrainConfig(
        **data_options(args),
        **run_options(args),
        out=args.out,
        work_dir=getattr(args, "work_dir", "runs/train"),
        variant=getattr(args, "variant", "cnn_lstm"),
        augment_padding=args.augment_padding,
        loss=args.loss,
        crop=args.crop,
        aux_weight=args.aux_weight,
        sord_alpha=args.sord_alpha,
        weight_decay=args.weight_decay,
        width=args.width,
        optimizer=args.optimizer,
        lr=args.lr if args.lr is not None else (2e-3 if args.optimizer == "adam" else 1e-3),
        early_stop=args.early_stop,
        e2e_epochs=args.end_to_end_epochs,
        e2e_minutes=args.end_to_end_minutes,
        e2e_lr=args.end_to_end_lr,
        cnn_epochs=args.cnn_epochs,
        cnn_minutes=args.cnn_minutes,
        lstm_epochs=args.lstm_epochs,
        lstm_minutes=args.lstm_minutes,
        init_densenet=args.init_densenet,
        pretrain_epochs=args.pretrain_epochs,
        pretrain_minutes=args.pretrain_minutes,
        data_name=args.data_name,
        data_licence=args.data_licence,
        citation=args.citation,
        name=getattr(args, "name", None) or default_name(getattr(args, "variant", "cnn_lstm")),
        version=getattr(args, "model_version", "1"),
    )


def add_arguments(t: argparse.ArgumentParser) -> None:
    add_data_args(t)
    t.add_argument("--out", default="runs/model", help="folder for the .safetensors + .json card (default runs/model)")
    t.add_argument("--work-dir", default="runs/train", help="checkpoints; rerun to resume (default runs/train)")
    t.add_argument(
        "--variant",
        default="cnn_lstm",
        choices=variants(),
        help="cnn_lstm (default) = the paper's hybrid; cnn = its CNN alone; densenet = its DenseNet-201 branch "
        "alone; compact = the small CNN outside the paper (the shipped model's, with --width 0.5)",
    )
    t.add_argument(
        "--name",
        default=None,
        help="the model's name in its card and file names (default: lusviewer-hybrid for cnn_lstm, else "
        "lusviewer-VARIANT, e.g. lusviewer-compact)",
    )
    t.add_argument("--model-version", default="1", help="the model's version in its card (default 1)")
    add_training_args(t)


@says_data_errors
def run(args: argparse.Namespace) -> int:
    from lusviewer.training.train import run_training

    problem = check_training_paths(args, "out", "work_dir", "cache_dir")
    if problem:
        err(f"error: {problem}")
        return EXIT_USAGE
    run_training(train_config(args))
    return EXIT_OK


COMMAND = Command(
    name="train",
    help="train a model: the CNN on frames, then (cnn_lstm, the default) the LSTM on frozen CNN features",
    description="Train a model and write its weights and model card to --out. Stage 1 trains the CNN on "
    "frames (each frame takes its clip's score unless --frame-labels), stage 2 (cnn_lstm only) the LSTM on "
    "frozen CNN features; the split is by patient. Checkpoints in --work-dir: rerun to resume. The "
    "shipped model's exact command is in docs/model.md.",
    add_arguments=add_arguments,
    run=run,
    resumable=True,
)
