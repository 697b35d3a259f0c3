"""Initialise the DenseNet-201 branch from a user-supplied torchvision checkpoint.

No weights can be downloaded on the machines this project is built on, so ImageNet
weights are never fetched: a user who has torchvision's ``densenet201-c1103571.pth``
(or a ``.safetensors`` of the same state dict) passes its path, and so does one who
pretrained the branch on LUS frames with ``lusviewer pretrain``. The file is read
without unpickling code: ``torch.load(..., weights_only=True)`` accepts only tensors
and plain containers, and safetensors holds nothing else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from lusviewer.model.hybrid import HybridModel
from lusviewer.model.weights import ModelError

# Old torchvision checkpoints name dense-layer parts 'norm.1', 'conv.2', ...
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: file not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, corrupt file, wrong format
        raise ModelError(f"{p}: not a readable weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelError(f"{p}: expected a state dict of tensors")
    return dict(state)


def init_densenet_from(model: HybridModel, path: str | os.PathLike[str]) -> int:
    """Copy ``features.*`` of a torchvision DenseNet-201 state dict into the model's
    DenseNet branch, and ``stem.*`` where present (``lusviewer pretrain`` output);
    returns the number of tensors loaded. A classifier is ignored."""
    from lusviewer.model.hybrid import HybridCNN

    cnn = model.cnn
    if not isinstance(cnn, HybridCNN):
        raise ModelError(f"{path}: the {model.cfg.variant} variant has no DenseNet branch to initialise")
    state = read_state_dict(path)
    feats: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        m = _OLD_KEY.match(key)
        if m:
            key = m.group(1) + m.group(2)
        if key.startswith("features."):
            feats[key.removeprefix("features.")] = value
    target = cnn.densenet.features
    expected = target.state_dict()
    for k, v in expected.items():  # old checkpoints predate BatchNorm's step counter
        if k.endswith("num_batches_tracked"):
            feats.setdefault(k, v)
    missing = sorted(set(expected) - set(feats))
    if missing:
        raise ModelError(
            f"{path}: not a DenseNet state dict matching this architecture "
            f"({len(missing)} of {len(expected)} tensors missing, e.g. {missing[0]!r})"
        )
    wrong = [k for k in expected if tuple(feats[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ModelError(f"{path}: shape mismatch for {wrong[0]!r} (a DenseNet of another depth?)")
    target.load_state_dict({k: feats[k] for k in expected})
    # `lusviewer pretrain` also keeps the branch's stem conv, which its features were learnt behind
    stem = {k.removeprefix("stem."): v for k, v in state.items() if k.startswith("stem.")}
    if stem:
        own = cnn.densenet.stem
        if set(stem) != set(own.state_dict()) or any(
            tuple(stem[k].shape) != tuple(v.shape) for k, v in own.state_dict().items()
        ):
            raise ModelError(f"{path}: its stem.* tensors do not match this architecture's DenseNet stem")
        own.load_state_dict(stem)
    return len(expected) + len(stem)
