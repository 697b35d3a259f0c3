"""Running the LSTM head over clips of any length with flat memory.

Scheme (the OPEN point "clips of any length" of the reference description):
stateless windows with burn-in. Frames are scored in chunks of ``stride`` frames;
each chunk is run through a freshly initialised LSTM together with the
``burn_in`` frames before it, and only the chunk's outputs are kept. Every frame
therefore sees between ``burn_in`` and ``burn_in + stride - 1`` frames of past
context (fewer at the very start of a clip), exactly the window length the head
was trained on, however long the clip: a carried state over 100,000 frames would
drift far outside anything seen in training. Cost is ``(burn_in + stride) /
stride`` LSTM steps per frame; memory holds one window.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lusviewer.model.hybrid import SequenceHead

DEFAULT_WINDOW = 48
DEFAULT_BURN_IN = 16


class SequenceStreamer:
    """Feed per-frame features in any batch sizes; get per-frame logits back in order."""

    def __init__(self, head: SequenceHead, *, window: int = DEFAULT_WINDOW, burn_in: int = DEFAULT_BURN_IN) -> None:
        if not 0 <= burn_in < window:
            raise ValueError("need 0 <= burn_in < window")
        self.head = head
        self.burn_in = burn_in
        self.stride = window - burn_in
        self._context: Tensor | None = None  # last burn_in features already scored
        self._pending: list[Tensor] = []
        self._n_pending = 0

    def _run(self, chunk: Tensor) -> Tensor:
        ctx = self._context
        seq = chunk if ctx is None or ctx.shape[0] == 0 else torch.cat([ctx, chunk])
        logits, _ = self.head(seq.unsqueeze(0).float())
        out = logits[0, seq.shape[0] - chunk.shape[0] :]
        keep = torch.cat([ctx, chunk]) if ctx is not None else chunk
        self._context = keep[keep.shape[0] - self.burn_in :] if self.burn_in else keep[:0]
        return out  # type: ignore[no-any-return]

    def push(self, feats: Tensor) -> Tensor:
        """Add (n, F) features; returns logits for every frame now complete (m, C)."""
        self._pending.append(feats)
        self._n_pending += feats.shape[0]
        outs: list[Tensor] = []
        if self._n_pending >= self.stride:
            buf = torch.cat(self._pending)
            n_full = (buf.shape[0] // self.stride) * self.stride
            for s in range(0, n_full, self.stride):
                outs.append(self._run(buf[s : s + self.stride]))
            rest = buf[n_full:]
            self._pending = [rest] if rest.shape[0] else []
            self._n_pending = rest.shape[0]
        if not outs:
            return feats.new_zeros((0, self.head.fc.out_features))
        return torch.cat(outs)

    def flush(self) -> Tensor:
        """Logits for the frames still pending at the end of the clip."""
        if not self._n_pending:
            return self.head.fc.weight.new_zeros((0, self.head.fc.out_features))
        out = self._run(torch.cat(self._pending))
        self._pending, self._n_pending = [], 0
        return out


@torch.no_grad()
def sequence_logits(
    head: SequenceHead, feats: Tensor, *, window: int = DEFAULT_WINDOW, burn_in: int = DEFAULT_BURN_IN
) -> Tensor:
    """All-at-once convenience: (T, F) features -> (T, C) logits, same as streaming."""
    s = SequenceStreamer(head, window=window, burn_in=burn_in)
    return torch.cat([s.push(feats), s.flush()])
