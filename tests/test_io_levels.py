"""A DICOM deeper than 8 bits without a window: one range for the whole clip, its lowest
to highest stored value over all frames (as image stacks have), not frame 0's alone,
which left a brighter later frame mostly white and was scored so without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from corpus import make_dicom

from lusviewer.io import open_clip


def _frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = np.stack([(rng.random((32, 48)) * top).astype(np.uint16) for top in (1000, 60000, 30000)])
    frames[:, 0, 0] = 500  # one stored value in every frame
    return frames


def _deep(path: Path, frames: np.ndarray, **attrs: object) -> Path:
    return make_dicom(path, frames, "MONOCHROME2", BitsAllocated=16, BitsStored=16, HighBit=15, **attrs)


def test_levels_span_the_whole_clip(tmp_path: Path) -> None:
    frames = _frames()
    with open_clip(_deep(tmp_path / "deep.dcm", frames)) as reader:
        by_index = [reader.frame(i) for i in (1, 0, 2)]
        in_order = list(reader.iter_frames())
    assert all(np.array_equal(a, b) for a, b in zip([in_order[i] for i in (1, 0, 2)], by_index, strict=True))
    assert (in_order[1] == 255).mean() < 0.01  # frame 0's range made 99 % of it white
    assert in_order[1].max() >= 250 and in_order[0].max() < 10  # the brightest frame reaches white
    assert len({int(f[0, 0, 0]) for f in in_order}) == 1  # a stored value has one grey level


def test_a_window_in_the_header_is_still_used(tmp_path: Path) -> None:
    frames = _frames()
    with open_clip(_deep(tmp_path / "win.dcm", frames, WindowCenter=500, WindowWidth=1000)) as reader:
        second = reader.frame(1)
    expected = np.clip(frames[1].astype(np.float32) * (255.0 / 1000), 0, 255).astype(np.uint8)
    assert np.array_equal(second[:, :, 0], expected)
