from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.model import load_model
from lusviewer.training.data import augment, load_covid_blues, split_by_group
from lusviewer.training.train import TrainConfig, _load_optim, _save_optim, run_training


@pytest.fixture(scope="module")
def blues_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return blues_like_folder(tmp_path_factory.mktemp("blues"))


def blues_like_folder(root: Path) -> Path:
    """A COVID-BLUeS-shaped folder: 8 patients x 2 clips, synthetic frames."""
    (root / "videos").mkdir(parents=True)
    with open(root / "severity.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_file", "Severity Score", "A-lines", "B-lines", "comments"])
        for p in range(1, 9):
            for k, point in enumerate(("L1", "R2")):
                score = (p + k) % 4
                name = f"patient_{p}_{point}"
                write_video(
                    root / "videos" / f"{name}.mp4", synthetic_frames(10, size=40, seed=p * 10 + k, b_lines=score > 0)
                )
                w.writerow([name, f"{score}.0", "yes", "yes ", ""])
    return root


def test_split_is_patient_disjoint(blues_like: Path) -> None:
    clips = load_covid_blues(blues_like)
    assert len(clips) == 16 and {c.group for c in clips} == {str(p) for p in range(1, 9)}
    for seed in range(5):
        train, val = split_by_group(clips, val_fraction=0.25, seed=seed)
        assert {c.group for c in train}.isdisjoint({c.group for c in val})
        assert len(train) + len(val) == 16 and val


def test_augment_keeps_range_and_is_seeded() -> None:
    x = torch.rand(4, 3, 32, 32)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)


def test_optimizer_state_roundtrip(tmp_path: Path) -> None:
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    _save_optim(tmp_path / "o.safetensors", opt)
    opt2 = torch.optim.AdamW(lin.parameters(), lr=5.0)
    _load_optim(tmp_path / "o.safetensors", opt2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 1e-3
    for pid in s1["state"]:
        for k, v in s1["state"][pid].items():
            torch.testing.assert_close(torch.as_tensor(s2["state"][pid][k]), torch.as_tensor(v))


def test_train_tiny_end_to_end_and_resume(blues_like: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        data=str(blues_like),
        out=str(tmp_path / "out"),
        work_dir=str(tmp_path / "work"),
        tiny=True,
        val_fraction=0.25,
        frames_per_clip=4,
        val_frames_per_clip=3,
        batch_size=8,
        cnn_epochs=2,
        lstm_epochs=2,
        seq_len=6,
        bf16=False,
        command="lusviewer train (test)",
    )
    card_path = run_training(cfg)
    card = json.loads(card_path.read_text())
    split = card["training"]["split"]
    assert set(split["train_patients"]).isdisjoint(split["val_patients"])
    for key in ("cnn", "cnn_lstm", "baselines"):
        assert key in card["metrics"]
    assert card["metrics"]["cnn_lstm"]["frame"]["n"] == 10 * split["val_clips"]
    loaded = load_model(card_path)
    assert loaded.card.config.variant == "cnn_lstm"
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["cnn"]["done"] and state["cnn"]["epoch"] == 2 and state["lstm"]["done"]
    # Rerun on the same work dir: both stages are done, nothing is retrained.
    before = load_model(card_path).model.cnn.classifier[1].weight.detach().numpy()
    run_training(cfg)
    after = load_model(card_path).model.cnn.classifier[1].weight.detach().numpy()
    np.testing.assert_allclose(before, after, atol=1e-3)
