"""Video clips probed as a bad-input tester would: an intact MPEG-2 program stream whose
decoder timestamps run two frames behind after a GOP boundary was called incomplete."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import frame_index, index_frames, write_cv2

from lusviewer.io import open_clip


def test_intact_mpeg2_stream_is_complete_and_a_hole_is_not(tmp_path: Path) -> None:
    path = write_cv2(tmp_path / "long.mpeg", "mpg2", index_frames(300, 96, 64))
    if path is None:
        pytest.skip("this OpenCV cannot write MPEG-2")
    with open_clip(path) as reader:
        frames = list(reader.iter_frames())
        assert reader.info.complete, "an intact stream called incomplete"
    assert len(frames) == 300 and [frame_index(f) for f in frames] == [i % 256 for i in range(300)]
    data = path.read_bytes()
    holed = tmp_path / "holed.mpeg"  # three 2048-byte packs taken out of the middle
    holed.write_bytes(data[: 2048 * 12] + data[2048 * 15 :])
    with open_clip(holed) as reader:
        assert len(list(reader.iter_frames())) < 300 and not reader.info.complete


def test_a_folder_search_names_the_video_files_it_does_not_take(tmp_path: Path) -> None:
    from lusviewer.io import ClipError, find_clips

    for name in ("a.mp4", "b.webm", "c.ts", "notes.txt", "labels.csv"):
        (tmp_path / name).write_bytes(b"x")
    problems: list[ClipError] = []
    assert find_clips(tmp_path, on_error=problems.append) == [str(tmp_path / "a.mp4")]
    # .webm and .ts clips used to be passed over in silence: in neither the report nor the errors
    assert sorted(Path(p.path).name for p in problems) == ["b.webm", "c.ts"]
    assert all("not among the formats" in p.reason and ".mp4" in p.reason for p in problems)
