from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from lusviewer.inference import Cancelled, ScoredFrames, ScoringEngine
from lusviewer.inference.engine import resolve_precision
from lusviewer.io import ClipError, open_clip
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.model import load_model


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> ScoringEngine:
    return ScoringEngine(load_model(tiny_model), device="cpu", precision="fp32", batch_size=7)


def test_scores_every_frame_and_streams_in_order(engine: ScoringEngine, synthetic_clip: Path) -> None:
    chunks: list[ScoredFrames] = []
    progress: list[tuple[int, int]] = []
    result = engine.score_clip(
        str(synthetic_clip), on_frames=chunks.append, progress=lambda d, t: progress.append((d, t))
    )
    assert len(result.scores) == result.info.frame_count == 40
    np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-5)
    assert np.array_equal(result.scores, result.probs.argmax(1))
    assert np.all(np.isfinite(result.recon_error)) and np.all(result.recon_error >= 0)
    starts = [c.start for c in chunks]
    assert starts[0] == 0 and all(b == a + len(c.scores) for a, b, c in zip(starts, starts[1:], chunks, strict=False))
    assert np.array_equal(np.concatenate([c.probs for c in chunks]), result.probs)
    assert progress[-1] == (40, 40)
    assert sum(result.summary.counts) == 40


def test_batch_size_does_not_change_results(tiny_model: Path, synthetic_clip: Path) -> None:
    loaded = load_model(tiny_model)
    a = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=1).score_clip(str(synthetic_clip))
    b = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=32).score_clip(str(synthetic_clip))
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    np.testing.assert_allclose(a.recon_error, b.recon_error, atol=1e-6)


def test_single_frame_clip(engine: ScoringEngine, tmp_path: Path) -> None:
    path = write_video(tmp_path / "one.avi", synthetic_frames(1, size=40), fourcc="MJPG")
    result = engine.score_clip(str(path))
    assert len(result.scores) == 1 and result.summary.worst_frame == 0


def test_cancel_between_batches(engine: ScoringEngine, synthetic_clip: Path) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def on_frames(chunk: ScoredFrames) -> None:
        seen.append(chunk.start)
        cancel.set()

    with pytest.raises(Cancelled):
        engine.score_clip(str(synthetic_clip), on_frames=on_frames, cancel=cancel)
    assert len(seen) == 1
    assert not [t for t in threading.enumerate() if t.name == "lusviewer-decode"]


def test_bad_clip_raises_clip_error(engine: ScoringEngine, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(ClipError, match=r"bad\.mp4"):
        engine.score_clip(str(bad))


def test_reconstruction_matches_frame_size(engine: ScoringEngine, synthetic_clip: Path) -> None:
    with open_clip(synthetic_clip) as clip:
        frame = clip.frame(3)
    rec = engine.reconstruct(frame)
    assert rec is not None and rec.shape == frame.shape and rec.dtype == np.uint8


def test_precision_choice() -> None:
    import torch

    cpu = torch.device("cpu")
    assert resolve_precision(cpu, "auto", {}) == "fp32"  # no measured agreement: stay exact
    assert resolve_precision(cpu, "auto", {"bf16_label_agreement": 0.95}) == "fp32"
    assert resolve_precision(cpu, "fp32", {"bf16_label_agreement": 1.0}) == "fp32"
    with pytest.raises(ValueError):
        resolve_precision(cpu, "int8", {})


def test_share_of_saliency_on_black_background() -> None:
    from lusviewer.inference.saliency import share_on_background

    rng = np.random.default_rng(0)
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:, 32:] = rng.integers(20, 200, (64, 32, 1), dtype=np.uint8)  # speckled tissue on the right half
    cam = np.zeros((64, 64), np.float32)
    cam[10:20, 2:12] = 1.0  # on the black left half
    assert share_on_background(cam, frame) == pytest.approx(1.0)
    cam[:] = 0
    cam[10:20, 45:60] = 1.0  # on tissue
    assert share_on_background(cam, frame) == pytest.approx(0.0)
    assert share_on_background(np.zeros((64, 64), np.float32), frame) == 0.0
