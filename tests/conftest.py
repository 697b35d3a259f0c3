"""Shared fixtures: tiny random-init models, synthetic clips, the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from lusviewer.io.synthetic import synthetic_frames, write_video

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test (with the reason) where it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (needs ../shared/data beside the project)")
    return p


def make_tiny_model(folder: Path, variant: str = "cnn_lstm", seed: int = 0, **inference: object) -> Path:
    import torch

    from lusviewer.model import HybridModel, ModelCard, ModelConfig, parameter_counts, save_model

    torch.manual_seed(seed)
    cfg = ModelConfig.tiny(variant)
    model = HybridModel(cfg).eval()
    card = ModelCard(
        name=f"tiny-{variant}",
        version="test",
        config=cfg,
        weights_file="",
        inference={"lstm_window": 12, "lstm_burn_in": 4, **inference},
        training={"data": "none (random init, for tests)"},
        parameters=parameter_counts(model),
    )
    return save_model(model, card, folder / f"tiny-{variant}.json", dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-frame 96x96 mp4 at 20 fps."""
    path = tmp_path_factory.mktemp("clips") / "synthetic.mp4"
    return write_video(path, synthetic_frames(40, size=96, seed=1), fps=20.0)
