"""Frame i is frame i in a video with damage in the middle.

FFmpeg (under OpenCV) passes silently over frames it cannot decode: the frames after
the damage then came out numbered as the ones lost (an MPEG transport or program stream
with a damaged middle read frame 30 as frame 28, and so on to the end; an AVI of MJPEG
read frames 30-59 as 24-53). A reader now ends an MPEG stream at its first gap (the
frames before it are exact; the clip is incomplete), and refuses, with one line, an
indexed container whose frames read in order fell behind its index."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from corpus import frame_index, index_frames, write_cv2

from lusviewer.io import ClipError, open_clip

N = 60


def _damaged(tmp_path: Path, name: str, fourcc: str, seed: int = 7) -> Path:
    """A clip of N indexed frames with 2000 random bytes written over its middle."""
    src = write_cv2(tmp_path / f"src_{name}", fourcc, index_frames(N, 96, 64))
    if src is None:
        pytest.skip(f"this OpenCV cannot write {fourcc} into {name}")
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = random.Random(seed).randbytes(2000)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def _read_in_order(path: Path) -> tuple[list[int], bool, ClipError | None]:
    """The index drawn in each frame read in order, whether the clip says it is complete,
    and the ClipError reading ended with (None when none)."""
    seen: list[int] = []
    with open_clip(path) as reader:
        try:
            seen.extend(frame_index(f) for f in reader.iter_frames())
        except ClipError as exc:
            return seen, reader.info.complete, exc
        return seen, reader.info.complete, None


@pytest.mark.parametrize("name", ["mpeg2.ts", "mpeg2.mpg"])
@pytest.mark.parametrize("seed", [7, 8])
def test_mpeg_stream_damaged_in_the_middle_ends_at_the_gap(
    tmp_path: Path, name: str, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = _damaged(tmp_path, name, "mpg2", seed)
    with caplog.at_level(logging.WARNING, logger="lusviewer.io"):
        seen, complete, error = _read_in_order(path)
    assert error is None
    assert seen == list(range(len(seen))), seen  # frame i is frame i, to the last frame read
    assert 0 < len(seen) < N and not complete
    assert any("frames missing after frame" in r.getMessage() for r in caplog.records), caplog.text
    with open_clip(path) as reader:  # by index, too (backwards: decoded in order again)
        n = reader.info.frame_count
        assert n == len(seen)
        assert [frame_index(reader.frame(i)) for i in (n - 1, 0, n // 2)] == [n - 1, 0, n // 2]


def test_avi_whose_decoder_passed_over_damaged_frames_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    """An AVI of MJPEG, damaged in the middle: read in order, frames 30.. came out as 24..,
    and reading ended at 54 of the 60 its index holds; it was scored, its frame rows
    misnumbered from 24 on, as a clip cut short at 54. The frames in order cannot tell
    where the gap was until they end: then the clip is refused in one line, and ``score``
    leaves it out of the report (the others scored)."""
    path = _damaged(tmp_path, "mjpg.avi", "MJPG")
    seen, _, error = _read_in_order(path)
    assert seen != list(range(len(seen)))  # what the decoder gave: the damage this is about
    assert error is not None and "frames are missing before frame" in str(error), error
    assert str(error).startswith(str(path)) and "\n" not in str(error)
    from lusviewer.cli import run

    report = tmp_path / "r.json"
    capsys.readouterr()
    rc = run(["score", str(path), str(synthetic_clip), "--model", str(tiny_model), "-o", str(report), "-q"])
    stderr = capsys.readouterr().err
    assert rc == 1, stderr
    assert f"lusviewer: error: {path}: frames are missing before frame" in stderr, stderr
    data = json.loads(report.read_text())
    assert [c["clip"] for c in data["clips"]] == [str(synthetic_clip)], data.keys()


def test_frames_that_stop_decoding_are_still_read_up_to_there(tmp_path: Path) -> None:
    """The check costs nothing where the frames in order match the index: an FFV1 MKV whose
    frames stop decoding at 30 still gives those 30 frames, incomplete (not refused)."""
    path = _damaged(tmp_path, "ffv1.mkv", "FFV1")
    seen, complete, error = _read_in_order(path)
    assert error is None and not complete
    assert seen == list(range(len(seen))) and 0 < len(seen) < N
