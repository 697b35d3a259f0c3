from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torchvision.models import DenseNet

from lusviewer.model import HybridModel, ModelConfig, ModelError
from lusviewer.model.pretrained import init_densenet_from


def tiny_torchvision_densenet(cfg: ModelConfig) -> DenseNet:
    torch.manual_seed(7)
    return DenseNet(
        growth_rate=cfg.densenet_growth_rate,
        block_config=cfg.densenet_block_config,  # type: ignore[arg-type]
        num_init_features=cfg.densenet_init_features,
        num_classes=1000,
    )


def test_init_from_torchvision_pth_with_old_keys(tmp_path: Path) -> None:
    cfg = ModelConfig.tiny("cnn")
    ref = tiny_torchvision_densenet(cfg)
    state = ref.state_dict()
    # Rename to the old 'norm.1' style that torchvision's published checkpoints use.
    old = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")  # as in torchvision's published file
    }
    torch.save(old, tmp_path / "densenet.pth")
    model = HybridModel(cfg)
    n = init_densenet_from(model, tmp_path / "densenet.pth")
    assert n == len(model.cnn.densenet.features.state_dict())
    for k, v in ref.features.state_dict().items():
        torch.testing.assert_close(model.cnn.densenet.features.state_dict()[k], v)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refuses_pickled_code_and_wrong_architecture(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("unpickled code ran",))

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as fh:
        pickle.dump({"features.x": Evil()}, fh)
    model = HybridModel(ModelConfig.tiny("cnn"))
    with pytest.raises(ModelError, match="not a readable weights file"):
        init_densenet_from(model, bad)
    other = ModelConfig.tiny("cnn")
    other_net = DenseNet(growth_rate=8, block_config=(1, 1, 1, 1), num_init_features=8)
    torch.save(other_net.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ModelError, match="shape mismatch"):
        init_densenet_from(HybridModel(other), tmp_path / "other.pth")
    with pytest.raises(ModelError, match="file not found"):
        init_densenet_from(model, tmp_path / "none.pth")


def test_train_with_init_densenet_records_it(tmp_path: Path) -> None:
    from test_training import blues_like_folder

    from lusviewer.training.train import TrainConfig, run_training

    cfg_model = ModelConfig.tiny("cnn")
    torch.save(tiny_torchvision_densenet(cfg_model).state_dict(), tmp_path / "dn.pth")
    data = blues_like_folder(tmp_path / "data")
    cfg = TrainConfig(
        data=str(data), out=str(tmp_path / "out"), work_dir=str(tmp_path / "w"), variant="cnn", tiny=True,
        val_fraction=0.25, frames_per_clip=2, val_frames_per_clip=2, batch_size=8, cnn_epochs=1, bf16=False,
        init_densenet=str(tmp_path / "dn.pth"), command="test",
    )  # fmt: skip
    import json

    card = json.loads(run_training(cfg).read_text())
    assert card["training"]["initialisation"].startswith("DenseNet-201 branch from dn.pth")
