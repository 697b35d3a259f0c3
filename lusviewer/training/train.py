"""Two-stage training (the paper's recipe): the CNN on frames, then the LSTM on
frozen CNN features of consecutive frames, optionally both end to end. Patient-disjoint
validation.

Each frame takes its clip's score (COVID-BLUeS scores clips, not frames). The stages
are :mod:`lusviewer.training.stages`; this module checks a run's settings and work
dir, and runs the stages and writes the model card (:func:`run_training`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lusviewer.model.hybrid import HybridModel
from lusviewer.model.weights import save_model
from lusviewer.training.card import build_card
from lusviewer.training.config import CROPS, LOSSES, TrainConfig, model_config
from lusviewer.training.data import (
    LabelledClip,
    cached_frames,
    dataset_fingerprint,
    load_dataset_with,
    split_by_group,
    split_warnings,
)
from lusviewer.training.loop import RunState, dist_info, init_distributed, log
from lusviewer.training.pretrain import check_held_out, pretrain_for
from lusviewer.training.stages import StageRun, train_cnn, train_end_to_end, train_lstm
from lusviewer.training.validation import baselines, clip_metrics, cnn_features, evaluate_sequence
from lusviewer.wording import count

__all__ = [
    "RECIPE_KEYS",
    "TrainConfig",
    "check_init_options",
    "check_loss",
    "check_output_card",
    "check_recipe",
    "initial_densenet",
    "model_config",
    "run_training",
]


def check_loss(cfg: TrainConfig, clips: Sequence[LabelledClip]) -> None:
    """Refuse ``--loss`` settings that cannot do what they say."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose one of {', '.join(LOSSES)}")
    if cfg.crop not in CROPS:
        raise ValueError(f"unknown crop {cfg.crop!r}; choose one of {', '.join(CROPS)}")
    if not cfg.aux_weight >= 0:
        raise ValueError(f"--aux-weight {cfg.aux_weight}: expected 0 or more")
    if cfg.aux_weight > 0 and not any(c.findings is not None for c in clips):
        raise ValueError(
            "--aux-weight needs the experts' A-line / B-line flags (COVID-BLUeS severity.csv has them); "
            "this data has none"
        )
    if cfg.loss != "mil":
        return
    if any(c.frame_scores is not None for c in clips):
        raise ValueError("--loss mil is for per-clip labels; this data has per-frame labels: use --loss frame")
    if cfg.e2e_epochs > 0 and cfg.variant == "cnn_lstm":
        raise ValueError("the end-to-end stage trains with the frame loss; it cannot follow --loss mil")


#: Options a work dir's run was made with that a resume must share (a state written
#: before an option existed used its default, given here).
RECIPE_KEYS = {
    "seed": None,
    "loss": "frame",
    "pretrain_epochs": 0,
    "init_densenet": None,
    "val_fraction": 0.2,
    "tiny": False,
    "variant": "cnn_lstm",
    "input_size": 128,
    "augment_padding": "zeros",
    "crop": "none",
    "aux_weight": 0.0,
    "sord_alpha": 1.0,
    "width": 1.0,
}


def check_recipe(cfg: TrainConfig, run: RunState, clips: Sequence[LabelledClip] | None = None) -> None:
    """A work dir resumes only the run it holds: the same recipe (:data:`RECIPE_KEYS`)
    and, with ``clips``, the same data (clips, scores, patients: :func:`dataset_fingerprint`),
    which is then recorded. Anything else would mix two runs, or call patients held out
    that the reused stages trained on."""
    old = run.data.get("config")
    if old:
        for key, default in RECIPE_KEYS.items():
            before = old.get(key, default)
            if key == "input_size" and cfg.tiny:
                continue  # the tiny architecture has its own size
            if before != getattr(cfg, key):
                raise SystemExit(f"{run.path.parent}: holds a run with {key} {before!r}; use a new work dir")
    if clips is None:
        return
    fingerprint = dataset_fingerprint(clips, cfg.data)
    before = run.data.get("data_fingerprint")
    if before is not None and before != fingerprint:
        raise SystemExit(
            f"{run.path.parent}: holds a run on other data (other clips, scores, patients or frame labels); "
            "use a new work dir"
        )
    run.data["data_fingerprint"] = fingerprint


def check_output_card(cfg: TrainConfig) -> None:
    """Never replace the shipped model by accident (a run from a checkout with
    ``--out models``); say so when another earlier card will be replaced."""
    from lusviewer.resources import DEFAULT_MODEL_CARD, resource_path

    target = (Path(cfg.out) / f"{cfg.name}.json").resolve()
    if target == resource_path("models", DEFAULT_MODEL_CARD).resolve():
        raise ValueError(
            f"--out {cfg.out} with --name {cfg.name} would replace the shipped model ({target}); "
            "choose another --out or --name"
        )
    if target.exists():
        log(f"note: {target} exists and will be replaced when this run ends")


def check_init_options(cfg: TrainConfig) -> None:
    """Refuse, before any decoding, initialisation options that cannot work together."""
    if cfg.pretrain_epochs > 0 and cfg.init_densenet:
        raise ValueError("--pretrain-epochs and --init-densenet both set the DenseNet branch: choose one")
    if cfg.val_fraction <= 0 and (cfg.pretrain_epochs > 0 or (cfg.e2e_epochs > 0 and cfg.variant == "cnn_lstm")):
        raise ValueError(
            "--val-fraction 0 (no validation patients) cannot go with --pretrain-epochs or --end-to-end-epochs, "
            "which pick their result on validation patients"
        )
    if cfg.pretrain_epochs > 0 and dist_info()[1] > 1:
        raise ValueError(
            "--pretrain-epochs under torchrun: pretrain first with `lusviewer pretrain` (same --seed and "
            "--val-fraction), then pass its output as --init-densenet"
        )


def initial_densenet(
    cfg: TrainConfig,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    work: Path,
    *,
    what: str,
    held_out: Sequence[LabelledClip] = (),
) -> str | None:
    """The weights file the DenseNet branch starts from: ``--init-densenet``, checked
    not to have been pretrained on ``val`` or ``held_out`` patients, or with
    ``--pretrain-epochs`` a pretraining on ``train`` into ``work``; None: from scratch."""
    check_init_options(cfg)
    path = str(pretrain_for(cfg, train, val, frames, work)) if cfg.pretrain_epochs > 0 else cfg.init_densenet
    if path:
        check_held_out(path, cfg.data, {c.group for c in [*val, *held_out]}, what)
    return path


def _initialise(cfg: TrainConfig, model: HybridModel, init: str | None) -> str:
    """Load the DenseNet branch's starting weights into ``model``; what the card says of them."""
    if not init:
        return "from scratch (no ImageNet weights)"
    from lusviewer.model.pretrained import init_densenet_from
    from lusviewer.model.weights import sha256_file

    n = init_densenet_from(model, init)
    how = ", pretrained here on the training patients' frames (SimSiam)" if cfg.pretrain_epochs > 0 else ""
    log(f"initialised the DenseNet branch from {init} ({n} tensors)")
    torch.manual_seed(cfg.seed)  # the same stage 1 whether pretraining ran now or is reused
    return (
        f"DenseNet-201 branch from {Path(init).name}{how} "
        f"(sha256 {sha256_file(init)}, {n} tensors); the rest from scratch"
    )


def _after_stage_1(r: StageRun, clips: Sequence[LabelledClip]) -> dict[str, Any]:
    """Stages 2 and 3 where the variant has them, and the validation metrics of the
    CNN (and CNN+LSTM; of both before and after stage 3 where it changed them)."""
    cfg, model, val, frames = r.cfg, r.model, r.val, r.frames
    metrics: dict[str, Any] = {}
    if not val:  # trained on every patient: nothing to validate on
        if model.sequence is not None:
            _, feats = cnn_features(model, clips, frames, cfg.bf16)
            train_lstm(r, feats)
        return metrics
    needed = clips if model.sequence is not None else val  # without stage 2, only the validation needs them
    log(
        "CNN on every frame of every clip (features for stage 2, full validation)"
        if model.sequence is not None
        else "CNN on every frame of every validation clip"
    )
    t0 = time.time()
    probs, feats = cnn_features(model, needed, frames, cfg.bf16)
    log(f"  {sum(len(v) for v in feats.values())} frames in {time.time() - t0:.0f} s")
    metrics["cnn"] = clip_metrics(val, lambda c: probs[c.path])
    if model.sequence is not None:
        train_lstm(r, feats)
        metrics["cnn_lstm"] = evaluate_sequence(model.sequence, val, feats)
        if cfg.e2e_epochs > 0:
            e2e = train_end_to_end(r)
            if e2e.get("epoch", 0) > 0:  # the fine-tuned CNN replaces the two-stage one
                metrics["two_stage"] = {"cnn": metrics["cnn"], "cnn_lstm": metrics["cnn_lstm"]}
                val_probs, val_feats = cnn_features(model, val, frames, cfg.bf16)
                metrics["cnn"] = clip_metrics(val, lambda c: val_probs[c.path])
                metrics["cnn_lstm"] = evaluate_sequence(model.sequence, val, val_feats)
    return metrics


def run_training(cfg: TrainConfig) -> Path:
    """Both stages end to end; writes ``<out>/<name>.safetensors`` + ``.json``.

    Under ``torchrun --nproc_per_node N`` stage 1 runs data-parallel on N processes
    (DistributedDataParallel: NCCL on GPUs, gloo on CPUs); rank 0 validates, keeps the
    checkpoints, then runs stage 2 and writes the card alone.
    """
    device = init_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    run = RunState(work)
    check_init_options(cfg)
    check_output_card(cfg)
    clips = load_dataset_with(cfg)
    check_recipe(cfg, run, clips)
    check_loss(cfg, clips)
    run.data["config"] = asdict(cfg)
    run.save()
    train, val = split_by_group(clips, val_fraction=cfg.val_fraction, seed=cfg.seed)
    for note in split_warnings(train, val):
        log(f"warning: {note}")
    log(
        f"{count(len(clips), 'clip')}: train {count(len(train), 'clip')} / "
        f"{count(len({c.group for c in train}), 'patient')}, "
        f"val {count(len(val), 'clip')} / {count(len({c.group for c in val}), 'patient')}"
    )
    model = HybridModel(model_config(cfg))
    t0 = time.time()
    frames = {c.path: cached_frames(c.path, model.cfg.input_size, cfg.cache_dir, cfg.crop) for c in clips}
    log(f"decoded {sum(len(v) for v in frames.values())} frames in {time.time() - t0:.0f} s")
    init = initial_densenet(cfg, train, val, frames, work / "pretrain", what="this training run")
    initialisation = _initialise(cfg, model, init)
    from lusviewer.inference.engine import resolve_device

    model.to(resolve_device(device))

    stages = StageRun(cfg, model, train, val, frames, work, run)
    cnn_best = train_cnn(stages)
    if dist_info()[1] > 1:
        import torch.distributed as dist

        rank = dist.get_rank()
        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:  # stage 2 and the card are rank 0's (the LSTM trains in minutes)
            return Path(cfg.out) / f"{cfg.name}.json"
    model.eval()
    metrics: dict[str, Any] = {"baselines": baselines(train, val, frames)} if val else {}
    metrics["cnn_selection"] = cnn_best
    metrics.update(_after_stage_1(stages, clips))
    if val:
        final = metrics["cnn_lstm" if model.sequence is not None else "cnn"]
        log(
            f"validation ({count(len(val), 'clip')}): frame acc {final['frame']['accuracy']:.3f} "
            f"macro-F1 {final['frame']['macro_f1']:.3f}; clip acc {final['clip']['accuracy']:.3f} "
            f"macro-F1 {final['clip']['macro_f1']:.3f}"
        )
    else:
        patients = count(len({c.group for c in train}), "patient")
        log(f"trained on all {count(len(train), 'clip')} ({patients}); no validation")
    card = build_card(
        cfg,
        model,
        clips=clips,
        train=train,
        val=val,
        state=run.data,
        initialisation=initialisation,
        init=init,
        metrics=metrics,
    )
    out = save_model(model, card, Path(cfg.out) / f"{cfg.name}.json")
    log(f"wrote {out} and {out.with_suffix('.safetensors')}")
    return out
