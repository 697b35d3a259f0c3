"""Synthetic lung-ultrasound-like clips, for the shipped sample, tests and benchmarks.

Not a simulation of physics: a convex sector with speckle, a bright pleural line
near the top that slides sideways, horizontal A-line reverberations below it, and
optional vertical B-lines that come and go. Enough to exercise every code path
with frames that look like the real thing at a glance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def synthetic_frames(n_frames: int, *, size: int = 256, seed: int = 0, b_lines: bool = True) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` RGB uint8 frames (size, size, 3), one at a time."""
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w / 2, -0.35 * h
    r = np.hypot(xx - cx, yy - cy)
    ang = np.arctan2(xx - cx, yy - cy)
    r0, r1 = 0.4 * h, 1.33 * h
    sector = (np.abs(ang) < 0.6) & (r > r0) & (r < r1)
    depth = (r - r0) / (r1 - r0)
    pleura_r = r0 + 0.18 * (r1 - r0)
    base_speckle = rng.gamma(1.5, 1.0, size=(h, w)).astype(np.float32)
    for t in range(n_frames):
        shift = round(2 * np.sin(2 * np.pi * t / 25.0))
        speckle = np.roll(base_speckle, shift, axis=1) * 0.7 + rng.gamma(1.5, 1.0, size=(h, w)) * 0.3
        img = 40 * speckle * np.exp(-2.0 * depth)
        img += 200 * np.exp(-(((r - pleura_r) / 3.0) ** 2))
        for k in (2, 3):  # A-lines: reverberations at multiples of the pleural depth
            img += 90 / k * np.exp(-(((r - r0 - k * (pleura_r - r0)) / 3.0) ** 2))
        if b_lines and (t // 12) % 2 == 1:
            for a in (-0.25, 0.1):
                img += 140 * np.exp(-(((ang - a - 0.01 * shift) / 0.025) ** 2)) * (r > pleura_r)
        img = np.where(sector, img, 0)
        g = np.clip(img, 0, 255).astype(np.uint8)
        yield np.repeat(g[:, :, None], 3, axis=2)


def write_video(
    path: str | os.PathLike[str],
    frames: Iterator[np.ndarray] | list[np.ndarray],
    *,
    fps: float = 25.0,
    fourcc: str = "mp4v",
) -> Path:
    """Write RGB frames to a video file with OpenCV (``mp4v``, ``MJPG``, ``XVID``...)."""
    path = Path(path)
    writer: cv2.VideoWriter | None = None
    try:
        for f in frames:
            if writer is None:
                code = cv2.VideoWriter_fourcc(*fourcc)  # type: ignore[attr-defined]
                writer = cv2.VideoWriter(str(path), code, fps, (f.shape[1], f.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot write {fourcc!r} video")
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path
