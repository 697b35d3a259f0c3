"""Self-supervised pretraining of the DenseNet-201 branch on lung-ultrasound frames.

No ImageNet weights can be downloaded where lusviewer is built, and 50 patients are
few to learn a DenseNet-201 from scratch. ``lusviewer pretrain`` learns the branch's
features from unlabelled LUS frames instead, with SimSiam (Chen & He, "Exploring
Simple Siamese Representation Learning", CVPR 2021): two augmented views of a frame
should give the same embedding; a predictor and a stop-gradient keep it from
collapsing to a constant, with no negative pairs, so small batches work.

What it learns from, and what it never sees:

- the frames of the **training patients** of the same patient-disjoint split that
  ``lusviewer train`` makes with the same ``--seed`` and ``--val-fraction`` (labels
  are not used), so a model trained afterwards is still validated on patients whose
  images nothing has seen;
- optionally folders of unlabelled clips (``--extra``), e.g. another device's clips.

Output: ``OUT.safetensors`` holding the branch in torchvision's key names
(``features.*``, plus the branch's ``stem.*`` conv), so ``lusviewer train
--init-densenet OUT.safetensors`` loads it where ImageNet weights would go; and
``OUT.json``, a card with the recipe, the data, the sha256 and a linear probe.

The linear probe measures what the features know about severity before any
fine-tuning: a logistic regression on frozen, pooled features of training-patient
frames, scored on the validation patients, for the pretrained branch and for the same
branch at its random initialisation (the baseline it must beat).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lusviewer.model.preprocess import to_model_input
from lusviewer.training.config import PretrainConfig, TrainConfig
from lusviewer.training.data import (
    LabelledClip,
    cached_frames,
    data_options,
    group_of,
    load_dataset_with,
    split_by_group,
)
from lusviewer.training.loop import (
    RunState,
    StageFiles,
    StageLoop,
    autocast,
    batches_per_epoch,
    device_of,
    log,
    machine,
    schedule_fraction,
)
from lusviewer.training.probe import run_probe
from lusviewer.training.simsiam import Encoder, SimSiam, collapse, encoder_for, two_views
from lusviewer.wording import count

__all__ = [
    "FORMAT",
    "PretrainConfig",
    "check_held_out",
    "pretrain_branch",
    "pretrain_for",
    "pretrained_patients",
    "run_pretrain",
    "save_pretrained",
    "unlabelled_clips",
]

FORMAT = "lusviewer-pretrained-densenet/1"


def unlabelled_clips(folders: Sequence[str]) -> list[str]:
    from lusviewer.io import find_clips

    paths: list[str] = []
    for folder in folders:
        paths.extend(find_clips(folder))
    return paths


def _extra_group(path: str, group_by: str | None) -> str | None:
    """The patient id in an unlabelled clip's name or path, by the labelled data's rule; None if none."""
    try:
        return group_of(path, group_by)
    except ValueError:
        return None


def _names_one_of(path: str, groups: set[str]) -> bool:
    """Whether a clip's file name carries one of ``groups`` as a whole word (``Pat07`` in
    ``Pat07_extra.mp4``): with patient ids from a label column, there is no rule to read
    an unlabelled clip's patient, so any name that mentions a held-out id is kept out."""
    words = {w.lower() for w in re.split(r"[^A-Za-z0-9]+", Path(path).stem) if w}
    return any(g.lower() in words for g in groups)


def _load_frames(paths: Sequence[str], size: int, cache_dir: str | None) -> dict[str, np.ndarray]:
    """Decoded frames of each clip; a clip that cannot be read is named and skipped."""
    frames: dict[str, np.ndarray] = {}
    for path in paths:
        try:
            arr = cached_frames(path, size, cache_dir)
        except Exception as exc:  # a bad extra clip must not end an hour of pretraining
            log(f"  skipped {path}: {type(exc).__name__}: {exc}")
            continue
        if len(arr):
            frames[path] = arr
    return frames


def save_pretrained(path: Path, encoder: Encoder, card: dict[str, Any]) -> None:
    """``features.*`` (torchvision's names) + ``stem.*``, float32; the card beside it."""
    from safetensors.torch import save_file

    from lusviewer.model.weights import sha256_file

    state = {f"features.{k}": v for k, v in encoder.features.state_dict().items()}
    state.update({f"stem.{k}": v for k, v in encoder.stem.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(
        {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.cpu() for k, v in state.items()},
        str(tmp),
        metadata={  # what the leak check reads, even from a copy without the card
            "format": FORMAT,
            "data": str(card["data_realpath"]),
            "training_patients": json.dumps(card["data"]["training_patients"]),
        },
    )
    os.replace(tmp, path)
    card = {**card, "weights_file": path.name, "sha256": sha256_file(path)}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def run_pretrain(cfg: PretrainConfig) -> Path:
    """``lusviewer pretrain``: split the labelled data as ``lusviewer train`` would, add
    the ``--extra`` clips, then :func:`pretrain_branch`."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    clips = load_dataset_with(cfg)
    patients = len({c.group for c in clips})
    if patients < 2:  # split_by_group's own advice, --val-fraction 0, is train's: pretrain refuses it
        raise ValueError(
            f"--val-fraction {cfg.val_fraction:g}: {count(patients, 'patient')} cannot be split into training and "
            "validation patients (pretrain holds validation patients out for its probe; it takes no "
            "--val-fraction 0); use data of at least 2 patients"
        )
    train, val = split_by_group(clips, val_fraction=cfg.val_fraction, seed=cfg.seed)
    extra = unlabelled_clips(cfg.extra)
    labelled = {os.path.abspath(c.path) for c in clips}
    overlap = [x for x in extra if os.path.abspath(x) in labelled]
    if overlap:  # the split decides which labelled clips are seen: never the validation patients'
        log(f"  {len(overlap)} --extra clips are clips of --data; the split decides which of them are used")
        extra = [x for x in extra if os.path.abspath(x) not in labelled]
    held_out = {c.group for c in val}
    named = [
        x
        for x in extra
        if _extra_group(x, cfg.group_by) in held_out or (cfg.group_column and _names_one_of(x, held_out))
    ]
    if named:  # e.g. unscored clips of a validation patient: never seen either
        log(f"  left out {len(named)} --extra clips whose names carry a validation patient's id")
        extra = [x for x in extra if x not in named]
    t0 = time.time()
    frames = _load_frames([c.path for c in clips], cfg.input_size, cfg.cache_dir)
    frames.update(_load_frames(extra, cfg.input_size, cfg.cache_dir))
    log(f"decoded {sum(len(v) for v in frames.values())} frames in {time.time() - t0:.0f} s")
    return pretrain_branch(cfg, train, val, frames, [x for x in extra if x in frames])


def _check_settings(cfg: PretrainConfig, run: RunState, work: Path) -> None:
    """A work dir resumes only a pretraining of the same settings (a larger --epochs goes on)."""
    free = ("command", "epochs", "minutes", "probe", "threads", "device", "cache_dir", "out")  # may change on resume
    old = run.data.get("config")
    if old and {k: v for k, v in old.items() if k not in free} != {
        k: v for k, v in asdict(cfg).items() if k not in free
    }:
        raise ValueError(f"{work} holds a pretraining run with other settings; use another --work-dir")
    run.data["config"] = asdict(cfg)


def _sgd(model: SimSiam, cfg: PretrainConfig, base_lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        [
            {"params": [*model.encoder.parameters(), *model.projector.parameters()], "fix_lr": False},
            {"params": model.predictor.parameters(), "fix_lr": True},  # SimSiam keeps the predictor's lr fixed
        ],
        lr=base_lr,
        momentum=0.9,
        weight_decay=cfg.weight_decay,
    )


def _pretrain_epochs(
    cfg: PretrainConfig, model: SimSiam, pool: list[str], frames: dict[str, np.ndarray], run: RunState, work: Path
) -> StageLoop:
    """SimSiam epochs on ``pool``'s frames, resumed from ``work``'s last checkpoint; a
    larger ``--epochs`` goes on from a finished run."""
    dev = device_of(model)
    base_lr = cfg.lr * cfg.batch_size / 256
    opt = _sgd(model, cfg, base_lr)
    files = StageFiles(last=work / "last.safetensors", optim=work / "optim.safetensors", rng=work / "rng_rank0.json")
    fresh: dict[str, Any] = {"epoch": 0, "elapsed_s": 0.0, "history": []}
    loop = StageLoop(run, "pretrain", files, epochs=cfg.epochs, minutes=cfg.minutes, fresh=fresh)
    st = loop.st
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if loop.resume_weights(model, opt):
        exact = loop.resume_streams(rng, gen, dev)
        log(
            f"resuming pretraining at epoch {st['epoch']} ({st['elapsed_s'] / 60:.1f} min done)"
            + ("" if exact or st["epoch"] >= cfg.epochs else "; without its random streams: other frames from here")
        )
    for epoch in loop.epochs():
        model.train()
        items = [(p, int(i)) for p in pool for i in rng.choice(len(frames[p]), cfg.frames_per_clip)]
        rng.shuffle(items)  # type: ignore[arg-type]
        nb = batches_per_epoch(
            len(items),
            cfg.batch_size,
            clips=count(len(pool), "clip"),
            frames_per_clip=cfg.frames_per_clip,
            step="pretraining",
        )
        bar = loop.bar(nb, f"pretrain epoch {epoch + 1}")
        tot, spread, t_epoch = 0.0, 0.0, time.time()
        for b in range(nb):
            frac = schedule_fraction(loop.elapsed(), loop.budget_s, epoch + b / max(nb, 1), cfg.epochs)
            for g in opt.param_groups:
                g["lr"] = base_lr if g["fix_lr"] else base_lr * 0.5 * (1 + math.cos(math.pi * frac))
            chunk = items[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            v1, v2 = two_views(to_model_input(np.stack([frames[p][i] for p, i in chunk]), dev), gen)
            with autocast(cfg.bf16, dev):
                loss, z1 = model(
                    v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            spread += collapse(z1)
            bar.update(1)
            pairs_s = (b + 1) * cfg.batch_size / max(time.time() - t_epoch, 1e-6)
            bar.set_postfix(
                loss=f"{tot / (b + 1):.4f}", spread=f"{spread / (b + 1):.2f}", pairs_s=f"{pairs_s:.1f}", refresh=False
            )
        bar.close()
        loop.end_epoch()
        st["history"].append({"epoch": st["epoch"], "loss": tot / max(nb, 1), "spread": spread / max(nb, 1)})
        log(
            f"pretrain epoch {st['epoch']}: loss {tot / max(nb, 1):.4f} (-1 = views agree), spread "
            f"{spread / max(nb, 1):.2f} (0 = collapsed, ~1 = spread out) ({st['elapsed_s'] / 60:.1f} min)"
        )
        loop.save_streams(rng, gen, dev)
        loop.save_last(model, opt)
    return loop


def pretrain_branch(
    cfg: PretrainConfig,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    extra: Sequence[str] = (),
) -> Path:
    """Pretrain the branch on the frames of ``train`` and ``extra`` (labels unused),
    probe it on ``val``, write ``cfg.out`` and its card; resumes from ``cfg.work_dir``.
    ``val`` is never pretrained on."""
    from lusviewer.inference.engine import resolve_device

    out = Path(cfg.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: expected a .safetensors path")
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    run = RunState(work)
    _check_settings(cfg, run, work)
    assert not {c.group for c in train} & {c.group for c in val}, "patient leak"
    pool = [c.path for c in train if c.path in frames] + [p for p in extra if p in frames]
    log(
        f"pretraining on {count(sum(len(frames[p]) for p in pool), 'frame')}: {count(len(train), 'clip')} of "
        f"{count(len({c.group for c in train}), 'training patient')} + {count(len(extra), 'unlabelled clip')}; "
        f"{count(len(val), 'clip')} of {count(len({c.group for c in val}), 'held-out patient')} (probe only)"
    )
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = SimSiam(encoder_for(cfg), cfg.proj_dim, cfg.pred_dim).to(dev)
    model.encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    st = _pretrain_epochs(cfg, model, pool, frames, run, work).st
    probe: dict[str, Any] = {}
    if cfg.probe and val:
        torch.manual_seed(cfg.seed)  # the branch as it started: rebuilt, not kept in memory through the run
        probe = run_probe(model.encoder, encoder_for(cfg).to(dev), train, val, frames, cfg)
    card = {
        "format": FORMAT,
        "method": "SimSiam (Chen & He 2021): projector 3 x Linear+BN, predictor bottleneck, SGD momentum 0.9, "
        "cosine decay, predictor at a fixed lr",
        "branch": "DenseNet-201 branch of the lusviewer hybrid model: stem conv + DenseNet features",
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("command",)},
        "command": cfg.command,
        "data_realpath": os.path.realpath(cfg.data),
        "data": {
            "training_patients": sorted({c.group for c in train}),
            "held_out_patients": sorted({c.group for c in val}),
            "labelled_clips_used": sum(c.path in frames for c in train),
            "unlabelled_clips_used": sum(p in frames for p in extra),
            "frames": int(sum(len(frames[p]) for p in pool)),
            "labels_used": "none for pretraining; the probe fits on the training patients' labels",
        },
        "epochs": st["epoch"],
        "minutes": round(st["elapsed_s"] / 60, 2),
        "history": st["history"],
        "probe": probe,
        "machine": machine(dev),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_pretrained(out, model.encoder, card)
    log(f"wrote {out} and {out.with_suffix('.json')}")
    return out


def pretrained_patients(path: str | os.PathLike[str]) -> tuple[str, list[str]] | None:
    """(real path of the data, patients) that a ``lusviewer pretrain`` file learnt from,
    from the file's own metadata (so a copy without its card still says); None for other
    weights (e.g. ImageNet)."""
    from safetensors import safe_open

    if Path(path).suffix != ".safetensors":
        return None
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
    except Exception:  # not a safetensors file: init_densenet_from reports that
        return None
    if meta.get("format") != FORMAT:
        return None
    return meta.get("data", ""), [str(g) for g in json.loads(meta.get("training_patients", "[]"))]


def check_held_out(path: str | os.PathLike[str], data: str, held_out: set[str], what: str) -> None:
    """Refuse pretrained weights that saw the images of patients ``what`` must hold out
    (when they were pretrained on the same data folder, compared by real path)."""
    seen = pretrained_patients(path)
    if seen is None or seen[0] != os.path.realpath(data):
        return
    leak = sorted(set(seen[1]) & held_out)
    if leak:
        raise ValueError(
            f"{path} was pretrained on images of {len(leak)} patient{'s' if len(leak) != 1 else ''} that "
            f"{what} holds out "
            f"({', '.join(leak[:5])}{', ...' if len(leak) > 5 else ''}): their results would not be unseen. "
            "Pretrain with the same --seed and --val-fraction as the training run, or let --pretrain-epochs "
            "pretrain on each run's (each fold's) training patients"
        )


#: The settings a ``--pretrain-epochs`` pretraining takes from its training run.
_SHARED_WITH_TRAINING = (
    "cache_dir",
    "tiny",
    "seed",
    "val_fraction",
    "input_size",
    "batch_size",
    "frames_per_clip",
    "bf16",
    "threads",
    "device",
    "command",
)


def pretrain_for(
    tcfg: TrainConfig,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    work: Path,
) -> Path:
    """``--pretrain-epochs`` of ``lusviewer train`` / ``crossval``: pretrain the branch on
    this run's training patients (``val`` for the probe only) into ``work``; a finished
    pretraining there is reused."""
    out = work / "densenet.safetensors"
    cfg = PretrainConfig(
        **data_options(tcfg),
        **{name: getattr(tcfg, name) for name in _SHARED_WITH_TRAINING},
        out=str(out),
        work_dir=str(work),
        epochs=tcfg.pretrain_epochs,
        minutes=tcfg.pretrain_minutes,
    )
    mine = sorted({c.group for c in train})
    if out.is_file():
        seen = pretrained_patients(out)
        if seen is None or sorted(seen[1]) != mine:
            raise ValueError(f"{work} holds a pretraining on other patients (another split?); use a new work dir")
        log(f"pretraining already done: {out}")
        return out
    # A pretraining stopped half-way resumes only on the same patients (not, say, after -k changed).
    marker = work / "training_patients.json"
    if marker.is_file() and json.loads(marker.read_text()) != mine:
        raise ValueError(
            f"{work} holds an unfinished pretraining on other patients (another split?); use a new work dir"
        )
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(mine))
    return pretrain_branch(cfg, train, val, frames)
