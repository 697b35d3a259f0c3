"""Validation of a model in training: the CNN's outputs on frames, frame and clip
metrics of validation (or test) clips, and the majority-score baseline.

Clip scores follow the scoring engine: the persistent-worst rule and the clip's
risk use each clip's own frame rate (:func:`~lusviewer.training.data.clip_fps`), so
a card's clip metrics and ``lusviewer evaluate`` agree on clips at any frame rate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lusviewer.inference.sequence import sequence_logits
from lusviewer.model.hybrid import HybridModel
from lusviewer.model.preprocess import to_model_input
from lusviewer.report.aggregate import persistent_risk, summarize_clip
from lusviewer.training.data import LabelledClip, clip_fps
from lusviewer.training.loop import autocast, device_of
from lusviewer.training.metrics import classification_metrics, confusion, ordinal_aucs


def clip_metrics(
    val: Sequence[LabelledClip],
    probs_of: Callable[[LabelledClip], np.ndarray],
    *,
    per_clip: bool = False,
    fps_of: Callable[[str], float] = clip_fps,
) -> dict[str, Any]:
    """Frame and clip metrics, confusion matrices and clip AUCs of ``val``, each clip
    scored at its own frame rate (``fps_of(path)``); with ``per_clip`` also every
    clip's score, prediction and risk (for out-of-fold analyses: patient level, pooled
    AUCs). Training states and model cards store the rest but never these per-clip rows
    (they name the clip files)."""
    ys, ps, cy, cp_persist, cp_major, risks = [], [], [], [], [], []
    for c in val:
        p = probs_of(c)
        pred = p.argmax(1)
        fps = fps_of(c.path)
        ys.append(c.targets(len(pred)))
        ps.append(pred)
        cy.append(c.score)
        cp_persist.append(summarize_clip(pred, p, fps=fps).clip_score)
        cp_major.append(summarize_clip(pred, p, fps=fps, rule="majority").clip_score)
        risks.append(persistent_risk(p, fps))
    y, p_all = np.concatenate(ys), np.concatenate(ps)
    res: dict[str, Any] = {
        "frame": classification_metrics(y, p_all),
        "clip": classification_metrics(cy, cp_persist),
        "clip_majority_rule": classification_metrics(cy, cp_major),
        "confusion": {"frame": confusion(y, p_all).tolist(), "clip": confusion(cy, cp_persist).tolist()},
        # None where undefined (a score missing from ``val``): JSON has no NaN.
        "auc": {k: (v if np.isfinite(v) else None) for k, v in ordinal_aucs(cy, np.stack(risks)).items()},
    }
    if per_clip:
        res["clips"] = [
            {
                "clip": c.path,
                "group": c.group,
                "score": c.score,
                "pred": int(q),
                "risk": [round(float(v), 5) for v in r],
            }
            for c, q, r in zip(val, cp_persist, risks, strict=True)
        ]
    return res


@torch.no_grad()
def sequence_probs(head: nn.Module, feats: np.ndarray) -> np.ndarray:
    """The sequence head's per-frame class probabilities (T, C) on one clip's CNN features."""
    head.eval()
    f = torch.from_numpy(feats).to(device_of(head))
    logits = sequence_logits(head, f)  # type: ignore[arg-type]
    return torch.softmax(logits.float(), 1).cpu().numpy()


def evaluate_sequence(
    head: nn.Module, val: Sequence[LabelledClip], feats: dict[str, np.ndarray], *, per_clip: bool = False
) -> dict[str, Any]:
    """:func:`clip_metrics` of the sequence head on the CNN features ``feats``."""
    return clip_metrics(val, lambda c: sequence_probs(head, feats[c.path]), per_clip=per_clip)


@torch.no_grad()
def cnn_outputs(
    model: HybridModel, frames: np.ndarray, *, bf16: bool, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (T, C) and features (T, F) of the CNN for uint8 frames."""
    probs, feats, _ = _cnn_pass(model, frames, bf16=bf16, batch=batch, aux=False)
    return probs, feats


def _cnn_pass(
    model: HybridModel, frames: np.ndarray, *, bf16: bool, batch: int, aux: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`cnn_outputs` and, with ``aux`` and auxiliary heads, the sigmoid of their
    logits (T, A) from the same forward passes (else None)."""
    probs, feats, finds = [], [], []
    dev = device_of(model.cnn)
    for s in range(0, len(frames), batch):
        x = to_model_input(frames[s : s + batch], dev)
        with autocast(bf16, dev):
            out = model.cnn(x)
        probs.append(torch.softmax(out.logits.float(), 1).cpu().numpy())
        feats.append(out.features.float().cpu().numpy())
        if aux:
            assert out.aux is not None
            finds.append(torch.sigmoid(out.aux.float()).cpu().numpy())
    return np.concatenate(probs), np.concatenate(feats), np.concatenate(finds) if aux else None


@dataclass(frozen=True)
class CNNFrames:
    """The CNN's outputs on every frame of some clips, by clip path: softmax
    probabilities (T, C), features (T, F) and the auxiliary findings' probabilities (T, A;
    empty where the model has no such heads or they were not asked for)."""

    probs: dict[str, np.ndarray]
    feats: dict[str, np.ndarray]
    aux: dict[str, np.ndarray]


@torch.no_grad()
def cnn_frames(
    model: HybridModel, clips: Sequence[LabelledClip], frames: dict[str, np.ndarray], bf16: bool, *, aux: bool = True
) -> CNNFrames:
    """One pass of the CNN over every frame of ``clips``: probabilities, features and
    (with ``aux``, for a model with auxiliary heads, ``model.cfg.aux_heads``) the
    sigmoid of those heads' logits, all from the same forward passes."""
    model.eval()
    with_aux = aux and bool(model.cfg.aux_heads)
    out = CNNFrames({}, {}, {})
    for c in clips:
        p, f, a = _cnn_pass(model, frames[c.path], bf16=bf16, batch=64, aux=with_aux)
        out.probs[c.path], out.feats[c.path] = p, f
        if a is not None:
            out.aux[c.path] = a
    return out


def cnn_features(
    model: HybridModel, clips: Sequence[LabelledClip], frames: dict[str, np.ndarray], bf16: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """CNN softmax probabilities and 64-d features of every frame of ``clips``."""
    out = cnn_frames(model, clips, frames, bf16, aux=False)
    return out.probs, out.feats


def validate_cnn(
    model: HybridModel,
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    idx: dict[str, np.ndarray],
    bf16: bool,
) -> dict[str, float]:
    """Frame metrics on the frames ``idx`` of each validation clip, plus ``clip_macro_f1``:
    each clip scored by the worst of those frames (the rule ``--loss mil`` trains for)."""
    model.eval()
    ys, ps, losses, clip_true, clip_pred = [], [], [], [], []
    for c in val:
        probs, _ = cnn_outputs(model, frames[c.path][idx[c.path]], bf16=bf16)
        t = np.array([c.target(int(i)) for i in idx[c.path]])
        ys.append(t)
        ps.append(probs.argmax(1))
        losses.append(-np.log(np.clip(probs[np.arange(len(t)), t], 1e-7, 1)).mean())
        clip_true.append(c.score)
        clip_pred.append(int(ps[-1].max()))
    m = classification_metrics(np.concatenate(ys), np.concatenate(ps))
    m["loss"] = float(np.mean(losses))
    m["clip_macro_f1"] = classification_metrics(np.array(clip_true), np.array(clip_pred))["macro_f1"]
    return m


def majority_baseline(
    train: Sequence[LabelledClip], test: Sequence[LabelledClip], frames: dict[str, np.ndarray]
) -> tuple[int, dict[str, float], dict[str, float]]:
    """The floor every model must clear: always the training clips' most common score.
    Returns (that score, its frame metrics on ``test``, its clip metrics on ``test``)."""
    major = int(np.bincount([c.score for c in train], minlength=4).argmax())
    y = np.concatenate([c.targets(len(frames[c.path])) for c in test])
    cy = [c.score for c in test]
    return major, classification_metrics(y, np.full_like(y, major)), classification_metrics(cy, [major] * len(cy))


def baselines(
    train: Sequence[LabelledClip], val: Sequence[LabelledClip], frames: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Majority-class (of the training clips) and chance references on the validation set."""
    major, frame, clip = majority_baseline(train, val, frames)
    return {"majority_class": major, "majority_frame": frame, "majority_clip": clip, "chance_accuracy": 0.25}
