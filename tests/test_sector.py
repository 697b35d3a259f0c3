"""The ultrasound sector: found on moving speckle, not on still overlays; applied and mapped back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lusviewer.model.preprocess import Sector, detect_sector


def _fan_clip(n: int = 12, h: int = 200, w: int = 260, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames with a speckled fan (apex at the top centre) and still white text at the top left."""
    rng = np.random.default_rng(seed)
    fan = np.zeros((h, w), np.uint8)
    pts = np.array([[w // 2 - 20, 0], [w // 2 + 20, 0], [w - 30, h - 20], [30, h - 20]], np.int32)
    cv2.fillConvexPoly(fan, pts, 1)
    frames = []
    for _ in range(n):
        grey = (rng.uniform(20, 160, (h, w)) * fan).astype(np.uint8)
        cv2.putText(grey, "LUMIFY 5cm", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1)
        frames.append(np.repeat(grey[..., None], 3, 2))
    return frames, fan.astype(bool)


def test_sector_is_the_moving_fan_not_the_still_text() -> None:
    frames, fan = _fan_clip()
    s = detect_sector(frames)
    assert s.found
    inter = (s.mask & fan).sum()
    assert inter / fan.sum() > 0.97  # the fan is inside
    assert (s.mask & ~fan).sum() / fan.sum() < 0.03  # little else
    assert not s.mask[:16, :60].any()  # the text is not
    y0, y1, x0, x1 = s.box
    assert y1 - y0 == x1 - x0  # square: proportions kept
    assert y0 == 0


def test_apply_zeroes_outside_and_maps_back() -> None:
    frames, fan = _fan_clip()
    s = detect_sector(frames)
    small = s.apply(frames[0], 64)
    assert small.shape == (64, 64, 3) and small.dtype == np.uint8
    assert small[:3, :3].max() == 0  # a corner outside the fan
    back = s.to_frame(np.full((64, 64), 1.0, np.float32))
    assert back.shape == fan.shape
    assert back[~s.mask].max() == 0 and back[s.mask].min() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sector was found on"):
        s.apply(np.zeros((10, 10, 3), np.uint8), 64)


def test_box_past_the_edge_is_padded_with_zeros() -> None:
    mask = np.zeros((100, 200), bool)
    mask[10:60, :] = True  # wider than high: the square passes the bottom edge
    s = Sector(mask, (10, 210, 0, 200))
    frame = np.full((100, 200, 3), 200, np.uint8)
    out = s.apply(frame, 32)
    assert out[:7].min() > 150  # the sector's rows, at the top
    assert out[-8:].max() == 0  # below the frame: zeros


@pytest.mark.parametrize("frames", [[np.zeros((50, 60, 3), np.uint8)] * 3, [np.full((50, 60, 3), 3, np.uint8)]])
def test_no_sector_means_the_whole_frame(frames: list[np.ndarray]) -> None:
    s = detect_sector(frames)
    assert not s.found and s.mask.all()
    frame = np.arange(50 * 60 * 3, dtype=np.uint8).reshape(50, 60, 3)
    assert np.array_equal(s.apply(frame, 32), cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA))


def test_a_still_image_is_found_by_brightness() -> None:
    frames, fan = _fan_clip(n=1)
    s = detect_sector(frames)
    assert s.found and (s.mask & fan).sum() / fan.sum() > 0.97


def test_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="no frames"):
        detect_sector([])
