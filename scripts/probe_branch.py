"""Linear probe of any DenseNet-201 branch, against the same branch at a random start.

What do a branch's frozen features know about severity? The same probe that `lusviewer
pretrain` writes into its card, for any starting point a training run could use:

    # the branch of a trained model (its card's split must be the probe's split)
    python scripts/probe_branch.py --data ../shared/data/covid-blues --model models/lusviewer-hybrid.json
    # a --init-densenet file: `lusviewer pretrain` output, or torchvision's ImageNet .pth
    python scripts/probe_branch.py --data ../shared/data/covid-blues --weights FILE --input-size 64

The probe fits on the training patients of the split `lusviewer train` makes with the
same --seed and --val-fraction and scores the held-out patients; it refuses a model or
pretraining that saw those patients. Prints the report as JSON (-o to keep it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from lusviewer.model.hybrid import DenseNetBranch, HybridModel, ModelConfig
from lusviewer.training.config import PretrainConfig
from lusviewer.training.data import cached_frames, load_dataset, split_by_group
from lusviewer.training.pretrain import check_held_out
from lusviewer.training.probe import run_probe
from lusviewer.training.simsiam import Encoder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="COVID-BLUeS folder (or any layout lusviewer train reads)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a model card (.json): probe its DenseNet branch")
    src.add_argument("--weights", help="a --init-densenet file: probe the branch it initialises")
    ap.add_argument("--input-size", type=int, default=None, help="with --weights (default 128); a card says its own")
    ap.add_argument("--tiny", action="store_true", help="with --weights: the tiny test architecture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--frames-per-clip", type=int, default=12, help="evenly spaced frames probed per clip")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--fp32", action="store_true")
    ap.add_argument("-o", "--out", default=None, help="write the report here (JSON)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    clips = load_dataset(a.data)
    train, val = split_by_group(clips, val_fraction=a.val_fraction, seed=a.seed)
    held_out = {c.group for c in val}
    if a.model:
        from lusviewer.model import load_model

        card = json.loads(Path(a.model).read_text())
        trained_on = set(card.get("training", {}).get("split", {}).get("train_patients", []))
        if trained_on & held_out:
            print(
                f"{a.model} was trained on {len(trained_on & held_out)} of the probe's held-out patients",
                file=sys.stderr,
            )
            return 2
        loaded = load_model(a.model)
        branch, mcfg = loaded.model.cnn.densenet, loaded.card.config
    else:
        base = ModelConfig.tiny("densenet") if a.tiny else ModelConfig(variant="densenet")
        mcfg = replace(base, input_size=a.input_size or (32 if a.tiny else 128))
        try:
            check_held_out(a.weights, a.data, held_out, "the probe")
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        from lusviewer.model.pretrained import init_densenet_from

        model = HybridModel(mcfg)
        init_densenet_from(model, a.weights)
        branch = model.cnn.densenet
    torch.manual_seed(a.seed)
    random_init = Encoder(DenseNetBranch(replace(mcfg, variant="densenet")))
    cfg = PretrainConfig(data=a.data, out="unused.safetensors", val_frames_per_clip=a.frames_per_clip, bf16=not a.fp32)
    frames = {c.path: cached_frames(c.path, mcfg.input_size, a.cache_dir) for c in clips}
    encoder = Encoder(branch).float()
    encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    report = {
        "probed": a.model or a.weights,
        "input_size": mcfg.input_size,
        "split": {"seed": a.seed, "val_fraction": a.val_fraction, "held_out_patients": sorted(held_out)},
        **run_probe(encoder, random_init, train, val, frames, cfg),
    }
    text = json.dumps(report, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
