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

import copy
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lusviewer.model.hybrid import DenseNetBranch, ModelConfig
from lusviewer.model.preprocess import to_model_input
from lusviewer.training.data import (
    LabelledClip,
    _group_of,
    augment,
    cached_frames,
    data_options,
    evenly_spaced,
    load_dataset_with,
    split_by_group,
)
from lusviewer.training.metrics import classification_metrics
from lusviewer.training.train import (
    _autocast,
    _class_weights,
    _device_of,
    _load_optim,
    _load_rng,
    _load_state,
    _log,
    _machine,
    _Run,
    _save_optim,
    _save_rng,
    _save_state,
    schedule_fraction,
)

FORMAT = "lusviewer-pretrained-densenet/1"


@dataclass
class PretrainConfig:
    data: str
    out: str  # the .safetensors to write (the card goes beside it as .json)
    work_dir: str = "runs/pretrain"
    cache_dir: str | None = None
    extra: list[str] = field(default_factory=list)  # folders of unlabelled clips
    tiny: bool = False
    seed: int = 0
    val_fraction: float = 0.2
    input_size: int = 128
    frames_per_clip: int = 16  # sampled per clip per epoch
    batch_size: int = 64
    epochs: int = 100
    minutes: float = 60.0
    lr: float = 0.05  # SimSiam: SGD, lr 0.05 x batch / 256, momentum 0.9, cosine decay
    weight_decay: float = 1e-4
    proj_dim: int = 512
    pred_dim: int = 128
    probe: bool = True
    val_frames_per_clip: int = 12
    bf16: bool = True
    threads: int = 0
    device: str = "auto"
    layout: str = "auto"
    labels: str | None = None
    group_by: str | None = None
    group_column: str | None = None
    frame_labels: str | None = None
    command: str = field(default_factory=lambda: shlex.join(["lusviewer", *sys.argv[1:]]))


class Encoder(nn.Module):
    """The DenseNet branch up to its pooled features (stem, DenseNet-201 features, ReLU, GAP)."""

    def __init__(self, branch: DenseNetBranch) -> None:
        super().__init__()
        self.stem = branch.stem
        self.features = branch.features
        self.dim = int(branch.norm.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.features(self.stem(x)))
        return torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)


class SimSiam(nn.Module):
    """Encoder + projector (3 layers, BN) + predictor (bottleneck), as in the paper, narrower.

    One difference: both views go through the network as one batch, so BatchNorm sees
    their joint statistics (SimCLR's global BN); the reference implementation forwards
    each view separately."""

    def __init__(self, encoder: Encoder, proj_dim: int, pred_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        d = encoder.dim
        self.projector = nn.Sequential(
            nn.Linear(d, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(proj_dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, proj_dim),
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The SimSiam loss (-1 = perfect agreement) and the projections of view 1 (for the collapse monitor)."""
        n = x1.shape[0]
        z = self.projector(self.encoder(torch.cat([x1, x2])).float())
        p = self.predictor(z)
        z1, z2, p1, p2 = z[:n], z[n:], p[:n], p[n:]
        loss = -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()) / 2
        return loss, z1.detach()


def two_views(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ultrasound-safe views of each frame: stronger than training's augmentation
    (zoom 1-1.6, i.e. crops of 40-100 % of the area, shift +-15 %, gain 0.6-1.4, gamma
    +-0.5, multiplicative speckle, occasional blur) but still no vertical flip and no
    large rotation: the pleural line stays near the top."""

    def view() -> torch.Tensor:
        v = augment(x, gen, zoom=(1.0, 1.6), shift=0.3, gain=(0.6, 1.4), gamma=0.5)
        speckle = 1 + 0.15 * torch.randn(v.shape, generator=gen).to(v.device)
        v = v * speckle
        blur = (torch.rand(v.shape[0], generator=gen) < 0.3).to(v.device)
        if bool(blur.any()):
            k = torch.tensor([1.0, 2.0, 1.0], device=v.device)
            k2 = (k[:, None] * k[None, :] / 16).expand(v.shape[1], 1, 3, 3)
            smooth = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), k2, groups=v.shape[1])
            v = torch.where(blur.view(-1, 1, 1, 1), smooth, v)
        return v.clamp(0, 1)

    return view(), view()


def _collapse(z: torch.Tensor) -> float:
    """Std over the batch of the l2-normalised projections, times sqrt(dim): about 1
    for well-spread embeddings, 0 for a collapsed (constant) one (SimSiam, sec. 4.1)."""
    zn = F.normalize(z.float(), dim=1)
    return float(zn.std(0).mean()) * math.sqrt(zn.shape[1])


def unlabelled_clips(folders: Sequence[str]) -> list[str]:
    from lusviewer.io import find_clips

    paths: list[str] = []
    for folder in folders:
        paths.extend(find_clips(folder))
    return paths


def _extra_group(path: str, group_by: str | None) -> str | None:
    """The patient id in an unlabelled clip's name or path, by the labelled data's rule; None if none."""
    try:
        return _group_of(path, group_by)
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
            _log(f"  skipped {path}: {type(exc).__name__}: {exc}")
            continue
        if len(arr):
            frames[path] = arr
    return frames


@torch.no_grad()
def pooled_features(
    encoder: Encoder, clips: Sequence[LabelledClip], frames: dict[str, np.ndarray], per_clip: int, bf16: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled encoder features of ``per_clip`` evenly spaced frames of each clip:
    (features, frame targets, clip index)."""
    encoder.eval()
    dev = _device_of(encoder)
    xs, ys, ids = [], [], []
    for ci, c in enumerate(clips):
        arr = frames[c.path]
        idx = evenly_spaced(len(arr), per_clip)
        with _autocast(bf16, dev):
            f = encoder(to_model_input(arr[idx], dev).contiguous(memory_format=torch.channels_last))
        xs.append(f.float().cpu().numpy())
        ys.append(np.array([c.target(int(i)) for i in idx]))
        ids.append(np.full(len(idx), ci))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ids)


def fit_probe(
    x: np.ndarray, y: np.ndarray, *, n_classes: int = 4, l2: float = 1e-3, steps: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class-weighted multinomial logistic regression (L-BFGS) on standardised features.
    Returns (mean, std, weights, bias): probabilities are softmax(((x - mean) / std) @ W + b)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std).float()
    yt = torch.from_numpy(y).long()
    cw = _class_weights(y.tolist(), n_classes)
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w + b, yt, weight=cw) + l2 * w.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return mean, std, w.detach().numpy(), b.detach().numpy()


@torch.no_grad()
def recalibrate_bn(
    encoder: Encoder, clips: Sequence[LabelledClip], frames: dict[str, np.ndarray], per_clip: int, bf16: bool
) -> None:
    """Re-estimate every BatchNorm's statistics on clean frames of ``clips`` (cumulative
    average), so that a probe compares features, not statistics: a random
    initialisation has none (mean 0, variance 1 through 200 layers), and the pretrained
    branch's come from augmented views."""
    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    encoder.train()
    dev = _device_of(encoder)
    x = np.concatenate([frames[c.path][evenly_spaced(len(frames[c.path]), per_clip)] for c in clips])
    for i in range(0, len(x), 64):
        with _autocast(bf16, dev):
            encoder(to_model_input(x[i : i + 64], dev).contiguous(memory_format=torch.channels_last))
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum
    encoder.eval()


def probe_predictions(
    encoder: Encoder,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    cfg: PretrainConfig,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Linear probe: fit on the training patients' frames; per validation clip, the
    predicted score of each probed frame, and the clip's score (the argmax of the mean
    of its frames' probabilities). Probes a copy whose BatchNorm statistics are
    re-estimated on the training patients' frames (:func:`recalibrate_bn`)."""
    encoder = copy.deepcopy(encoder)
    recalibrate_bn(encoder, train, frames, cfg.val_frames_per_clip, cfg.bf16)
    xtr, ytr, _ = pooled_features(encoder, train, frames, cfg.val_frames_per_clip, cfg.bf16)
    xva, _, cid = pooled_features(encoder, val, frames, cfg.val_frames_per_clip, cfg.bf16)
    mean, std, w, b = fit_probe(xtr, ytr)
    logits = ((xva - mean) / std) @ w + b
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    per_frame = [prob[cid == i].argmax(1) for i in range(len(val))]
    per_clip = np.array([prob[cid == i].mean(0).argmax() for i in range(len(val))])
    return per_frame, per_clip


PROBE_KEYS = ("accuracy", "macro_f1", "within_one", "qwk")


def probe_report(
    val: Sequence[LabelledClip],
    frame_targets: list[np.ndarray],
    probes: dict[str, tuple[list[np.ndarray], np.ndarray]],
    *,
    reps: int = 2000,
) -> dict[str, Any]:
    """Metrics of each probe at frame and clip level, and the paired difference
    ``pretrained`` minus ``random_init`` with its 95 % patient-bootstrap interval
    (11 validation patients give wide intervals: read them before the point values)."""
    from lusviewer.training.metrics import bootstrap_by_group

    scores = np.array([c.score for c in val])
    groups = [c.group for c in val]
    report: dict[str, Any] = {}
    for name, (frames_pred, clip_pred) in probes.items():
        f = classification_metrics(np.concatenate(frame_targets), np.concatenate(frames_pred))
        c = classification_metrics(scores, clip_pred)
        report[name] = {
            "frame": {k: f[k] for k in ("n", *PROBE_KEYS)},
            "clip": {k: c[k] for k in ("n", *PROBE_KEYS)},
        }
    if {"pretrained", "random_init"} <= set(probes) and len(set(groups)) > 1 and reps > 0:
        (pf, pc), (rf, rc) = probes["pretrained"], probes["random_init"]
        frame_ci = bootstrap_by_group(groups, list(zip(frame_targets, pf, strict=True)), reference=rf, reps=reps)
        clip_ci = bootstrap_by_group(
            groups,
            [(np.array([s]), np.array([p])) for s, p in zip(scores, pc, strict=True)],
            reference=[np.array([r]) for r in rc],
            reps=reps,
        )
        report["pretrained_minus_random_init"] = {
            level: {
                k: {"value": report["pretrained"][level][k] - report["random_init"][level][k], "ci95": ci[f"diff_{k}"]}
                for k in PROBE_KEYS
            }
            for level, ci in (("frame", frame_ci), ("clip", clip_ci))
        }
    return report


def run_probe(
    encoder: Encoder,
    random_init: Encoder,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    cfg: PretrainConfig,
) -> dict[str, Any]:
    """The linear probe of ``encoder`` ("pretrained") against ``random_init`` (the same
    architecture as initialised), logged and returned as :func:`probe_report` gives it."""
    _log("linear probe on frozen pooled features (training patients -> held-out patients)")
    random_init.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    targets = [
        np.array([c.target(int(i)) for i in evenly_spaced(len(frames[c.path]), cfg.val_frames_per_clip)]) for c in val
    ]
    probes = {
        "pretrained": probe_predictions(encoder, train, val, frames, cfg),
        "random_init": probe_predictions(random_init, train, val, frames, cfg),
    }
    report = probe_report(val, targets, probes)
    for name in probes:
        m = report[name]
        _log(
            f"  {name:<11} frame acc {m['frame']['accuracy']:.3f} macro-F1 {m['frame']['macro_f1']:.3f} | "
            f"clip acc {m['clip']['accuracy']:.3f} macro-F1 {m['clip']['macro_f1']:.3f} QWK {m['clip']['qwk']:.3f}"
        )
    for level, d in report.get("pretrained_minus_random_init", {}).items():
        lo, hi = d["macro_f1"]["ci95"]
        value = d["macro_f1"]["value"]
        _log(f"  pretrained minus random init, {level} macro-F1: {value:+.3f} ({lo:+.3f} to {hi:+.3f})")
    return report


def _encoder(cfg: PretrainConfig) -> Encoder:
    base = ModelConfig.tiny("densenet") if cfg.tiny else ModelConfig(variant="densenet")
    return Encoder(DenseNetBranch(replace(base, input_size=cfg.input_size)))


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
    train, val = split_by_group(clips, val_fraction=cfg.val_fraction, seed=cfg.seed)
    extra = unlabelled_clips(cfg.extra)
    labelled = {os.path.abspath(c.path) for c in clips}
    overlap = [x for x in extra if os.path.abspath(x) in labelled]
    if overlap:  # the split decides which labelled clips are seen: never the validation patients'
        _log(f"  {len(overlap)} --extra clips are clips of --data; the split decides which of them are used")
        extra = [x for x in extra if os.path.abspath(x) not in labelled]
    held_out = {c.group for c in val}
    named = [
        x
        for x in extra
        if _extra_group(x, cfg.group_by) in held_out or (cfg.group_column and _names_one_of(x, held_out))
    ]
    if named:  # e.g. unscored clips of a validation patient: never seen either
        _log(f"  left out {len(named)} --extra clips whose names carry a validation patient's id")
        extra = [x for x in extra if x not in named]
    t0 = time.time()
    frames = _load_frames([c.path for c in clips], cfg.input_size, cfg.cache_dir)
    frames.update(_load_frames(extra, cfg.input_size, cfg.cache_dir))
    _log(f"decoded {sum(len(v) for v in frames.values())} frames in {time.time() - t0:.0f} s")
    return pretrain_branch(cfg, train, val, frames, [x for x in extra if x in frames])


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
    run = _Run(work)
    free = ("command", "epochs", "minutes", "probe", "threads", "device", "cache_dir", "out")  # may change on resume
    old = run.data.get("config")
    if old and {k: v for k, v in old.items() if k not in free} != {
        k: v for k, v in asdict(cfg).items() if k not in free
    }:
        raise ValueError(f"{work} holds a pretraining run with other settings; use another --work-dir")
    run.data["config"] = asdict(cfg)
    assert not {c.group for c in train} & {c.group for c in val}, "patient leak"
    pool = [c.path for c in train if c.path in frames] + [p for p in extra if p in frames]
    _log(
        f"pretraining on {sum(len(frames[p]) for p in pool)} frames: {len(train)} clips of "
        f"{len({c.group for c in train})} training patients + {len(extra)} unlabelled clips; {len(val)} clips of "
        f"{len({c.group for c in val})} held-out patients (probe only)"
    )

    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    encoder = _encoder(cfg)
    model = SimSiam(encoder, cfg.proj_dim, cfg.pred_dim).to(dev)
    model.encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    base_lr = cfg.lr * cfg.batch_size / 256
    opt = torch.optim.SGD(
        [
            {"params": [*model.encoder.parameters(), *model.projector.parameters()], "fix_lr": False},
            {"params": model.predictor.parameters(), "fix_lr": True},  # SimSiam keeps the predictor's lr fixed
        ],
        lr=base_lr,
        momentum=0.9,
        weight_decay=cfg.weight_decay,
    )
    st = run.data.setdefault("pretrain", {"epoch": 0, "elapsed_s": 0.0, "history": []})
    last, optim_path, rng_path = work / "last.safetensors", work / "optim.safetensors", work / "rng_rank0.json"
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if st["epoch"] > 0 and last.is_file():
        _load_state(last, model)
        _load_optim(optim_path, opt)
        exact = _load_rng(rng_path, rng, gen, dev, epoch=st["epoch"])
        _log(
            f"resuming pretraining at epoch {st['epoch']} ({st['elapsed_s'] / 60:.1f} min done)"
            + ("" if exact or st["epoch"] >= cfg.epochs else "; without its random streams: other frames from here")
        )
    budget = cfg.minutes * 60
    t_start = time.time() - st["elapsed_s"]
    while st["epoch"] < cfg.epochs and time.time() - t_start < budget:  # a larger --epochs goes on
        model.train()
        items = [(p, int(i)) for p in pool for i in rng.choice(len(frames[p]), cfg.frames_per_clip)]
        rng.shuffle(items)  # type: ignore[arg-type]
        nb = len(items) // cfg.batch_size
        bar = tqdm(
            total=nb,
            desc=f"pretrain epoch {st['epoch'] + 1}",
            unit="batch",
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        tot, spread, t_epoch = 0.0, 0.0, time.time()
        for b in range(nb):
            frac = schedule_fraction(time.time() - t_start, budget, st["epoch"] + b / max(nb, 1), cfg.epochs)
            for g in opt.param_groups:
                g["lr"] = base_lr if g["fix_lr"] else base_lr * 0.5 * (1 + math.cos(math.pi * frac))
            chunk = items[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = to_model_input(np.stack([frames[p][i] for p, i in chunk]), dev)
            v1, v2 = two_views(x, gen)
            with _autocast(cfg.bf16, dev):
                loss, z1 = model(
                    v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            spread += _collapse(z1)
            bar.update(1)
            bar.set_postfix(
                loss=f"{tot / (b + 1):.4f}",
                spread=f"{spread / (b + 1):.2f}",
                pairs_s=f"{(b + 1) * cfg.batch_size / max(time.time() - t_epoch, 1e-6):.1f}",
                refresh=False,
            )
        bar.close()
        st["epoch"] += 1
        st["elapsed_s"] = time.time() - t_start
        st["history"].append({"epoch": st["epoch"], "loss": tot / max(nb, 1), "spread": spread / max(nb, 1)})
        _log(
            f"pretrain epoch {st['epoch']}: loss {tot / max(nb, 1):.4f} (-1 = views agree), spread "
            f"{spread / max(nb, 1):.2f} (0 = collapsed, ~1 = spread out) ({st['elapsed_s'] / 60:.1f} min)"
        )
        _save_state(last, model)
        _save_optim(optim_path, opt)
        _save_rng(rng_path, rng, gen, dev, epoch=st["epoch"])
        run.save()
    probe: dict[str, Any] = {}
    if cfg.probe and val:
        torch.manual_seed(cfg.seed)  # the branch as it started: rebuilt, not kept in memory through the run
        random_init = _encoder(cfg).to(dev)
        probe = run_probe(model.encoder, random_init, train, val, frames, cfg)
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
        "machine": _machine(dev),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_pretrained(out, model.encoder, card)
    _log(f"wrote {out} and {out.with_suffix('.json')}")
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


def pretrain_for(
    tcfg: Any,
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
        out=str(out),
        work_dir=str(work),
        cache_dir=tcfg.cache_dir,
        tiny=tcfg.tiny,
        seed=tcfg.seed,
        val_fraction=tcfg.val_fraction,
        input_size=tcfg.input_size,
        batch_size=tcfg.batch_size,
        frames_per_clip=tcfg.frames_per_clip,
        epochs=tcfg.pretrain_epochs,
        minutes=tcfg.pretrain_minutes,
        bf16=tcfg.bf16,
        threads=tcfg.threads,
        device=tcfg.device,
        command=tcfg.command,
    )
    mine = sorted({c.group for c in train})
    if out.is_file():
        seen = pretrained_patients(out)
        if seen is None or sorted(seen[1]) != mine:
            raise ValueError(f"{work} holds a pretraining on other patients (another split?); use a new work dir")
        _log(f"pretraining already done: {out}")
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
