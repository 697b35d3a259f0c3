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


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "compact"])
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


def test_compact_variant_is_about_a_million_parameters() -> None:
    counts = parameter_counts(HybridModel(ModelConfig(variant="compact", input_size=64)))
    assert counts["autoencoder"] == PINNED["autoencoder"]
    assert counts["sequence"] == 0
    assert counts["total"] == 861_948
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_old_cards_describe_the_same_architecture() -> None:
    """Fields added later are left out of a card where they keep the old behaviour, so
    the shipped card's bound settings still match."""
    d = ModelConfig().to_dict()
    assert not {"head", "aux_heads", "compact_channels"} & set(d)
    # the previous shipped card (lusviewer-hybrid 1)
    shipped = json.loads((Path(__file__).parent / "data" / "lusviewer-hybrid-1.json").read_text())
    assert d == shipped["architecture"]
    new = ModelConfig(variant="compact", head="coral", aux_heads=("a_lines", "b_lines"))
    assert ModelConfig.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    with pytest.raises(ValueError, match="head"):
        ModelConfig(head="probit")
    with pytest.raises(ValueError, match="auxiliary"):
        ModelConfig(aux_heads=("pleura",))


@pytest.mark.parametrize("variant", ["cnn", "compact", "densenet"])
def test_coral_head_gives_ordered_probabilities(variant: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(**{**ModelConfig.tiny(variant).__dict__, "head": "coral", "aux_heads": ("b_lines",)})
    cnn = HybridModel(cfg).cnn.eval()
    with torch.no_grad():
        out = cnn(torch.rand(5, 3, cfg.input_size, cfg.input_size))
    p = torch.softmax(out.logits, 1)
    torch.testing.assert_close(p.sum(1), torch.ones(5))
    assert out.cumulative is not None and out.cumulative.shape == (5, 3)
    up = torch.sigmoid(out.cumulative)
    torch.testing.assert_close(p[:, 1:].flip(1).cumsum(1).flip(1), up, atol=1e-4, rtol=0)
    assert out.aux is not None and out.aux.shape == (5, 1)


@pytest.mark.parametrize(
    ("variant", "batch", "frames", "has_recon"),
    [
        ("cnn_lstm", 2, 5, True),
        ("cnn", 1, 3, True),
        ("densenet", 3, 2, False),
        ("cnn_lstm", 1, 1, True),
        ("compact", 2, 3, True),
    ],
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
    with pytest.raises(ModelError, match=r"changed: architecture\.variant"):
        load_model(card_path)
    _unbind(card_path)  # weights saved before the binding: the weights themselves do not fit
    with pytest.raises(ModelError, match="do not fit"):
        load_model(card_path)


def test_shipped_model_card() -> None:
    """The shipped card states what the issue asks of a shipped model: its recipe's repeated
    cross-validation with intervals as the expected performance, the calibration, the clip
    rule, the Grad-CAM corner count, the command; trained on every patient."""
    from lusviewer.model.weights import CLIP_RULES
    from lusviewer.resources import default_model_path

    path = default_model_path()
    card = json.loads(path.read_text())
    assert card["architecture"]["variant"] == "compact" and card["input"]["crop"] == "sector"
    assert card["training"]["data_licence"] == "CC BY-NC-ND 4.0"
    assert "Wiedemann" in card["training"]["citation"]
    assert card["training"]["command"].startswith("lusviewer train")
    assert card["training"]["split"]["val_patients"] == [] and len(card["training"]["split"]["train_patients"]) == 50
    assert "no validation split" in card["metrics"]["note"]
    cv = card["metrics"]["repeated_cv"]
    for key in ("qwk", "mae", "exact", "within_one", "auc_ge1", "lus_total_spearman"):
        point, lo, hi = cv[key]
        assert lo <= point <= hi
    assert cv["vs_previous_recipe"]["qwk"][1] > 0  # the interval of the paired difference excludes 0
    cal = card["metrics"]["calibration"]
    assert cal["ece_after"] < cal["ece_before"] and card["inference"]["temperature"] == cal["temperature"]
    assert card["inference"]["clip_rule"]["rule"] in CLIP_RULES
    assert card["metrics"]["gradcam_corners"]["peaks_within_10pct_of_corner"] <= 10
    assert card["weights_dtype"] == "float16"
    loaded = load_model(path)  # hash verified, settings bound
    assert loaded.card.sha256 == card["sha256"] and loaded.warnings == []


def test_record_in_card_keeps_the_weights_verified(tmp_path: Path) -> None:
    from lusviewer.model import load_model
    from lusviewer.model.weights import record_in_card

    card_path = make_tiny_model(tmp_path)
    record_in_card(card_path, "inference", {"recon_error_limit": 0.05, "recon_error_check": "test"})
    loaded = load_model(card_path)  # the sha256 covers the weights, not the card
    assert loaded.card.inference["recon_error_limit"] == 0.05
    assert loaded.card.inference["lstm_window"] == 12  # what was there stays
    assert not list(tmp_path.glob("*.tmp"))


def _edit_card(card_path: Path, edit: dict[str, dict[str, object]]) -> None:
    card = json.loads(card_path.read_text())
    for section, values in edit.items():
        card[section].update(values)
    card_path.write_text(json.dumps(card, indent=2))


def _unbind(card_path: Path) -> None:
    """Rewrite the weights as lusviewer saved them before the binding (no settings in the metadata)."""
    from safetensors.torch import load_file, save_file

    from lusviewer.model import sha256_file

    w = card_path.with_suffix(".safetensors")
    save_file(load_file(str(w)), str(w), metadata={"format": "pt", "card": card_path.name})
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256_file(w)
    card_path.write_text(json.dumps(card, indent=2))


@pytest.mark.parametrize("bound", [True, False], ids=["bound", "legacy"])
@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"inference": {"lstm_burn_in": 12}}, "inference.lstm_burn_in"),  # = lstm_window
        ({"inference": {"lstm_burn_in": 40}}, "inference.lstm_burn_in"),
        ({"inference": {"lstm_burn_in": -1}}, "inference.lstm_burn_in"),
        ({"inference": {"lstm_window": 0}}, "inference.lstm_window"),
        ({"inference": {"lstm_window": "12"}}, "inference.lstm_window"),
        ({"inference": {"recon_error_limit": 1e9}}, "inference.recon_error_limit"),
        ({"inference": {"recon_error_limit": -0.1}}, "inference.recon_error_limit"),
        ({"inference": {"recon_error_limit": 1}}, "inference.recon_error_limit"),
        ({"inference": {"recon_error_limit": "0.05"}}, "inference.recon_error_limit"),
        ({"inference": {"bf16_label_agreement": 1.5}}, "inference.bf16_label_agreement"),
        ({"architecture": {"input_size": 0}}, "architecture.input_size"),
        ({"architecture": {"num_classes": 3}}, "architecture.num_classes"),
    ],
)
def test_impossible_card_settings_are_model_errors_naming_the_field(
    tmp_path: Path, edit: dict[str, dict[str, object]], field: str, bound: bool
) -> None:
    """lstm_burn_in >= lstm_window used to load and then fail every clip; a limit of 1e9
    silently switched the familiarity warning off. Now: refused at load, field named."""
    card_path = make_tiny_model(tmp_path, recon_error_limit=0.05)
    if not bound:
        _unbind(card_path)
    _edit_card(card_path, edit)
    with pytest.raises(ModelError, match="impossible") as err:
        load_model(card_path)
    assert field in str(err.value) and str(card_path) in str(err.value)
    assert "\n" not in str(err.value)


def test_impossible_card_is_exit_2_in_the_cli(tmp_path: Path, synthetic_clip: Path) -> None:
    import subprocess
    import sys

    card_path = make_tiny_model(tmp_path)
    _edit_card(card_path, {"inference": {"lstm_burn_in": 20}})  # window 12
    args = ["score", str(synthetic_clip), "-o", str(tmp_path / "r.csv"), "--model", str(card_path), "-q"]
    out = subprocess.run(
        [sys.executable, "-m", "lusviewer", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert "inference.lstm_burn_in" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        ({"inference": {"recon_error_limit": 0.9}}, "inference.recon_error_limit"),  # the warning, switched off
        ({"inference": {"lstm_window": 16}}, "inference.lstm_window"),
        ({"inference": {"bf16_label_agreement": 1.0}}, "inference.bf16_label_agreement"),
        ({"inference": {"new_setting": 1}}, "inference.new_setting"),
        ({"input": {"resize": "nearest"}}, "input.resize"),
        ({"architecture": {"extra": {"x": 1}}}, "architecture.extra.x"),
    ],
)
def test_edited_card_settings_do_not_match_the_weights(
    tmp_path: Path, edit: dict[str, dict[str, object]], changed: str
) -> None:
    card_path = make_tiny_model(tmp_path, recon_error_limit=0.05, bf16_label_agreement=0.5)
    _edit_card(card_path, edit)
    with pytest.raises(ModelError, match="not those the weights were saved with") as err:
        load_model(card_path)
    assert f"changed: {changed}" in str(err.value) and "\n" not in str(err.value)


def test_card_parts_that_inference_does_not_read_stay_editable(tmp_path: Path) -> None:
    card_path = make_tiny_model(tmp_path, recon_error_limit=0.05)
    _edit_card(
        card_path,
        {"inference": {"recon_error_check": "measured again"}, "training": {"data": "x"}, "metrics": {"note": "y"}},
    )
    card = json.loads(card_path.read_text())
    card["notes"] = "edited"
    card_path.write_text(json.dumps(card))
    loaded = load_model(card_path)
    assert loaded.warnings == [] and loaded.card.notes == "edited"


def test_weights_saved_before_the_binding_load_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card_path = make_tiny_model(tmp_path, recon_error_limit=0.05)
    _unbind(card_path)
    with caplog.at_level("WARNING", logger="lusviewer.model.weights"):
        loaded = load_model(card_path)
    assert len(loaded.warnings) == 1 and "not bound" in loaded.warnings[0] and "\n" not in loaded.warnings[0]
    assert [r.getMessage() for r in caplog.records] == loaded.warnings
    # Recording a fact in a legacy card leaves its weights as they were.
    before = card_path.with_suffix(".safetensors").read_bytes()
    from lusviewer.model.weights import record_in_card

    record_in_card(card_path, "inference", {"recon_error_limit": 0.06})
    assert card_path.with_suffix(".safetensors").read_bytes() == before
    assert load_model(card_path).card.inference["recon_error_limit"] == 0.06


def test_the_shipped_model_is_bound(tmp_path: Path) -> None:
    """The shipped model's settings (clip rule, temperature, familiarity limit...) are bound
    into its weights' metadata: it loads without a warning, and a copy whose card has an
    edited setting is refused; its free text may change."""
    import shutil

    from lusviewer.model import ModelError
    from lusviewer.model.weights import SETTINGS_SHA_KEY, _read_metadata
    from lusviewer.resources import default_model_path

    card_path = default_model_path()
    loaded = load_model(card_path)
    assert loaded.warnings == []
    assert SETTINGS_SHA_KEY in _read_metadata(loaded.weights_path)
    copy = tmp_path / card_path.name
    shutil.copy(card_path, copy)
    (tmp_path / loaded.card.weights_file).symlink_to(card_path.parent / loaded.card.weights_file)
    for key, value in (("recon_error_limit", 0.5), ("temperature", 1.0)):
        card = json.loads(card_path.read_text())
        card["inference"][key] = value
        copy.write_text(json.dumps(card))
        with pytest.raises(ModelError, match=key):
            load_model(copy)
    card = json.loads(card_path.read_text())
    card["notes"] = "edited"
    copy.write_text(json.dumps(card))
    assert load_model(copy).warnings == []


def test_the_previous_shipped_model_stays_bound_in_code() -> None:
    """lusviewer-hybrid 1 (shipped until 2026-12-02, in git history) predates the metadata
    binding: its settings stay bound by its weights' sha256 in BOUND_IN_CODE."""
    from lusviewer.model.weights import BOUND_IN_CODE, ModelCard, settings_sha256

    old = json.loads((Path(__file__).parent / "data" / "lusviewer-hybrid-1.json").read_text())
    assert BOUND_IN_CODE[old["sha256"]] == settings_sha256(ModelCard.from_dict(old))


def test_record_in_card_rebinds_a_changed_setting(tmp_path: Path) -> None:
    from safetensors import safe_open

    from lusviewer.model.weights import SETTINGS_SHA_KEY, record_in_card, settings_sha256

    card_path = make_tiny_model(tmp_path)
    record_in_card(card_path, "inference", {"recon_error_limit": 0.05})
    loaded = load_model(card_path)
    assert loaded.warnings == []
    with safe_open(str(card_path.with_suffix(".safetensors")), framework="pt") as f:
        assert (f.metadata() or {})[SETTINGS_SHA_KEY] == settings_sha256(loaded.card)
    with pytest.raises(ModelError, match="impossible"):  # not even through the sanctioned path
        record_in_card(card_path, "inference", {"lstm_burn_in": 99})
    assert load_model(card_path).card.inference["lstm_burn_in"] == 4
