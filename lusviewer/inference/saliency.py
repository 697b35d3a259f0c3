"""Grad-CAM saliency for one frame (Selvaraju et al. 2017), as the paper ships it.

The map is taken at the last convolution of the classification paths (32x32 at a
128 px input, where path A, path B and the traded autoencoder/separable features
meet); for the ``densenet`` variant, at DenseNet-201's last feature map; for a CNN
that names its own layer (``cam_layer``, e.g. the compact variant), there. Gradients
are those of the logit of ``target`` (default: the CNN's own prediction).

For a model that sees the clip's ultrasound sector only (``input.crop: sector``), the
frame is cropped as for scoring and the map, computed on what the model saw, is mapped
back onto the sector of the frame (zero outside it).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from lusviewer.model.hybrid import ClassificationPaths, DenseNetBranch, ModelConfig
from lusviewer.model.preprocess import Sector, resize_frame, to_model_input


def _target_layer(cnn: nn.Module) -> nn.Module:
    """The layer the map is taken at: the CNN's own ``cam_layer`` where it has one, else
    the classification paths' last convolution, else DenseNet-201's last feature map."""
    layer = getattr(cnn, "cam_layer", None)
    if isinstance(layer, nn.Module):
        return layer
    paths = getattr(cnn, "paths", None)
    if isinstance(paths, ClassificationPaths):
        f2: nn.Module = paths.f2
        return f2
    densenet = getattr(cnn, "densenet", None)
    if isinstance(densenet, DenseNetBranch):
        features: nn.Module = densenet.features
        return features
    raise ValueError(f"{type(cnn).__name__} has no layer to take Grad-CAM at (cam_layer, paths or densenet)")


def grad_cam(
    cnn: nn.Module,
    frame: np.ndarray,
    *,
    target: int | None = None,
    device: torch.device | str = "cpu",
    sector: Sector | None = None,
) -> tuple[np.ndarray, int]:
    """Saliency in [0, 1] at the frame's own size (H, W) float32, and the class explained.

    ``sector``: the clip's, for a model that sees the sector only (the frame is cropped
    to it and the map is zero outside it); None: the whole frame, resized."""
    cfg = getattr(cnn, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"{type(cnn).__name__} has no cfg (ModelConfig) that gives its input size")
    size = cfg.input_size
    small = resize_frame(frame, size) if sector is None else sector.apply(frame, size)
    x = to_model_input(small[None], device)
    store: dict[str, Tensor] = {}

    def hook(_m: nn.Module, _inp: Any, out: Tensor) -> None:
        out.retain_grad()
        store["act"] = out

    was_training = cnn.training
    cnn.eval()
    handle = _target_layer(cnn).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = cnn(x.requires_grad_(True))
            cls = int(out.logits[0].argmax()) if target is None else int(target)
            cnn.zero_grad(set_to_none=True)
            out.logits[0, cls].backward()  # type: ignore[no-untyped-call]
        act = store["act"].detach()[0]
        grad = store["act"].grad
        assert grad is not None
        weights = grad[0].mean((1, 2))
        cam = torch.relu((weights[:, None, None] * act).sum(0)).float().cpu().numpy()
    finally:
        handle.remove()
        cnn.zero_grad(set_to_none=True)
        cnn.train(was_training)
    if cam.max() > 0:
        cam = cam / cam.max()
    if sector is None:
        cam = cv2.resize(cam, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
    else:  # the map covers the model's input, i.e. the sector's box: back there, zero outside the sector
        cam = sector.to_frame(np.ascontiguousarray(cam, dtype=np.float32), fill=0.0)
    return np.clip(cam, 0, 1).astype(np.float32), cls


def share_on_background(cam: np.ndarray, frame: np.ndarray, *, black: float = 12.0, flat: float = 2.0) -> float:
    """The share of a saliency map's mass that lies on black, echo-free background:
    pixels whose 9x9 neighbourhood is darker than ``black`` grey levels and has no
    speckle (standard deviation below ``flat``), i.e. outside the ultrasound sector or
    where the image shows nothing. A map that looks mostly there explains nothing
    about the lung."""
    grey = (frame.mean(2) if frame.ndim == 3 else frame).astype(np.float32)
    mean = cv2.blur(grey, (9, 9))
    sd = np.sqrt(np.maximum(cv2.blur(grey * grey, (9, 9)) - mean * mean, 0.0))
    background = (mean < black) & (sd < flat)
    total = float(cam.sum())
    return float(cam[background].sum()) / total if total > 0 else 0.0
