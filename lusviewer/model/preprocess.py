"""Frame preprocessing shared by training and inference (one definition, no drift)."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

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


# --- The ultrasound sector --------------------------------------------------------
#
# A clip's sector (the fan, or the rectangle of a linear probe) is where the image
# carries echoes: pixels that are not black on some frame *and* change from frame to
# frame (speckle moves with breathing and the probe; device text, logos, rulers and
# colour bars stay still). It is fixed per clip. Feeding the model the sector only
# (cropped to its bounding box, the rest set to zero) removes cues that lie outside
# the lung image: corners, margins, overlays.

#: Frames a clip's sector is detected from (the first ones; memory stays flat).
SECTOR_FRAMES = 32
_BRIGHT = 8.0  # grey level a pixel must exceed on some frame
_VARIES = 1.0  # its standard deviation across the frames (grey levels)
_MIN_SHARE = 0.05  # a sector smaller than this share of the frame is no sector


@dataclass(frozen=True)
class Sector:
    """A clip's ultrasound sector at the clip's own resolution.

    ``mask`` (H, W) bool; ``box`` (y0, y1, x0, x1), end-exclusive: the square around
    the mask's bounding box (its top at the sector's top, centred across), which may
    pass the frame's edges.
    ``found`` is False where no sector could be told apart (then the mask is the
    whole frame and nothing is cropped or masked)."""

    mask: np.ndarray
    box: tuple[int, int, int, int]
    found: bool = True

    @classmethod
    def whole(cls, height: int, width: int) -> Sector:
        return cls(np.ones((height, width), bool), (0, height, 0, width), found=False)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    @property
    def share(self) -> float:
        """The share of the frame the sector covers."""
        return float(self.mask.mean())

    def apply(self, frame: np.ndarray, size: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> the sector only, (size, size, 3) uint8: outside the
        sector set to zero, cropped to the square ``box`` (zero where it passes the
        frame's edge), resized as :func:`resize_frame` does. A square box keeps the
        image's proportions: depth and width are scaled alike on every clip."""
        if frame.shape[:2] != self.shape:
            raise ValueError(f"frame of {frame.shape[:2]} but the sector was found on {self.shape}")
        if not self.found:
            return resize_frame(frame, size)
        masked = frame * self.mask[..., None].astype(np.uint8)
        return resize_frame(_crop_padded(masked, self.box), size)

    def to_frame(self, image: np.ndarray, *, fill: float | int = 0) -> np.ndarray:
        """An image in model coordinates (S, S[, C]) mapped back onto the frame (H, W[, C]):
        resized to the box, placed there, ``fill`` outside the sector."""
        h, w = self.shape
        if not self.found:
            return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        y0, y1, x0, x1 = self.box
        inside = cv2.resize(image, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out = np.full((h, w, *image.shape[2:]), fill, dtype=image.dtype)
        ty0, ty1, tx0, tx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
        out[ty0:ty1, tx0:tx1] = inside[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
        out[~self.mask] = fill
        return out

    def to_dict(self) -> dict[str, object]:
        """What a report or log says of it (not the mask)."""
        y0, y1, x0, x1 = self.box
        return {"found": self.found, "box": [y0, y1, x0, x1], "share": round(self.share, 4)}


def detect_sector(frames: Sequence[np.ndarray] | np.ndarray) -> Sector:
    """The sector of a clip from some of its RGB uint8 frames (all the same size).

    A pixel belongs to it where its grey level exceeds a low threshold on some frame
    and varies across the frames; the largest such region, closed and made convex
    (fans and rectangles are convex), is the sector. With one frame, or frames that do
    not vary (a still image), brightness alone decides. Where nothing of at least 5 %
    of the frame is found, the whole frame is the sector (``found=False``)."""
    if len(frames) == 0:
        raise ValueError("no frames to find a sector in")
    # Running maximum, sum and sum of squares in float32: a few frame-sized arrays,
    # whatever the number of frames.
    h, w = frames[0].shape[:2]
    peak = np.zeros((h, w), np.float32)
    total = np.zeros((h, w), np.float32)
    squares = np.zeros((h, w), np.float32)
    for f in frames:
        g = f.mean(2, dtype=np.float32) if f.ndim == 3 else f.astype(np.float32)
        np.maximum(peak, g, out=peak)
        total += g
        squares += g * g
    n = len(frames)
    bright = peak > _BRIGHT
    sd = np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0.0))
    varies = sd > _VARIES if n > 1 else np.ones((h, w), bool)
    cand = bright & varies
    if cand.mean() < _MIN_SHARE:  # a still clip or a single frame: brightness alone
        cand = bright
    k = max(3, (min(h, w) // 50) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, kernel)  # drop specks and thin text
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return Sector.whole(h, w)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[biggest, cv2.CC_STAT_AREA] < _MIN_SHARE * h * w:
        return Sector.whole(h, w)
    pts = cv2.findNonZero((labels == biggest).astype(np.uint8))
    hull = cv2.convexHull(pts)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    x, y, bw, bh = cv2.boundingRect(hull)
    side = max(bw, bh)
    x0 = int(x + bw // 2 - side // 2)
    return Sector(mask.astype(bool), (int(y), int(y + side), x0, x0 + side))


def _crop_padded(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``frame[y0:y1, x0:x1]`` where the box may pass the edges (zeros there)."""
    y0, y1, x0, x1 = box
    h, w = frame.shape[:2]
    crop = frame[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    top, left = max(-y0, 0), max(-x0, 0)
    bottom, right = (y1 - y0) - top - crop.shape[0], (x1 - x0) - left - crop.shape[1]
    if top or left or bottom or right:
        crop = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
    return np.ascontiguousarray(crop)


# --- A clip's frames as the model sees them -----------------------------------------
#
# The one definition of the preparation that the scoring engine, the folder scorer's
# decode workers, training's frame cache and the Grad-CAM script share: with a
# sector crop, the sector is found on the clip's first SECTOR_FRAMES frames and every
# frame, those first ones included, is cropped to it, in order.


def model_frames(
    frames: Iterable[np.ndarray],
    size: int,
    crop: str = "none",
    *,
    error: Callable[[str], Exception] = ValueError,
) -> tuple[Sector | None, Iterator[tuple[int, np.ndarray]]]:
    """A clip's RGB uint8 frames as the model sees them: ``(sector, frames)``, where
    ``frames`` yields ``(index, (size, size, 3) uint8)`` for every frame, in order, from 0.

    ``crop="none"``: each frame resized (:func:`resize_frame`); the sector is None.
    ``crop="sector"``: the first :data:`SECTOR_FRAMES` frames are read here, at once, and
    the clip's sector found on them (:func:`detect_sector`); every frame, those first ones
    included, is then cut to it (:meth:`Sector.apply`) as ``frames`` is iterated. The
    sector is None where the clip has no frame. Memory stays flat in clip length: only
    that head is held at the clip's resolution, each of its frames let go of once
    yielded, and the rest streamed one frame at a time.

    ``error(reason)`` is raised for frames that no one sector fits (first frames of
    several sizes; a later frame of another size); callers that know the clip pass one
    that names it (the engine: ``lambda reason: ClipError(path, reason)``)."""
    if crop not in ("none", "sector"):  # a card's input.crop, training's --crop
        raise ValueError(f"unknown crop {crop!r}; expected none or sector")
    source = iter(frames)
    if crop == "none":
        return None, ((i, resize_frame(f, size)) for i, f in enumerate(source))
    head: deque[np.ndarray] = deque(itertools.islice(source, SECTOR_FRAMES))
    if not head:
        return None, iter(())
    sector = _head_sector(head, error=error)
    return sector, _cropped(itertools.chain(_drain(head), source), sector, size, error)


def _head_sector(head: Sequence[np.ndarray], *, error: Callable[[str], Exception] = ValueError) -> Sector:
    """:func:`detect_sector` on a clip's first frames, which must share one size
    (``error(reason)`` raised where they do not)."""
    sizes = {f.shape[:2] for f in head}
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
        raise error(f"its first frames differ in size ({shown}): no one sector fits them")
    return detect_sector(head)


def _cropped(
    frames: Iterator[np.ndarray], sector: Sector, size: int, error: Callable[[str], Exception]
) -> Iterator[tuple[int, np.ndarray]]:
    for i, frame in enumerate(frames):
        if frame.shape[:2] != sector.shape:
            raise error(
                f"frame {i} is {frame.shape[1]}x{frame.shape[0]} but the first frames, where the sector was "
                f"found, are {sector.shape[1]}x{sector.shape[0]}"
            )
        yield i, sector.apply(frame, size)


def _drain(frames: deque[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames, first to last, each let go of once yielded."""
    while frames:
        yield frames.popleft()
