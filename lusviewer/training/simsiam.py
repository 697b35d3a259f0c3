"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021)
for the DenseNet-201 branch: the encoder, the network, the two augmented views and the
collapse monitor. The pretraining itself is :mod:`lusviewer.training.pretrain`."""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from lusviewer.model.hybrid import DenseNetBranch, ModelConfig
from lusviewer.training.config import PretrainConfig
from lusviewer.training.data import augment


class Encoder(nn.Module):
    """The DenseNet branch up to its pooled features (stem, DenseNet-201 features, ReLU, GAP)."""

    def __init__(self, branch: DenseNetBranch) -> None:
        super().__init__()
        self.stem = branch.stem
        self.features = branch.features
        self.dim = int(branch.norm.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.features(self.stem(x)))
        return torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)


class SimSiam(nn.Module):
    """Encoder + projector (3 layers, BN) + predictor (bottleneck), as in the paper, narrower.

    One difference: both views go through the network as one batch, so BatchNorm sees
    their joint statistics (SimCLR's global BN); the reference implementation forwards
    each view separately."""

    def __init__(self, encoder: Encoder, proj_dim: int, pred_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        d = encoder.dim
        self.projector = nn.Sequential(
            nn.Linear(d, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(proj_dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, proj_dim),
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The SimSiam loss (-1 = perfect agreement) and the projections of view 1 (for the collapse monitor)."""
        n = x1.shape[0]
        z = self.projector(self.encoder(torch.cat([x1, x2])).float())
        p = self.predictor(z)
        z1, z2, p1, p2 = z[:n], z[n:], p[:n], p[n:]
        loss = -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()) / 2
        return loss, z1.detach()


def two_views(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ultrasound-safe views of each frame: stronger than training's augmentation
    (zoom 1-1.6, i.e. crops of 40-100 % of the area, shift +-15 %, gain 0.6-1.4, gamma
    +-0.5, multiplicative speckle, occasional blur) but still no vertical flip and no
    large rotation: the pleural line stays near the top."""

    def view() -> torch.Tensor:
        v = augment(x, gen, zoom=(1.0, 1.6), shift=0.3, gain=(0.6, 1.4), gamma=0.5)
        speckle = 1 + 0.15 * torch.randn(v.shape, generator=gen).to(v.device)
        v = v * speckle
        blur = (torch.rand(v.shape[0], generator=gen) < 0.3).to(v.device)
        if bool(blur.any()):
            k = torch.tensor([1.0, 2.0, 1.0], device=v.device)
            k2 = (k[:, None] * k[None, :] / 16).expand(v.shape[1], 1, 3, 3)
            smooth = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), k2, groups=v.shape[1])
            v = torch.where(blur.view(-1, 1, 1, 1), smooth, v)
        return v.clamp(0, 1)

    return view(), view()


def collapse(z: torch.Tensor) -> float:
    """Std over the batch of the l2-normalised projections, times sqrt(dim): about 1
    for well-spread embeddings, 0 for a collapsed (constant) one (SimSiam, sec. 4.1)."""
    zn = F.normalize(z.float(), dim=1)
    return float(zn.std(0).mean()) * math.sqrt(zn.shape[1])


def encoder_for(cfg: PretrainConfig) -> Encoder:
    """The branch a pretraining starts from, as initialised (after the caller's seeding)."""
    base = ModelConfig.tiny("densenet") if cfg.tiny else ModelConfig(variant="densenet")
    return Encoder(DenseNetBranch(replace(base, input_size=cfg.input_size)))
