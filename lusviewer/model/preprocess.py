"""Frame preprocessing shared by training and inference (one definition, no drift)."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (size, size, 3) uint8 with ``cv2.INTER_AREA``.

    As in the paper, the whole frame is resized to a square (aspect not kept):
    LUS sectors are roughly square and the model was trained this way.
    """
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    interp = cv2.INTER_AREA if min(frame.shape[:2]) >= size else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interp)


def to_model_input(batch: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S) in [0, 1], channels_last memory."""
    t = torch.as_tensor(batch).to(device, non_blocking=True)
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    return t.contiguous(memory_format=torch.channels_last)
