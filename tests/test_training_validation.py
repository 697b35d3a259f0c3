"""Clip metrics in training score each clip at its own frame rate, as `lusviewer
evaluate` (the scoring engine) does (issue 14: they used 25 fps for every clip); one pass
of the CNN gives the probabilities, features and auxiliary findings that took two."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lusviewer.io import open_clip
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.model import HybridModel, ModelConfig
from lusviewer.model.hybrid import AUX_FINDINGS
from lusviewer.model.preprocess import to_model_input
from lusviewer.report.aggregate import summarize_clip
from lusviewer.training.data import LabelledClip, clip_fps
from lusviewer.training.loop import autocast, device_of
from lusviewer.training.validation import clip_metrics, cnn_features, cnn_frames


def _probs(scores: list[int], confidence: float = 0.97) -> np.ndarray:
    p = np.full((len(scores), 4), (1 - confidence) / 3)
    p[np.arange(len(scores)), scores] = confidence
    return p


def test_clip_metrics_use_the_clips_own_frame_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "patient_1_L1.mp4", synthetic_frames(10, size=32, seed=3), fps=10.0)
    with open_clip(path) as reader:
        engine_fps = reader.info.fps
    assert engine_fps == clip_fps(str(path)) == 10.0
    # Score 3 held for 3 frames: 0.3 s at 10 fps (persistent: it counts), 0.12 s at 25 fps (it does not).
    frame_scores = [3, 3, 3, 0, 0, 0, 0, 0, 0, 0]
    probs = _probs(frame_scores)
    at_own_fps = summarize_clip(np.array(frame_scores), probs, fps=engine_fps).clip_score
    assert at_own_fps == 3 != summarize_clip(np.array(frame_scores), probs, fps=25.0).clip_score
    clip = LabelledClip(str(path), score=3, group="1")
    res = clip_metrics([clip], lambda c: probs, per_clip=True)
    assert res["clips"][0]["pred"] == at_own_fps
    assert res["clip"]["accuracy"] == 1.0
    # The clip's risk of a score >= 3 averages over its own 0.2 s (3 frames here, not 5).
    assert res["clips"][0]["risk"][2] > 0.9


def _two_passes(
    model: HybridModel, clips: list[LabelledClip], frames: dict[str, np.ndarray], bf16: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What cross-validation ran before: ``cnn_features`` (probabilities, features), then
    ``cnn_aux_probs`` (the auxiliary findings), each its own pass of the CNN (the code of
    both, as it was)."""
    model.eval()
    dev = device_of(model.cnn)
    probs, feats, aux = {}, {}, {}
    with torch.no_grad():
        for c in clips:
            p, f = [], []
            for s in range(0, len(frames[c.path]), 64):
                x = to_model_input(frames[c.path][s : s + 64], dev)
                with autocast(bf16, dev):
                    out = model.cnn(x)
                p.append(torch.softmax(out.logits.float(), 1).cpu().numpy())
                f.append(out.features.float().cpu().numpy())
            probs[c.path], feats[c.path] = np.concatenate(p), np.concatenate(f)
        if model.cfg.aux_heads:
            for c in clips:
                parts = []
                for s in range(0, len(frames[c.path]), 64):
                    with autocast(bf16, dev):
                        o = model.cnn(to_model_input(frames[c.path][s : s + 64], dev))
                    assert o.aux is not None
                    parts.append(torch.sigmoid(o.aux.float()).cpu().numpy())
                aux[c.path] = np.concatenate(parts)
    return probs, feats, aux


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("heads", [AUX_FINDINGS, ()])
def test_one_cnn_pass_gives_what_two_did(bf16: bool, heads: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    model = HybridModel(replace(ModelConfig.tiny("compact"), aux_heads=heads)).train()
    rng = np.random.default_rng(0)
    # 70 frames: two batches of the CNN, the second short
    clips = [LabelledClip(f"patient_{i}_L1.mp4", score=i % 4, group=str(i)) for i in range(3)]
    lengths = (5, 64, 70)
    frames = {c.path: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for c, n in zip(clips, lengths, strict=True)}
    want_probs, want_feats, want_aux = _two_passes(model, clips, frames, bf16)
    model.train()  # cnn_frames puts it in eval mode, as cnn_features did
    got = cnn_frames(model, clips, frames, bf16)
    assert not model.training
    for name, g, w in (("probs", got.probs, want_probs), ("feats", got.feats, want_feats), ("aux", got.aux, want_aux)):
        assert list(g) == list(w), name
        for path in w:
            assert g[path].dtype == w[path].dtype and np.array_equal(g[path], w[path]), (name, path)
    if heads:
        assert [a.shape for a in got.aux.values()] == [(5, 2), (64, 2), (70, 2)]
        assert np.abs(np.diff(got.aux["patient_2_L1.mp4"], axis=0)).max() > 1e-4  # frame i is frame i's
    else:
        assert got.aux == {}
    # without the findings, as stages and train ask for them
    probs, feats = cnn_features(model, clips, frames, bf16)
    assert all(np.array_equal(probs[p], want_probs[p]) and np.array_equal(feats[p], want_feats[p]) for p in probs)
    assert cnn_frames(model, clips, frames, bf16, aux=False).aux == {}
