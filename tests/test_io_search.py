"""A folder search says what it passes over that may hold clips: a symbolic link to a
folder elsewhere (not followed: its clips were silently not scored) and a folder named
like a clip that holds none (``x.avi/``; given by name it was an error, inside a folder
it was passed over in silence)."""

from __future__ import annotations

from pathlib import Path

from corpus import index_frames, write_cv2

from lusviewer.io import ClipError, find_clips


def _clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = write_cv2(path, "MJPG", index_frames(3))
    assert out is not None
    return out


def _search(root: Path) -> tuple[list[str], dict[str, str]]:
    problems: list[ClipError] = []
    found = find_clips(root, on_error=problems.append)
    return found, {Path(p.path).name: p.reason for p in problems}


def test_a_link_to_a_folder_elsewhere_is_said(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    mine = _clip(exam / "own" / "a.avi")
    _clip(tmp_path / "elsewhere" / "b.avi")
    (exam / "patient2").symlink_to(tmp_path / "elsewhere")  # its clips are not searched: said
    (exam / "own" / "up").symlink_to(exam)  # a loop back up: passed over
    (exam / "again").symlink_to(exam / "own")  # inside the folder searched: its clips are found there
    found, reasons = _search(exam)
    assert found == [str(mine)]
    assert set(reasons) == {"patient2"}, reasons
    assert "symbolic link to a folder elsewhere, not followed" in reasons["patient2"]


def test_a_folder_named_like_a_clip_without_clips_is_said(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "a.mp4")
    (tmp_path / "empty.avi").mkdir()
    (tmp_path / "nested.mov" / "deeper").mkdir(parents=True)
    _clip(tmp_path / "holds.mp4" / "inner.avi")  # a clip inside: not said
    found, reasons = _search(tmp_path)
    assert found == [str(clip), str(tmp_path / "holds.mp4" / "inner.avi")]
    assert set(reasons) == {"empty.avi", "nested.mov"}, reasons
    assert reasons["empty.avi"] == "is a folder named like a clip (.avi) and holds no clips; skipped"


def test_mixed_bit_depths_in_a_frame_folder_are_named_in_plain_words(tmp_path: Path) -> None:
    """The folder of frames whose images mix bit depths is refused in one line: "an 8-bit
    image" (it said "a 8-bit")."""
    import cv2
    import numpy as np
    import pytest

    from lusviewer.io import open_clip

    cv2.imwrite(str(tmp_path / "f0.png"), np.full((8, 8), 4000, np.uint16))
    cv2.imwrite(str(tmp_path / "f1.png"), np.full((8, 8), 40, np.uint8))
    with pytest.raises(ClipError) as info:
        open_clip(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'f1.png'}: is an 8-bit image but the clip's first frame is 16-bit: "
        "a clip's frames must share one bit depth"
    )
