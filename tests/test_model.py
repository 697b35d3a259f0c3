from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model

from lusviewer.inference.sequence import SequenceStreamer, sequence_logits
from lusviewer.model import (
    VARIANTS,
    HybridModel,
    ModelConfig,
    ModelError,
    load_model,
    parameter_counts,
)

# Parameters per part of the paper-size model (input 128): changing the
# architecture must be deliberate, and must update these numbers and the card.
PINNED = {
    "autoencoder": 7288,
    "separable": 515,
    "paths": 924912,
    "densenet": 18588628,
    "head": 21875140,
    "sequence": 12288116,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts_pinned(variant: str) -> None:
    counts = parameter_counts(HybridModel(ModelConfig(variant=variant)))
    if variant == "densenet":
        assert counts["autoencoder"] == counts["separable"] == counts["paths"] == counts["sequence"] == 0
        assert counts["densenet"] == PINNED["densenet"]
    else:
        for part in ("autoencoder", "separable", "paths", "densenet", "head"):
            assert counts[part] == PINNED[part], part
        assert counts["sequence"] == (PINNED["sequence"] if variant == "cnn_lstm" else 0)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


@pytest.mark.parametrize(
    ("variant", "batch", "frames", "has_recon"),
    [("cnn_lstm", 2, 5, True), ("cnn", 1, 3, True), ("densenet", 3, 2, False), ("cnn_lstm", 1, 1, True)],
)
def test_forward_shapes(variant: str, batch: int, frames: int, has_recon: bool) -> None:
    cfg = ModelConfig.tiny(variant)
    model = HybridModel(cfg).eval()
    x = torch.rand(batch, frames, 3, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        logits, rec = model(x)
    assert logits.shape == (batch, frames, 4)
    if has_recon:
        assert rec is not None and rec.shape == x.shape
        assert float(rec.min()) >= 0.0 and float(rec.max()) <= 1.0
    else:
        assert rec is None


def test_config_roundtrip_and_validation() -> None:
    cfg = ModelConfig.tiny("cnn")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="variant"):
        ModelConfig(variant="resnet")


def test_streaming_equals_all_at_once() -> None:
    torch.manual_seed(0)
    model = HybridModel(ModelConfig.tiny()).eval()
    assert model.sequence is not None
    feats = torch.randn(53, model.cfg.feature_dim)
    with torch.no_grad():
        whole = sequence_logits(model.sequence, feats, window=12, burn_in=4)
        s = SequenceStreamer(model.sequence, window=12, burn_in=4)
        parts = [s.push(feats[a:b]) for a, b in [(0, 1), (1, 9), (9, 30), (30, 31), (31, 53)]]
        streamed = torch.cat([*parts, s.flush()])
        # A window at least as long as the clip is one plain LSTM pass.
        direct, _ = model.sequence(feats[None, :7])
        short = sequence_logits(model.sequence, feats[:7], window=12, burn_in=4)
    assert whole.shape == (53, 4)
    torch.testing.assert_close(streamed, whole)
    torch.testing.assert_close(short, direct[0])


def test_frame_sees_burn_in_context_only() -> None:
    """Frame t's output depends on at most burn_in + stride - 1 earlier frames."""
    torch.manual_seed(1)
    model = HybridModel(ModelConfig.tiny()).eval()
    assert model.sequence is not None
    feats = torch.randn(40, model.cfg.feature_dim)
    changed = feats.clone()
    changed[0] += 5.0
    with torch.no_grad():
        a = sequence_logits(model.sequence, feats, window=12, burn_in=4)
        b = sequence_logits(model.sequence, changed, window=12, burn_in=4)
    assert not torch.allclose(a[:8], b[:8])
    torch.testing.assert_close(a[16:], b[16:])


def test_save_load_roundtrip_and_hash(tmp_path: Path) -> None:
    card_path = make_tiny_model(tmp_path, "cnn_lstm", seed=3)
    loaded = load_model(card_path)
    again = load_model(card_path.with_suffix(".safetensors"))
    x = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x)[0], again.model(x)[0])
    card = json.loads(card_path.read_text())
    for key in ("architecture", "classes", "input", "training", "metrics", "sha256", "weights_file"):
        assert key in card
    # Corrupt one byte of the weights: refused, naming the file.
    w = card_path.with_suffix(".safetensors")
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"sha256 .* does not match") as err:
        load_model(card_path)
    assert str(w) in str(err.value)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model card not found"):
        load_model(tmp_path / "nothing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="not a valid model card"):
        load_model(bad)
    card_path = make_tiny_model(tmp_path, "cnn")
    card = json.loads(card_path.read_text())
    card["architecture"]["variant"] = "cnn_lstm"  # weights lack the LSTM
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not fit"):
        load_model(card_path)


def test_shipped_model_card() -> None:
    from lusviewer.resources import default_model_path

    path = default_model_path()
    card = json.loads(path.read_text())
    assert card["architecture"]["variant"] == "cnn_lstm"
    assert card["training"]["data_licence"] == "CC BY-NC-ND 4.0"
    assert "Wiedemann" in card["training"]["citation"]
    assert card["training"]["command"].startswith("lusviewer train")
    assert set(card["training"]["split"]["train_patients"]).isdisjoint(card["training"]["split"]["val_patients"])
    # The card carries measured validation metrics beside the majority-class baseline
    # (how good they are is for the card and docs/model.md to say, not for a test).
    base = card["metrics"]["baselines"]
    n_frames = base["majority_frame"]["n"]
    for variant in ("cnn", "cnn_lstm"):
        for level, n in (("frame", n_frames), ("clip", card["training"]["split"]["val_clips"])):
            m = card["metrics"][variant][level]
            assert m["n"] == n
            assert all(0.0 <= m[k] <= 1.0 for k in ("accuracy", "macro_f1", "within_one"))
    loaded = load_model(path)  # hash verified
    assert loaded.card.sha256 == card["sha256"]


def test_record_in_card_keeps_the_weights_verified(tmp_path: Path) -> None:
    from lusviewer.model import load_model
    from lusviewer.model.weights import record_in_card

    card_path = make_tiny_model(tmp_path)
    record_in_card(card_path, "inference", {"recon_error_limit": 0.05, "recon_error_check": "test"})
    loaded = load_model(card_path)  # the sha256 covers the weights, not the card
    assert loaded.card.inference["recon_error_limit"] == 0.05
    assert loaded.card.inference["lstm_window"] == 12  # what was there stays
    assert not list(tmp_path.glob("*.tmp"))
