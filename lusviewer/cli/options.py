"""Options that several commands take, declared once.

Choices come from the code that checks them (``RULES``, ``PRECISIONS``, ``VARIANTS``,
``PROTOCOLS``), imported when a command's parser is built, so that ``lusviewer
--version`` or ``--help`` never imports torch.
"""

from __future__ import annotations

import argparse
from typing import Any

DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:N"


def regex(text: str) -> str:
    """An option's regular expression, compiled once as the parser reads it: one that does
    not compile is a usage error now, not a traceback after the data were searched (or,
    where the layout does not use it, no error at all)."""
    import re

    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression ({exc})") from None
    return text


#: Options with the same meaning in several commands: flag -> add_argument's keywords
#: (``short``: the one-letter name before the flag).
_SHARED: dict[str, dict[str, Any]] = {
    "--model": {
        "default": None,
        "help": "model card .json or its .safetensors (default: $LUSVIEWER_MODEL, else the shipped model, "
        "lusviewer-compact)",
    },
    "--device": {"default": "auto", "help": DEVICE_HELP},
    "--batch-size": {"type": int, "default": 32, "help": "frames per batch (default 32)"},
    "--quiet": {"short": "-q", "action": "store_true", "help": "no progress bars"},
    # the run options of the training commands (train, crossval, pretrain)
    "--cache-dir": {"default": None, "help": "keep decoded frames here (.npy, per input size)"},
    "--tiny": {"action": "store_true", "help": "tiny architecture (smoke tests, not a model to use)"},
    "--seed": {
        "type": int,
        "default": 0,
        "help": "random seed of the patient split, frame sampling and initialisation (default 0)",
    },
    "--val-fraction": {
        "type": float,
        "default": 0.2,
        "help": "share of patients held out for validation, which pick the best epoch (default 0.2; crossval: "
        "taken from each fold's training side; 0 = train on every patient for the fixed --cnn-epochs, keeping "
        "the last epoch, as a model to ship after a cross-validation)",
    },
    "--input-size": {"type": int, "default": 128, "help": "frame size in pixels, a multiple of 16; default 128"},
    "--frames-per-clip": {"type": int, "default": 16, "help": "frames sampled per clip per epoch (default 16)"},
    "--fp32": {"action": "store_true", "help": "no bf16 autocast"},
    "--threads": {"type": int, "default": 0, "help": "torch CPU threads (0: default)"},
}


#: The run options of every training command (train, crossval, pretrain).
RUN_OPTIONS = (
    "--cache-dir", "--tiny", "--seed", "--val-fraction", "--input-size", "--frames-per-clip", "--batch-size",
    "--fp32", "--threads", "--device",
)  # fmt: skip


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The values of :data:`RUN_OPTIONS`, by the names of ``TrainConfig``'s and
    ``PretrainConfig``'s fields (``--fp32``: ``bf16``)."""
    values = {name: getattr(args, name) for name in (f[2:].replace("-", "_") for f in RUN_OPTIONS)}
    values["bf16"] = not values.pop("fp32")
    return values


def add_option(p: argparse.ArgumentParser, flag: str, *, help_suffix: str = "", **override: Any) -> None:
    """Declare the shared option ``flag`` on ``p``; ``override`` replaces its keywords
    (``help=None``: no help text), ``help_suffix`` is appended to its help."""
    spec = {**_SHARED[flag], **override}
    if help_suffix:
        spec["help"] += help_suffix
    short = spec.pop("short", None)
    p.add_argument(*([short] if short else []), flag, **spec)


def add_options(p: argparse.ArgumentParser, *flags: str) -> None:
    for flag in flags:
        add_option(p, flag)


def add_rule(p: argparse.ArgumentParser, help: str | None = None) -> None:
    from lusviewer.report import RULES

    p.add_argument("--rule", default="auto", choices=("auto", *RULES), help=help)


def add_precision(p: argparse.ArgumentParser) -> None:
    from lusviewer.inference.engine import PRECISIONS

    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (default): on CUDA bf16 (fp16 where the GPU lacks bf16); on a CPU bf16 where it has bf16 "
        "instructions and the model card records >= 99 %% frame-label agreement with fp32, else fp32",
    )


def add_folder_batching(p: argparse.ArgumentParser) -> None:
    """``score``'s options of the folder scorer (:mod:`lusviewer.inference.folder`)."""
    from lusviewer.inference.folder import CAPTURES

    p.add_argument(
        "--batch-clips",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the clips together: frames of several clips share each batch, decoded by a pool of "
        "processes (same results as clip by clip; faster on a GPU, not on a CPU). Default: on with CUDA "
        "and more than one clip, off on the CPU",
    )
    p.add_argument(
        "--decode-workers",
        type=int,
        default=0,
        metavar="N",
        help="--batch-clips: decoding processes (default 0: one per core, at most 16; one core left free with CUDA)",
    )
    p.add_argument(
        "--cnn-capture",
        default="auto",
        choices=CAPTURES,
        help="--batch-clips: how the CNN runs at its one batch shape: graph = a captured CUDA graph, compile = "
        "torch.compile(mode='reduce-overhead'), eager; auto = graph with CUDA, eager on the CPU; "
        "eager where capture fails",
    )


def add_exam_zones(p: argparse.ArgumentParser, help: str) -> None:
    from lusviewer.report import PROTOCOLS

    p.add_argument("--exam-zones", type=int, choices=sorted(PROTOCOLS), default=None, help=help)


def variants() -> tuple[str, ...]:
    """The model variants that training builds (``densenet``, ``cnn``, ``cnn_lstm``, ``compact``)."""
    from lusviewer.model.hybrid import VARIANTS

    return VARIANTS


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="COVID-BLUeS folder (severity.csv + videos/), a folder of clips with --labels, "
        "or ICLUS-style frame folders (frame names carry Score<N>)",
    )
    p.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "covid-blues", "csv", "iclus"],
        help="how --data is laid out (default auto: csv with --labels, else covid-blues where severity.csv is, "
        "else iclus)",
    )
    p.add_argument("--labels", default=None, help="CSV with columns clip, score (0-3; clip paths relative to --data)")
    p.add_argument("--group-column", default=None, help="column of --labels holding the patient id")
    p.add_argument(
        "--group-by",
        default=None,
        type=regex,
        metavar="REGEX",
        help="patient id from each clip's name (first group of REGEX); default: patient_<ID>",
    )
    p.add_argument(
        "--frame-labels", default=None, help="CSV clip, frame, score: per-frame labels (frames numbered from 0)"
    )


def add_training_args(t: argparse.ArgumentParser) -> None:
    """The options of ``train`` and ``crossval`` (``pretrain`` shares the run options)."""
    add_option(t, "--device")
    t.add_argument("--data-name", default=None, help="what the data is, for the model card")
    t.add_argument("--data-licence", default=None, help="the data's licence, for the model card")
    t.add_argument("--citation", default=None, help="how to cite the data, for the model card")
    add_options(t, "--cache-dir", "--tiny", "--seed", "--val-fraction", "--frames-per-clip")
    t.add_argument(
        "--augment-padding",
        default="zeros",
        choices=["zeros", "reflection", "border"],
        help="what fills the margins a shift or zoom-out uncovers (default zeros: black)",
    )
    from lusviewer.training.config import CROPS, LOSSES

    t.add_argument(
        "--loss",
        default="frame",
        choices=LOSSES,
        help="with per-clip labels: frame (default) = every frame takes its clip's score (cross-entropy); "
        "mil = a clip is scored by its worst frame (multiple-instance ordinal loss: no frame above "
        "the clip's score, at least one at it; stage 1 on whole clips' sampled frames, stage 2 on "
        "whole clips; best epochs by validation clip macro-F1; the end-to-end stage keeps the frame loss); "
        "sord = every frame takes its clip's score as ordinal soft labels (SORD); coral = an ordinal "
        "CORAL head (P(score >= k) with shared weights; the LSTM stage then uses the frame loss)",
    )
    t.add_argument(
        "--crop",
        default="none",
        choices=CROPS,
        help="what the model sees: none (default) = the whole frame resized; sector = the ultrasound sector "
        "only (found per clip on its first frames; outside it set to zero), recorded in the card",
    )
    t.add_argument(
        "--aux-weight",
        type=float,
        default=0.0,
        help="> 0: also train A-line and B-line heads on the experts' per-clip flags, their loss "
        "weighted so (COVID-BLUeS severity.csv; default 0: off; the shipped model: 0.5)",
    )
    t.add_argument(
        "--weight-decay", type=float, default=1e-4, help="stage 1 weight decay (AdamW: decoupled; default 1e-4)"
    )
    t.add_argument(
        "--width",
        type=float,
        default=1.0,
        help="multiplies the channels of the hybrid's classification paths or of the compact variant's "
        "blocks (default 1: the paper's / 32-64-128-192)",
    )
    t.add_argument(
        "--sord-alpha", type=float, default=1.0, help="--loss sord: soft label ~ exp(-alpha (k - y)^2) (default 1)"
    )
    add_option(t, "--batch-size", help="frames per stage-1 training step (default 32)")
    add_option(t, "--input-size", help_suffix=", the paper's; smaller is faster (the shipped model: 64)")
    t.add_argument(
        "--optimizer",
        default="adam",
        choices=["adam", "adamw"],
        help="stage 1: adam (default) = the paper's (Adam, eps 0.1, lr x0.5 after 5 epochs without a better "
        "validation macro-F1); adamw = AdamW with warm-up and cosine decay over --cnn-epochs or "
        "--cnn-minutes, whichever ends first",
    )
    t.add_argument("--lr", type=float, default=None, help="stage 1 learning rate (default: 0.002 adam, 0.001 adamw)")
    t.add_argument(
        "--early-stop",
        type=int,
        default=12,
        metavar="EPOCHS",
        help="stop stage 1 after this many epochs without a better validation macro-F1 (default 12)",
    )
    t.add_argument("--cnn-epochs", type=int, default=70, help="stage 1 epoch cap (default 70)")
    t.add_argument("--cnn-minutes", type=float, default=60.0, help="wall-clock budget of stage 1, minutes (default 60)")
    t.add_argument("--lstm-epochs", type=int, default=120, help="stage 2 (LSTM) epoch cap (default 120)")
    t.add_argument(
        "--lstm-minutes", type=float, default=10.0, help="wall-clock budget of stage 2, minutes (default 10)"
    )
    t.add_argument(
        "--end-to-end-epochs",
        type=int,
        default=0,
        help="cnn_lstm: after the two stages, fine-tune CNN and LSTM together for up to N epochs (default 0: off)",
    )
    t.add_argument(
        "--end-to-end-minutes",
        type=float,
        default=30.0,
        help="wall-clock budget of the end-to-end stage, minutes (default 30)",
    )
    t.add_argument(
        "--end-to-end-lr", type=float, default=1e-4, help="learning rate of the end-to-end stage (default 1e-4)"
    )
    add_options(t, "--fp32", "--threads")
    t.add_argument(
        "--init-densenet",
        default=None,
        metavar="PTH",
        help="initialise the DenseNet-201 branch from a torchvision state dict you supply "
        "(e.g. ImageNet densenet201-c1103571.pth; .pth read with weights_only, or .safetensors) "
        "or from `lusviewer pretrain` (refused where it saw a held-out patient's images; not for --variant "
        "compact, which has no DenseNet branch)",
    )
    t.add_argument(
        "--pretrain-epochs",
        type=int,
        default=0,
        metavar="N",
        help="first pretrain the DenseNet branch for N epochs (SimSiam, as `lusviewer pretrain`) on the frames of "
        "this run's training patients, crossval: of each fold's; 0 (default): off",
    )
    t.add_argument(
        "--pretrain-minutes",
        type=float,
        default=60.0,
        help="wall-clock budget of that pretraining, minutes (default 60)",
    )
