"""The engine's fast CPU path (OpenVINO, BatchNorms folded) against plain PyTorch."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lusviewer.inference import ScoringEngine
from lusviewer.inference import engine as engine_module
from lusviewer.inference.runtime import RUNTIME_ENV, openvino_available, requested_runtime
from lusviewer.model import HybridModel, ModelCard, ModelConfig, load_model, parameter_counts, save_model
from lusviewer.model.fuse import fold_batchnorm

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "resources" / "sample_clip.mp4"
SHIPPED = ROOT / "models" / "lusviewer-compact.json"
needs_openvino = pytest.mark.skipif(
    not openvino_available(), reason="OpenVINO is not installed (the optional 'fast' extra)"
)


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters far from the identity, so that a wrong
    fold shows (a freshly made BatchNorm is the identity and would hide one)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g) * 0.5 + 1)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)


def _model(variant: str, aux: bool = False) -> HybridModel:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(variant)
    if aux:
        cfg = replace(cfg, aux_heads=("a_lines", "b_lines"))
    model = HybridModel(cfg).eval()
    _randomise_batchnorms(model)
    return model


@pytest.mark.parametrize("variant", ["cnn_lstm", "densenet", "compact"])
def test_folding_batchnorm_keeps_fp32_outputs(variant: str) -> None:
    model = _model(variant, aux=True)
    folded, n = fold_batchnorm(model.cnn)
    bns = [m for m in folded.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    # Per dense layer conv1 -> norm2, the stem conv0 -> norm0, the two BN1d -> linear; the compact
    # variant's conv -> BN pairs. DenseNet's pre-activation BNs (BN -> ReLU -> conv) stay.
    expected = {"cnn_lstm": 4 + 3, "densenet": 4 + 3, "compact": 8}[variant]
    assert n == expected
    assert all(isinstance(m, nn.BatchNorm2d) for m in bns)
    if variant == "compact":
        assert not bns
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        ref, out = model.cnn(x), folded(x)
    for name in ("logits", "features", "reconstruction", "aux"):
        a, b = getattr(ref, name), getattr(out, name)
        if a is None:
            assert b is None
            continue
        assert a.abs().max() > 1e-3  # not a test of zeros
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # The original is untouched (Grad-CAM and training use it).
    assert sum(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.cnn.modules()) == len(bns) + n


def _save(model: HybridModel, folder: Path, **inference: object) -> Path:
    card = ModelCard(
        name=f"tiny-{model.cfg.variant}",
        version="test",
        config=model.cfg,
        weights_file="",
        inference={"lstm_window": 12, "lstm_burn_in": 4, **inference},
        training={"data": "none (random init, for tests)"},
        parameters=parameter_counts(model),
    )
    return save_model(model, card, folder / f"tiny-{model.cfg.variant}.json", dtype=torch.float32)


@needs_openvino
@pytest.mark.parametrize("variant", ["cnn_lstm", "densenet", "compact"])
def test_openvino_and_torch_give_the_same_labels_on_the_sample_clip(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUSVIEWER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    card = _save(_model(variant, aux=True), tmp_path, findings_shown=["b_lines", "a_lines"])
    loaded = load_model(card)
    plain = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=8, runtime="torch")
    fast = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=8)  # auto: OpenVINO where installed
    assert (plain.runtime, fast.runtime) == ("torch", "openvino")
    assert "OpenVINO" in fast.description
    a, b = plain.score_clip(str(SAMPLE)), fast.score_clip(str(SAMPLE))
    assert b.extra["runtime"] == "openvino" and len(b.scores) == len(a.scores) == a.info.frame_count
    assert np.array_equal(a.scores, b.scores)
    assert a.summary.clip_score == b.summary.clip_score
    np.testing.assert_allclose(b.probs, a.probs, atol=1e-4)
    np.testing.assert_allclose(b.recon_error, a.recon_error, atol=1e-5, equal_nan=True)
    if a.findings is not None or b.findings is not None:
        assert a.findings is not None and b.findings is not None
        np.testing.assert_allclose(b.findings, a.findings, atol=1e-4)
    # A second engine reads the converted model from the cache.
    again = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=8)
    assert again.runtime == "openvino" and not getattr(again._runner, "converted", True)


@needs_openvino
@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is absent")
def test_shipped_model_fast_default_agrees_with_fp32_on_the_sample_clip() -> None:
    """The shipped model, the engine's default path (OpenVINO, bf16 where the CPU has it)
    against PyTorch fp32: the same clip score, and frame labels as bf16 autocast gets them."""
    loaded = load_model(SHIPPED)
    fp32 = ScoringEngine(loaded, device="cpu", precision="fp32", runtime="torch").score_clip(str(SAMPLE))
    fast_engine = ScoringEngine(loaded, device="cpu")
    assert fast_engine.runtime == "openvino"
    fast = fast_engine.score_clip(str(SAMPLE))
    assert fast.summary.clip_score == fp32.summary.clip_score
    assert (fast.scores == fp32.scores).mean() >= 0.96  # 50 frames: at most 2 differ (bf16: 99.2 % on 1,445 frames)


def test_runtime_is_chosen_by_argument_then_environment_then_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert requested_runtime(None, {}) == "auto"
    assert requested_runtime(None, {"runtime": "torch"}) == "torch"
    monkeypatch.setenv(RUNTIME_ENV, "Torch")
    assert requested_runtime(None, {"runtime": "openvino"}) == "torch"
    assert requested_runtime("openvino", {}) == "openvino"
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        requested_runtime("tensorrt", {})


def test_torch_is_forced_by_the_environment(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    with caplog.at_level(logging.INFO, logger="lusviewer.inference"):
        engine = ScoringEngine(load_model(tiny_model), device="cpu", precision="fp32")
    assert engine.runtime == "torch" and "OpenVINO" not in engine.description
    assert [r.getMessage() for r in caplog.records] == [f"{engine.card.display_name}: CNN on PyTorch (fp32; asked for)"]


def test_missing_runtime_falls_back_to_torch_with_one_line(
    tiny_model: Path, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    monkeypatch.setattr(engine_module, "openvino_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="lusviewer.inference"):
        engine = ScoringEngine(load_model(tiny_model), device="cpu", precision="fp32")
    assert engine.runtime == "torch"
    (line,) = [r.getMessage() for r in caplog.records]
    assert "PyTorch" in line and "OpenVINO is not installed" in line
    assert len(engine.score_clip(str(synthetic_clip)).scores) == 40


def test_failing_runtime_falls_back_to_torch(
    tiny_model: Path, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("no CPU plugin")

    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    monkeypatch.setattr(engine_module, "openvino_available", lambda: True)
    monkeypatch.setattr(engine_module, "OpenVINORunner", Broken)
    loaded = load_model(tiny_model)
    with caplog.at_level(logging.INFO, logger="lusviewer.inference"):
        engine = ScoringEngine(loaded, device="cpu", precision="fp32")
    assert engine.runtime == "torch"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "OpenVINO failed: no CPU plugin" in record.getMessage()
    ref = ScoringEngine(loaded, device="cpu", precision="fp32", runtime="torch").score_clip(str(synthetic_clip))
    assert np.array_equal(engine.score_clip(str(synthetic_clip)).probs, ref.probs)


def test_runtime_failing_mid_clip_finishes_on_torch(
    tiny_model: Path, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    loaded = load_model(tiny_model)
    engine = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=8, runtime="torch")
    calls = []

    def broken(x: torch.Tensor) -> object:
        calls.append(len(x))
        raise RuntimeError("inference request failed")

    engine.runtime, engine._runner = "openvino", broken
    result = engine.score_clip(str(synthetic_clip))
    ref = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=8, runtime="torch")
    assert calls == [8] and engine.runtime == "torch"
    assert np.array_equal(result.probs, ref.score_clip(str(synthetic_clip)).probs)
