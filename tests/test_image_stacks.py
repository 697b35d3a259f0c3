"""Clips made of still images, probed as a user would: 16-bit frame folders keep one grey
scale across frames, and a multi-page TIFF is a clip of all its pages (it used to be read
as its first page alone, and scored as a complete one-frame clip)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from corpus import frame_index, index_frames

from lusviewer.io import ClipError, ClipReader, find_clips, open_clip


def _stack16(folder: Path, ext: str, n: int = 6) -> list[np.ndarray]:
    """16-bit grey frames holding 12-bit data: a band of one stored value (800) in every
    frame, and a bright square whose value differs per frame, so each frame's own range
    differs."""
    folder.mkdir()
    frames = []
    for i in range(n):
        img = np.zeros((48, 64), np.uint16)
        img[30:40, :] = 800
        img[5:15, 5:15] = 1000 + 500 * i
        cv2.imwrite(str(folder / f"f{i}{ext}"), img)
        frames.append(img)
    return frames


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_deep_frames_keep_one_grey_scale_across_the_clip(tmp_path: Path, ext: str) -> None:
    frames = _stack16(tmp_path / "clip", ext)
    with open_clip(tmp_path / "clip") as reader:
        in_order = list(reader.iter_frames())
    band = {int(f[35, 0, 0]) for f in in_order}
    assert len(band) == 1, f"one stored value shows at {sorted(band)} in different frames"
    # The clip's range: 0 black, its highest value (frame 5's square) white.
    assert in_order[0][0, 0, 0] == 0 and in_order[-1][10, 10, 0] == 255
    assert band == {int(800 * 255 / (1000 + 500 * (len(frames) - 1)))}
    with open_clip(tmp_path / "clip") as reader:  # random access first: the same levels
        assert np.array_equal(reader.frame(3), in_order[3])
        assert np.array_equal(reader.frame(0), in_order[0])


def test_mixed_bit_depths_are_refused_naming_the_frame(tmp_path: Path) -> None:
    _stack16(tmp_path / "clip", ".png", n=3)
    cv2.imwrite(str(tmp_path / "clip" / "f1.png"), np.zeros((48, 64), np.uint8))
    with pytest.raises(ClipError) as exc:
        open_clip(tmp_path / "clip")
    assert exc.value.path.endswith("f1.png") and "bit depth" in exc.value.reason


def _tiff(path: Path, n: int, *, deep: bool = False) -> Path:
    pages = [f[:, :, 0].astype(np.uint16) * 16 if deep else f[:, :, 0] for f in index_frames(n)]
    assert cv2.imwritemulti(str(path), pages)
    return path


@pytest.mark.parametrize("deep", [False, True])
def test_multipage_tiff_is_a_clip_of_all_its_pages(tmp_path: Path, deep: bool) -> None:
    path = _tiff(tmp_path / "stack.tif", 12, deep=deep)
    with open_clip(path) as reader:
        assert len(reader) == 12 and reader.info.complete
        in_order = list(reader.iter_frames())
        assert [frame_index(f) for f in in_order] == list(range(12))
        for i in (7, 2, 11, 0, 5):  # by index, out of order: frame i is page i
            assert np.array_equal(reader.frame(i), in_order[i])


def test_a_folder_search_lists_a_tiff_stack_as_a_clip(tmp_path: Path) -> None:
    _tiff(tmp_path / "stack.tif", 5)
    frames = tmp_path / "frames"  # single-page images: still one clip per folder
    frames.mkdir()
    for i, f in enumerate(index_frames(3)):
        cv2.imwrite(str(frames / f"frame_{i}.tif"), f)
    assert find_clips(tmp_path) == [str(frames), str(tmp_path / "stack.tif")]
    with pytest.raises(ClipError, match="multi-page TIFF"):
        open_clip(tmp_path)  # the stack's folder itself is no clip of frame images


def test_tiff_stack_cut_short_reads_the_pages_present(tmp_path: Path) -> None:
    data = _tiff(tmp_path / "whole.tif", 20).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with open_clip(cut) as reader:
        frames = list(reader.iter_frames())
        assert 0 < len(frames) < 20 and not reader.info.complete
        assert [frame_index(f) for f in frames] == list(range(len(frames)))


def test_score_reports_every_page_of_a_tiff_stack(tmp_path: Path, tiny_model: Path) -> None:
    from lusviewer.cli import run

    _tiff(tmp_path / "stack.tif", 9)
    out = tmp_path / "r.csv"
    assert run(["score", str(tmp_path), "-o", str(out), "--model", str(tiny_model), "-q"]) == 0
    with open(tmp_path / "r_clips.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(Path(r["clip"]).name, r["frames"], r["complete"]) for r in rows] == [("stack.tif", "9", "yes")]


def test_a_late_page_costs_what_an_early_one_does(tmp_path: Path) -> None:
    import time

    n = 600
    assert cv2.imwritemulti(str(tmp_path / "long.tif"), [np.full((64, 64), i % 256, np.uint8) for i in range(n)])

    def seconds(reader: ClipReader, pages: range) -> float:
        t = time.perf_counter()
        for i in pages:
            assert reader.frame(i)[0, 0, 0] == i % 256
        return time.perf_counter() - t

    with open_clip(tmp_path / "long.tif") as reader:
        early, late = seconds(reader, range(0, 40)), seconds(reader, range(n - 40, n))
    # Each page used to be reached by walking every page before it (2,000 pages in order: 250 s).
    assert late < 5 * early + 0.05, (early, late)


def test_the_viewer_open_dialog_offers_tiff_stacks() -> None:
    """A multi-page TIFF is a clip the viewer opens by drag and drop; File > Open lists it too."""
    from lusviewer.ui.main_window import FILE_FILTER

    clips = FILE_FILTER.split(";;")[0]
    assert "*.tif" in clips.split() and "*.tiff)" in clips.split()
    assert any(f.startswith("Multi-page TIFF (*.tif *.tiff)") for f in FILE_FILTER.split(";;"))
