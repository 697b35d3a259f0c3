"""The training losses beyond plain cross-entropy: the multiple-instance ordinal loss
for clips scored by their worst frame, and the autoencoder's reconstruction term."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mil_ordinal_loss(
    logits: torch.Tensor, scores: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Multiple-instance ordinal loss for clips scored by their worst frame.

    ``logits`` (B, T, C) hold T frames of each of B clips (``mask`` (B, T) marks the real
    ones where clips are padded); ``scores`` (B,) are the clips' scores. A clip of score
    s says: no frame shows a pattern worse than s, and at least one frame shows s. With
    ``P_t(>=k)`` the softmax mass of frame t on scores k and above, the clip's ``P(>=k)``
    is its largest frame's, and the loss is the binary cross-entropy of those C-1
    clip-level probabilities against ``s >= k``, weighted per clip by ``weights[s]``. A
    score-0 clip thus teaches every frame to be 0 (its frames are labelled exactly); a
    score-s clip no longer teaches its normal-looking frames to be s, as the frame loss
    does.

    Computed in log space from the logits (no clamping, so a confidently wrong clip still
    has a gradient; and no ``binary_cross_entropy``, which CUDA autocast refuses):
    ``1 - max_t P_t(>=k) = min_t P_t(<k)``. Weighted like ``F.cross_entropy(weight=)``:
    sum of weighted losses over the sum of the weights.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    n_cls = logp.shape[-1]
    up = torch.stack([torch.logsumexp(logp[..., k:], -1) for k in range(1, n_cls)], -1)  # log P_t(>= k)
    down = torch.stack([torch.logsumexp(logp[..., :k], -1) for k in range(1, n_cls)], -1)  # log P_t(< k)
    if mask is not None:
        pad = ~mask[..., None]
        up = up.masked_fill(pad, float("-inf"))
        down = down.masked_fill(pad, float("inf"))
    log_yes, log_no = up.amax(dim=1), down.amin(dim=1)  # (B, C-1): log P(>= k), log P(< k) of the clip
    levels = torch.arange(1, n_cls, device=scores.device)
    target = (scores[:, None] >= levels[None, :]).float()
    bce = -(target * log_yes + (1 - target) * log_no).sum(-1)
    w = weights[scores]
    return (w * bce).sum() / w.sum()


def recon_term(weight: float, reconstruction: torch.Tensor | None, clean: torch.Tensor) -> torch.Tensor | float:
    """The autoencoder's share of the loss (0 for the DenseNet-only variant, which has none)."""
    if reconstruction is None:
        return 0.0
    return weight * F.mse_loss(reconstruction.float(), clean)


def sord_targets(scores: torch.Tensor, n_cls: int, alpha: float = 1.0) -> torch.Tensor:
    """SORD soft labels (Diaz and Marathe 2019): for true score y, q_k proportional to
    ``exp(-alpha (k - y)^2)``: most mass on y, some on its neighbours, little beyond."""
    k = torch.arange(n_cls, device=scores.device, dtype=torch.float32)
    d = (k[None, :] - scores[:, None].float()) ** 2
    return torch.softmax(-alpha * d, dim=1)


def sord_loss(logits: torch.Tensor, scores: torch.Tensor, weights: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Cross-entropy against :func:`sord_targets`, weighted per frame by ``weights[score]``
    (sum of weighted losses over the sum of the weights, as ``F.cross_entropy(weight=)``)."""
    q = sord_targets(scores, logits.shape[-1], alpha)
    per = -(q * torch.log_softmax(logits.float(), dim=-1)).sum(-1)
    w = weights[scores]
    return (w * per).sum() / w.sum()


def coral_loss(cumulative: torch.Tensor, scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CORAL (Cao, Mirjalili and Raschka 2020): the binary cross-entropy of each of the
    C-1 logits of P(score >= k) against ``score >= k``, summed over k, weighted per frame."""
    levels = torch.arange(1, cumulative.shape[-1] + 1, device=scores.device)
    target = (scores[:, None] >= levels[None, :]).float()
    per = F.binary_cross_entropy_with_logits(cumulative.float(), target, reduction="none").sum(-1)
    w = weights[scores]
    return (w * per).sum() / w.sum()


def aux_loss(aux_logits: torch.Tensor | None, findings: torch.Tensor, known: torch.Tensor) -> torch.Tensor | float:
    """The auxiliary findings' loss: binary cross-entropy of each frame's A-line / B-line
    logits against its clip's expert flags (``findings`` (N, F) 0/1), over the frames whose
    clip has flags (``known`` (N,) bool). 0 where no head or no flags."""
    if aux_logits is None or not bool(known.any()):
        return 0.0
    return F.binary_cross_entropy_with_logits(aux_logits[known].float(), findings[known].float())
