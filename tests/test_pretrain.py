"""Self-supervised pretraining of the DenseNet branch (`lusviewer pretrain`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_training import blues_like_folder

from lusviewer.model import HybridModel, ModelConfig
from lusviewer.model.pretrained import init_densenet_from
from lusviewer.model.weights import ModelError, sha256_file
from lusviewer.training import pretrain
from lusviewer.training.config import PretrainConfig
from lusviewer.training.data import load_covid_blues, split_by_group
from lusviewer.training.pretrain import run_pretrain, two_views
from lusviewer.training.probe import fit_probe


@pytest.fixture(scope="module")
def blues_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return blues_like_folder(tmp_path_factory.mktemp("blues"))


def _config(blues_like: Path, root: Path, **overrides: object) -> PretrainConfig:
    settings: dict = {
        "tiny": True,
        "input_size": 32,
        "val_fraction": 0.25,
        "frames_per_clip": 4,
        "batch_size": 8,
        "epochs": 2,
        "bf16": False,
        "val_frames_per_clip": 3,
        "command": "lusviewer pretrain (test)",
        **overrides,
    }
    return PretrainConfig(
        data=str(blues_like), out=str(root / "out" / "pre.safetensors"), work_dir=str(root / "work"), **settings
    )


def test_pretrain_holds_out_the_validation_patients_and_feeds_init_densenet(blues_like: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "broken.mp4").write_bytes(b"not a video")  # named and skipped, not fatal
    out = run_pretrain(_config(blues_like, tmp_path, extra=[str(extra), str(blues_like / "videos")]))
    card = json.loads(out.with_suffix(".json").read_text())
    _, val = split_by_group(load_covid_blues(blues_like), val_fraction=0.25, seed=0)
    held_out = sorted({c.group for c in val})
    assert card["data"]["held_out_patients"] == held_out
    assert set(card["data"]["training_patients"]).isdisjoint(held_out)
    # the labelled clips passed again as --extra are not a way round the split
    assert card["data"]["unlabelled_clips_used"] == 0 and card["data"]["labelled_clips_used"] == 16 - len(val)
    assert card["epochs"] == 2 and len(card["history"]) == 2
    assert all(np.isfinite(h["loss"]) for h in card["history"])
    assert card["sha256"] == sha256_file(out)
    for name in ("pretrained", "random_init"):
        assert card["probe"][name]["frame"]["n"] == 3 * len(val)
        assert card["probe"][name]["clip"]["n"] == len(val)
    diff = card["probe"]["pretrained_minus_random_init"]
    for level in ("frame", "clip"):
        d = diff[level]["macro_f1"]
        expected = card["probe"]["pretrained"][level]["macro_f1"] - card["probe"]["random_init"][level]["macro_f1"]
        assert d["value"] == pytest.approx(expected)
        assert d["ci95"][0] <= d["ci95"][1]

    model = HybridModel(ModelConfig.tiny("cnn_lstm"))
    n = init_densenet_from(model, out)
    saved = load_file(str(out))
    assert n == len(saved)
    branch = model.cnn.densenet
    for key, value in branch.features.state_dict().items():
        assert torch.equal(value, saved[f"features.{key}"])
    for key, value in branch.stem.state_dict().items():
        assert torch.equal(value, saved[f"stem.{key}"])


def test_pretrain_resumes_to_the_same_weights(
    blues_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = run_pretrain(_config(blues_like, tmp_path / "whole", probe=False))
    batches = json.loads((tmp_path / "whole" / "work" / "state.json").read_text())
    assert batches["pretrain"]["epoch"] == 2

    calls = {"n": 0}
    real = pretrain.two_views
    per_epoch = (16 - 4) * 4 // 8  # 12 training clips x 4 frames, batches of 8

    def interrupting(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] > per_epoch:  # the first batch of epoch 2: stop, as a killed run would
            raise KeyboardInterrupt
        return real(x, gen)

    monkeypatch.setattr(pretrain, "two_views", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(_config(blues_like, tmp_path / "parts", probe=False))
    monkeypatch.setattr(pretrain, "two_views", real)
    state = json.loads((tmp_path / "parts" / "work" / "state.json").read_text())
    assert state["pretrain"]["epoch"] == 1
    resumed = run_pretrain(_config(blues_like, tmp_path / "parts", probe=False))
    a, b = load_file(str(whole)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_refuses_a_work_dir_of_other_settings(blues_like: Path, tmp_path: Path) -> None:
    run_pretrain(_config(blues_like, tmp_path, epochs=1, probe=False))
    with pytest.raises(ValueError, match="other settings"):
        run_pretrain(_config(blues_like, tmp_path, epochs=1, probe=False, seed=3))


def test_two_views_differ_stay_in_range_and_are_seeded() -> None:
    x = torch.rand(4, 3, 32, 32)
    a1, a2 = two_views(x, torch.Generator().manual_seed(5))
    b1, b2 = two_views(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a1, b1)
    torch.testing.assert_close(a2, b2)
    assert float((a1 - a2).abs().mean()) > 0.01
    assert float(a1.min()) >= 0 and float(a1.max()) <= 1


def test_linear_probe_finds_a_planted_signal() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 20))
    x[:, 3] += 5 * y  # one informative feature among noise (chance: 0.25)
    mean, std, w, b = fit_probe(x[:300], y[:300])
    pred = (((x[300:] - mean) / std) @ w + b).argmax(1)
    assert (pred == y[300:]).mean() > 0.9


def test_init_densenet_refuses_a_stem_of_another_shape(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = HybridModel(ModelConfig.tiny("cnn_lstm"))
    state = {f"features.{k}": v for k, v in model.cnn.densenet.features.state_dict().items()}
    state["stem.0.weight"] = torch.zeros(5, 3, 3, 3)
    state["stem.0.bias"] = torch.zeros(5)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelError, match="stem"):
        init_densenet_from(model, tmp_path / "bad.safetensors")


def test_train_pretrains_on_its_own_training_patients_first(blues_like: Path, tmp_path: Path) -> None:
    from test_training import _tiny_config

    from lusviewer.training.train import run_training

    cfg = _tiny_config(blues_like, tmp_path, pretrain_epochs=1, cnn_epochs=1, lstm_epochs=1)
    card = json.loads(run_training(cfg).read_text())
    pre = json.loads((tmp_path / "work" / "pretrain" / "densenet.json").read_text())
    split = card["training"]["split"]
    assert pre["data"]["training_patients"] == sorted(split["train_patients"])
    assert pre["data"]["held_out_patients"] == sorted(split["val_patients"])
    assert "pretrained here" in card["training"]["initialisation"]
    assert card["training"]["pretraining"]["probe"] == pre["probe"]


def test_init_densenet_refuses_weights_pretrained_on_held_out_patients(blues_like: Path, tmp_path: Path) -> None:
    from test_training import _tiny_config

    from lusviewer.training.train import initial_densenet

    clips = load_covid_blues(blues_like)
    train, val = split_by_group(clips, val_fraction=0.25, seed=0)
    other = run_pretrain(_config(blues_like, tmp_path / "seed1", epochs=1, probe=False, seed=1))
    seen = json.loads(other.with_suffix(".json").read_text())["data"]["training_patients"]
    assert set(seen) & {c.group for c in val}  # another split: it saw this run's validation patients
    cfg = _tiny_config(blues_like, tmp_path, init_densenet=str(other))
    with pytest.raises(ValueError, match="holds out"):
        initial_densenet(cfg, train, val, {}, tmp_path / "pre", what="this training run")
    same = run_pretrain(_config(blues_like, tmp_path / "seed0", epochs=1, probe=False, seed=0))
    cfg = _tiny_config(blues_like, tmp_path, init_densenet=str(same))
    assert initial_densenet(cfg, train, val, {}, tmp_path / "pre", what="this training run") == str(same)
    # in a cross-validation its training patients are some fold's test patients: refused there
    with pytest.raises(ValueError, match="fold 0"):
        initial_densenet(cfg, train, [], {}, tmp_path / "pre", what="fold 0", held_out=train[:1])


def test_crossval_pretrains_each_fold_on_its_training_side_only(blues_like: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from test_training import _tiny_config

    from lusviewer.training.crossval import run_crossval

    cfg = replace(_tiny_config(blues_like, tmp_path, pretrain_epochs=1, cnn_epochs=1), out=str(tmp_path / "cv"))
    report = run_crossval(cfg, k=2, variants=("cnn",))
    assert report is not None and "pretrained on each fold's training patients' frames" in report.read_text()
    for fold in range(2):
        pre = json.loads((tmp_path / "cv" / f"fold{fold}" / "pretrain" / "densenet.json").read_text())
        result = json.loads((tmp_path / "cv" / f"fold{fold}" / "cnn" / "result.json").read_text())
        assert set(pre["data"]["training_patients"]).isdisjoint(result["test_patients"])
        assert set(pre["data"]["training_patients"]).isdisjoint(pre["data"]["held_out_patients"])


def test_a_work_dir_pretrained_on_other_patients_is_not_reused(blues_like: Path, tmp_path: Path) -> None:
    from test_training import _tiny_config

    from lusviewer.training.pretrain import pretrain_for

    clips = load_covid_blues(blues_like)
    cfg = _tiny_config(blues_like, tmp_path, pretrain_epochs=1)
    train0, val0 = split_by_group(clips, val_fraction=0.25, seed=0)
    pretrain_for(cfg, train0, val0, _frames(clips), tmp_path / "pre")
    train1, val1 = split_by_group(clips, val_fraction=0.25, seed=1)
    assert {c.group for c in train1} != {c.group for c in train0}
    with pytest.raises(ValueError, match="other patients"):
        pretrain_for(cfg, train1, val1, _frames(clips), tmp_path / "pre")


def test_the_leak_check_reads_the_weights_file_not_only_its_card(blues_like: Path, tmp_path: Path) -> None:
    from lusviewer.training.pretrain import check_held_out

    out = run_pretrain(_config(blues_like, tmp_path, epochs=1, probe=False))
    out.with_suffix(".json").unlink()  # copied without its card
    seen = json.loads(load_file_metadata(out)["training_patients"])
    with pytest.raises(ValueError, match="holds out"):
        check_held_out(out, str(blues_like), {seen[0]}, "this training run")
    check_held_out(out, str(tmp_path / "elsewhere"), {seen[0]}, "this training run")  # other data: no claim


def load_file_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata() or {})


def _frames(clips: list) -> dict[str, np.ndarray]:
    from lusviewer.training.data import cached_frames

    return {c.path: cached_frames(c.path, 32, None) for c in clips}


def test_probe_script_probes_a_weights_file_and_refuses_a_leaky_one(blues_like: Path, tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("probe_branch", Path(__file__).parents[1] / "scripts/probe_branch.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    same = run_pretrain(_config(blues_like, tmp_path / "seed0", epochs=1, probe=False, seed=0))
    args = ["--data", str(blues_like), "--tiny", "--fp32", "--frames-per-clip", "3", "--val-fraction", "0.25"]
    out = tmp_path / "probe.json"
    assert script.main([*args, "--weights", str(same), "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["pretrained"]["frame"]["n"] == report["random_init"]["frame"]["n"] > 0
    assert "pretrained_minus_random_init" in report
    other = run_pretrain(_config(blues_like, tmp_path / "seed1", epochs=1, probe=False, seed=1))
    assert script.main([*args, "--weights", str(other)]) == 2


def test_pretraining_that_cannot_fill_one_batch_is_refused(blues_like: Path, tmp_path: Path) -> None:
    """As stage 1 (tests/test_probe_cli.py): an epoch with no step used to log a loss of 0
    and save the random weights as pretrained."""
    with pytest.raises(ValueError, match="do not fill one batch of 512"):
        run_pretrain(_config(blues_like, tmp_path, batch_size=512, frames_per_clip=1))
    assert not (tmp_path / "out" / "pre.safetensors").exists()
