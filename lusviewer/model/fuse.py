"""Eval-only BatchNorm folding: a copy of a per-frame CNN with every BatchNorm that can be
folded exactly folded into its neighbouring convolution or linear layer.

What folds (inference only: the BatchNorm's running statistics are constants):

* ``conv -> BN`` (DenseNet's stem ``conv0 -> norm0``, each dense layer's
  ``conv1 -> norm2``, the compact variant's ``conv -> BN`` pairs): the BN's scale and
  shift go into the convolution's weight and bias.
* ``BN1d -> dropout -> linear`` (the heads' input batch norms): dropout is the
  identity in eval, so the BN's affine map goes into the linear layer.

What does not: DenseNet's pre-activation ``BN -> ReLU -> conv`` (``norm1``, the
transitions' ``norm``, ``norm5``): the ReLU between them is not linear, so the BN can
be folded neither forward into the convolution nor backward into the producers of its
input (each channel of the concatenated input is normalised differently by every layer
that reads it). Those stay BatchNorm layers.

The original module is never changed (Grad-CAM and training keep using it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.densenet import _DenseLayer

from lusviewer.model.hybrid import DenseNetBranch


@torch.no_grad()
def _bn_scale_shift(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None
    var = bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` in eval (computed in float64)."""
    scale, shift = _bn_scale_shift(bn)
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    w = conv.weight.double() * scale.view(-1, 1, 1, 1)
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    out.weight.copy_(w.to(conv.weight.dtype))
    assert out.bias is not None
    out.bias.copy_((b * scale + shift).to(conv.weight.dtype))
    return out


@torch.no_grad()
def fold_bn_linear(bn: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """A new linear layer equal to ``linear(bn(x))`` in eval (computed in float64)."""
    scale, shift = _bn_scale_shift(bn)
    out = nn.Linear(linear.in_features, linear.out_features, bias=True).to(linear.weight.device)
    w = linear.weight.double()
    b = linear.bias.double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    out.weight.copy_((w * scale.view(1, -1)).to(linear.weight.dtype))
    assert out.bias is not None
    out.bias.copy_((b + w @ shift).to(linear.weight.dtype))
    return out


def _fold_sequential(seq: nn.Sequential) -> int:
    """Fold ``conv -> BN2d`` and ``BN1d -> [dropout] -> linear`` runs inside one Sequential."""
    n = 0
    names = list(seq._modules)
    for i, name in enumerate(names):
        m = seq._modules[name]
        if isinstance(m, nn.Conv2d) and i + 1 < len(names):
            nxt = seq._modules[names[i + 1]]
            if isinstance(nxt, nn.BatchNorm2d) and nxt.track_running_stats:
                seq._modules[name] = fold_conv_bn(m, nxt)
                seq._modules[names[i + 1]] = nn.Identity()
                n += 1
        elif isinstance(m, nn.BatchNorm1d) and m.track_running_stats:
            j = i + 1
            while j < len(names) and isinstance(seq._modules[names[j]], nn.Dropout):
                j += 1
            if j < len(names) and isinstance(seq._modules[names[j]], nn.Linear):
                lin = seq._modules[names[j]]
                assert isinstance(lin, nn.Linear)
                seq._modules[names[j]] = fold_bn_linear(m, lin)
                seq._modules[name] = nn.Identity()
                n += 1
    return n


def fold_batchnorm(cnn: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``cnn`` with the foldable BatchNorms folded, and how many were.

    Works on any variant: Sequentials (conv -> BN, BN1d -> dropout -> linear),
    torchvision DenseNet layers (``conv1 -> norm2``) and the DenseNet branch's
    ``fc(drop(norm(x)))``."""
    out = copy.deepcopy(cnn).eval()
    n = 0
    for m in list(out.modules()):
        if isinstance(m, nn.Sequential):
            n += _fold_sequential(m)
        if isinstance(m, _DenseLayer) and isinstance(m.norm2, nn.BatchNorm2d):
            m.conv1 = fold_conv_bn(m.conv1, m.norm2)
            m.norm2 = nn.Identity()  # type: ignore[assignment]
            n += 1
        if isinstance(m, DenseNetBranch) and isinstance(m.norm, nn.BatchNorm1d):
            m.fc = fold_bn_linear(m.norm, m.fc)
            m.norm = nn.Identity()  # type: ignore[assignment]
            n += 1
    for p in out.parameters():
        p.requires_grad_(False)
    return out, n
