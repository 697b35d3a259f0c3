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
