"""The linear probe of a pretrained DenseNet branch: what its frozen, pooled features
know about severity before any fine-tuning, against the same branch at its random
initialisation (the baseline it must beat)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lusviewer.model.preprocess import to_model_input
from lusviewer.training.config import PretrainConfig
from lusviewer.training.data import LabelledClip, evenly_spaced
from lusviewer.training.loop import autocast, class_weights, device_of, log
from lusviewer.training.metrics import bootstrap_by_group, classification_metrics
from lusviewer.training.simsiam import Encoder


@torch.no_grad()
def pooled_features(
    encoder: Encoder, clips: Sequence[LabelledClip], frames: dict[str, np.ndarray], per_clip: int, bf16: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled encoder features of ``per_clip`` evenly spaced frames of each clip:
    (features, frame targets, clip index)."""
    encoder.eval()
    dev = device_of(encoder)
    xs, ys, ids = [], [], []
    for ci, c in enumerate(clips):
        arr = frames[c.path]
        idx = evenly_spaced(len(arr), per_clip)
        with autocast(bf16, dev):
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
    cw = class_weights(y.tolist(), n_classes)
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
    dev = device_of(encoder)
    x = np.concatenate([frames[c.path][evenly_spaced(len(frames[c.path]), per_clip)] for c in clips])
    for i in range(0, len(x), 64):
        with autocast(bf16, dev):
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
    log("linear probe on frozen pooled features (training patients -> held-out patients)")
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
        log(
            f"  {name:<11} frame acc {m['frame']['accuracy']:.3f} macro-F1 {m['frame']['macro_f1']:.3f} | "
            f"clip acc {m['clip']['accuracy']:.3f} macro-F1 {m['clip']['macro_f1']:.3f} QWK {m['clip']['qwk']:.3f}"
        )
    for level, d in report.get("pretrained_minus_random_init", {}).items():
        lo, hi = d["macro_f1"]["ci95"]
        value = d["macro_f1"]["value"]
        log(f"  pretrained minus random init, {level} macro-F1: {value:+.3f} ({lo:+.3f} to {hi:+.3f})")
    return report
