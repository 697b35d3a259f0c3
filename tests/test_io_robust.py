"""Issue 16, reader side: frame-accurate MPEG, true counts, complete flags, no crash on
uncompressed AVI, no hang on FIFOs, sane DICOM values, reported search problems, and
messages in the user's terms. Clips are generated (tests/corpus.py), frames checked by
the index each one draws."""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from corpus import (
    dib_avi_bytes,
    faststart,
    frame_index,
    index_frames,
    last_sample_size,
    make_dicom,
    set_raw,
    write_cv2,
    write_gif,
)

from lusviewer.io import ClipError, find_clips, open_clip

# --- item 2: MPEG-1/2 seeks land late -------------------------------------------------


def _mpeg(tmp_path: Path, fourcc: str, n: int = 100) -> Path:
    path = write_cv2(tmp_path / f"clip_{fourcc}.mpeg", fourcc, index_frames(n, 96, 64))
    if path is None:
        pytest.skip(f"this OpenCV cannot write {fourcc!r} MPEG program streams")
    return path


def _check_by_content(path: Path, n: int, picks: list[int]) -> None:
    with open_clip(path) as clip:
        assert clip.info.frame_count == n
        for i in picks:
            assert frame_index(clip.frame(i)) == i, f"frame {i} by index shows frame {frame_index(clip.frame(i))}"
        assert [frame_index(f) for f in clip.iter_frames()] == list(range(n))
        last = clip.frame(n - 1)  # read the last frame, then back to the start
        assert frame_index(last) == n - 1
        assert frame_index(clip.frame(0)) == 0
        assert frame_index(clip.frame(12)) == 12


@pytest.mark.parametrize("fourcc", ["mpg2", "PIM1"])
def test_mpeg_program_stream_frame_accurate(tmp_path: Path, fourcc: str) -> None:
    """OpenCV lands on frame 62 when asked for 60 in this MPEG-2 stream, while its
    position property says 60: the old reader trusted that and showed frame 62."""
    path = _mpeg(tmp_path, fourcc)
    rng = random.Random(0)
    _check_by_content(path, 100, [60, 5, 0, 13, 40, 99, *(rng.randrange(100) for _ in range(30))])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (B-frame MPEG streams need it)")
@pytest.mark.parametrize(
    "codec", [["-c:v", "mpeg2video", "-bf", "2", "-g", "12"], ["-c:v", "mpeg1video", "-bf", "2", "-g", "12"]]
)
def test_mpeg_with_b_frames_frame_accurate(tmp_path: Path, codec: list[str]) -> None:
    frames = index_frames(120, 96, 64)
    path = tmp_path / "b.mpeg"
    raw = b"".join(f[:, :, ::-1].tobytes() for f in frames)
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "96x64"]
    subprocess.run([*cmd, "-r", "25", "-i", "-", *codec, "-q:v", "2", "-f", "mpeg", str(path)], input=raw, check=True)
    rng = random.Random(1)
    _check_by_content(path, 120, [119, 0, 90, 12, 40, 100, *(rng.randrange(120) for _ in range(30))])


# --- items 3 and 4: true counts, complete flags ---------------------------------------


def _cut_last_frame(tmp_path: Path, name: str, fourcc: str = "mp4v", n: int = 30) -> Path:
    """A clip whose header lists n frames and whose file ends 3 bytes into the last one."""
    src = write_cv2(tmp_path / f"src_{name}", fourcc, index_frames(n))
    assert src is not None
    data = faststart(src.read_bytes())  # header first, as streamed files are: mdat ends the file
    path = tmp_path / name
    path.write_bytes(data[: len(data) - last_sample_size(data) + 3])
    return path


def test_header_overstating_gives_true_count_at_open(tmp_path: Path) -> None:
    path = _cut_last_frame(tmp_path, "cut.mov")
    with open_clip(path) as clip:
        info = clip.info
        assert info.frame_count == 29  # counted at open, not found out at the end
        assert (info.complete, info.header_frame_count) == (False, 30)
        assert [frame_index(f) for f in clip.iter_frames()] == list(range(29))
        assert frame_index(clip.frame(28)) == 28 and frame_index(clip.frame(3)) == 3
        assert clip.info.frame_count == 29


def test_complete_clips_say_so(tmp_path: Path) -> None:
    frames = index_frames(10)
    mp4 = write_cv2(tmp_path / "a.mp4", "mp4v", frames)
    gif = write_gif(tmp_path / "a.gif", frames)
    avi = tmp_path / "a.avi"
    avi.write_bytes(dib_avi_bytes(frames))
    dcm = make_dicom(tmp_path / "a.dcm", np.stack([f[:, :, 0] for f in frames]))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        (folder / f"f{i}.png").write_bytes(__import__("cv2").imencode(".png", f)[1].tobytes())
    mpg = write_cv2(tmp_path / "a.mpg", "PIM1", frames)
    for path, header in [(mp4, 10), (gif, 10), (avi, 10), (dcm, 10), (folder, None), (mpg, 10)]:
        if path is None:
            continue
        with open_clip(path) as clip:
            assert (clip.info.frame_count, clip.info.complete, clip.info.header_frame_count) == (10, True, header), path


@pytest.mark.parametrize("kind", ["mp4", "gif", "mpeg", "avi", "dicom"])
def test_clip_cut_short_is_incomplete(tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    frames = index_frames(30)
    if kind == "mp4":
        src = write_cv2(tmp_path / "s.mp4", "mp4v", frames)
        assert src is not None
        data = faststart(src.read_bytes())
    elif kind == "gif":
        data = write_gif(tmp_path / "s.gif", frames).read_bytes()
    elif kind == "mpeg":
        src = write_cv2(tmp_path / "s.mpg", "PIM1", frames)
        if src is None:
            pytest.skip("this OpenCV cannot write MPEG-1")
        data = src.read_bytes()
    elif kind == "avi":
        data = dib_avi_bytes(frames)
    else:
        data = make_dicom(tmp_path / "s.dcm", np.stack([f[:, :, 0] for f in frames])).read_bytes()
    path = tmp_path / f"cut.{ {'mpeg': 'mpg', 'dicom': 'dcm'}.get(kind, kind) }"
    path.write_bytes(data[: int(len(data) * 0.6) - 5])
    with caplog.at_level(logging.WARNING, logger="lusviewer.io"), open_clip(path) as clip:
        n = sum(1 for _ in clip.iter_frames())
        assert 0 < n < 30 and n == clip.info.frame_count
        assert clip.info.complete is False
    assert any("incomplete" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_frames_that_stop_decoding_mark_the_clip_incomplete(tmp_path: Path) -> None:
    from lusviewer.io.clip import VideoClipReader

    path = write_cv2(tmp_path / "a.mp4", "mp4v", index_frames(20))
    assert path is not None
    with open_clip(path) as clip:
        assert isinstance(clip, VideoClipReader)
        real = clip._read_at

        def failing(index: int) -> np.ndarray:
            if index >= 7:
                raise ClipError(path, f"frame {index} could not be decoded (truncated?)")
            return real(index)

        clip._read_at = failing  # type: ignore[method-assign]
        assert len(list(clip.iter_frames())) == 7
        assert (clip.info.frame_count, clip.info.complete) == (7, False)


# --- item 5: uncompressed AVI --------------------------------------------------------


def test_opencv_itself_dies_on_uncompressed_avi(tmp_path: Path) -> None:
    """The reason for the numpy path: OpenCV's FFmpeg backend kills the process."""
    path = tmp_path / "dib.avi"
    path.write_bytes(dib_avi_bytes(index_frames(5, 16, 16)))
    code = "import cv2,sys; c=cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG); [c.read() for _ in range(5)]; c.release()"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60)
    if proc.returncode >= 0:
        pytest.skip(f"this OpenCV survives uncompressed AVI (exit {proc.returncode})")


@pytest.mark.parametrize(
    ("bits", "top_down", "size"), [(24, False, (64, 48)), (24, True, (33, 7)), (32, False, (5, 3)), (8, False, (17, 9))]
)
def test_uncompressed_avi_read_safely(tmp_path: Path, bits: int, top_down: bool, size: tuple[int, int]) -> None:
    w, h = size
    frames = [np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8) for i in range(6)]
    if bits == 8:
        frames = [np.repeat(f[:, :, :1], 3, axis=2) for f in frames]  # the grey palette
    path = tmp_path / "dib.avi"
    path.write_bytes(dib_avi_bytes(frames, bits=bits, top_down=top_down))
    with open_clip(path) as clip:  # in this process: it must not crash
        assert (clip.info.frame_count, clip.info.width, clip.info.height) == (6, w, h)
        assert all(np.array_equal(a, b) for a, b in zip(clip.iter_frames(), frames, strict=True))
        assert np.array_equal(clip.frame(4), frames[4])


def test_decoder_crash_in_probe_becomes_a_clip_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lusviewer.io import probe

    path = tmp_path / "odd.avi"
    data = bytearray(dib_avi_bytes(index_frames(3, 16, 16)))
    at = data.index(b"strf") + 8 + 16
    data[at : at + 4] = b"ZZZZ"  # a codec nobody knows: probed in a child first
    path.write_bytes(bytes(data))
    monkeypatch.setattr(probe, "_PROBE", "import os; os.abort()")
    monkeypatch.setattr(probe, "_cache", {})
    runs = []
    real_run = subprocess.run

    def counting_run(*args: object, **kwargs: object) -> object:
        runs.append(args)
        return real_run(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(probe.subprocess, "run", counting_run)
    for _ in range(2):
        with pytest.raises(ClipError, match="decoder crashes on this file") as err:
            open_clip(path)
        assert err.value.path == str(path)
    assert len(runs) == 1  # the verdict is cached per path, mtime and size


# --- item 6: FIFO --------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.mp4"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            open_clip(fifo)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader so no thread is left behind
        with open(fifo, "wb"):
            pass
        t.join(10)
        pytest.fail("open_clip blocked on a FIFO")
    assert isinstance(outcome[0], ClipError) and "FIFO" in outcome[0].reason
    problems: list[ClipError] = []
    assert find_clips(tmp_path, on_error=problems.append) == []
    assert [p.path for p in problems] == [str(fifo)] and "FIFO" in problems[0].reason


# --- items 7, 8: DICOM values, search problems, links -------------------------------


@pytest.mark.parametrize("frame_time", [b"1e-320", b"inf", b"1e300", b"0", b"-40", b"abc"])
def test_dicom_absurd_frame_time_gives_sane_fps(
    tmp_path: Path, frame_time: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    grey = np.stack([f[:, :, 0] for f in index_frames(4, 16, 16)])
    ok = make_dicom(tmp_path / "ok.dcm", grey, FrameTime="40").read_bytes()
    path = tmp_path / "ft.dcm"
    path.write_bytes(set_raw(ok, 0x0018, 0x1063, b"DS", frame_time))
    with caplog.at_level(logging.WARNING, logger="lusviewer.io"), open_clip(path) as clip:
        assert np.isfinite(clip.info.fps) and clip.info.fps == 25.0
        assert clip.info.duration_s == pytest.approx(4 / 25)
    assert any("frame rate" in r.getMessage() for r in caplog.records)


def test_dicom_huge_frame_count_reads_frames_present(tmp_path: Path) -> None:
    import pydicom
    from pydicom.uid import RLELossless

    grey = np.stack([f[:, :, 0] for f in index_frames(5, 16, 16)])
    native = make_dicom(tmp_path / "n.dcm", grey, NumberOfFrames=2**31 - 1)
    ds = pydicom.dcmread(make_dicom(tmp_path / "src.dcm", grey))
    ds.compress(RLELossless)
    ds.NumberOfFrames = 2**31 - 1
    ds.save_as(tmp_path / "rle.dcm")
    for path in (native, tmp_path / "rle.dcm"):
        with open_clip(path) as clip:
            info = clip.info
            assert (info.frame_count, info.complete, info.header_frame_count) == (5, False, 2**31 - 1), path
            got = [f[:, :, 0] for f in clip.iter_frames()]
            assert len(got) == 5 and all(np.array_equal(a, b) for a, b in zip(got, grey, strict=True))


@pytest.mark.parametrize(
    ("element", "value", "words"),
    [
        ((0x0028, 0x0008, b"IS"), b"ab", "NumberOfFrames is 'ab', not a whole number"),
        ((0x0028, 0x0008, b"IS"), b"0", "NumberOfFrames is 0"),
        ((0x0028, 0x0002, b"US"), None, "4 samples per pixel"),
    ],
)
def test_dicom_header_problems_in_user_terms(
    tmp_path: Path, element: tuple[int, int, bytes], value: bytes | None, words: str
) -> None:
    grey = np.stack([f[:, :, 0] for f in index_frames(4, 16, 16)])
    if value is None:
        path = make_dicom(tmp_path / "d.dcm", grey, SamplesPerPixel=4)
    else:
        path = tmp_path / "d.dcm"
        data = make_dicom(tmp_path / "ok.dcm", grey).read_bytes()
        path.write_bytes(set_raw(data, *element, value))
    with pytest.raises(ClipError) as err:
        open_clip(path)
    assert words in err.value.reason and "Error" not in err.value.reason


def test_find_clips_reports_unreadable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Tests run as root, which enters any folder: EACCES is simulated."""
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.mp4").write_bytes(b"x")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.mp4").write_bytes(b"x")
    real = os.scandir

    def scandir(path: object) -> object:
        if Path(str(path)) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    problems: list[ClipError] = []
    assert find_clips(tmp_path, on_error=problems.append) == [str(tmp_path / "ok" / "a.mp4")]
    assert len(problems) == 1 and problems[0].path == str(locked)
    assert "cannot be read (Permission denied)" in problems[0].reason
    with caplog.at_level(logging.WARNING, logger="lusviewer.io"):  # without on_error: logged
        assert find_clips(tmp_path) == [str(tmp_path / "ok" / "a.mp4")]
    assert [r.getMessage() for r in caplog.records] == [str(problems[0])]


def test_links_among_inputs(tmp_path: Path) -> None:
    (tmp_path / "self.mp4").symlink_to(tmp_path / "self.mp4")
    (tmp_path / "a.avi").symlink_to(tmp_path / "b.avi")
    (tmp_path / "b.avi").symlink_to(tmp_path / "a.avi")
    (tmp_path / "gone.mov").symlink_to(tmp_path / "nowhere.mov")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path)  # a folder link back up: not followed
    problems: list[ClipError] = []
    assert find_clips(tmp_path, on_error=problems.append) == []
    reasons = {Path(p.path).name: p.reason for p in problems}
    assert set(reasons) == {"self.mp4", "a.avi", "b.avi", "gone.mov"}
    assert "link loop" in reasons["self.mp4"] and "broken symbolic link" in reasons["gone.mov"]
    for name in ("self.mp4", "a.avi"):
        assert find_clips(tmp_path / name) == [str(tmp_path / name)]
        with pytest.raises(ClipError, match="symbolic link loop"):
            open_clip(tmp_path / name)


# --- item 12: messages ---------------------------------------------------------------


def test_pydicom_warnings_become_log_records(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    grey = np.stack([f[:, :, 0] for f in index_frames(4, 16, 16)])
    data = make_dicom(tmp_path / "ok.dcm", grey, NumberOfFrames=4, FrameTime="40").read_bytes()
    path = tmp_path / "w.dcm"
    path.write_bytes(set_raw(data, 0x0018, 0x1063, b"DS", b"4\xd4"))  # FrameTime: not a decimal
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="lusviewer.io"), open_clip(path) as clip:
        _ = clip.info.frame_count
        assert len(list(clip.iter_frames())) == 4
    assert capfd.readouterr().err == ""  # nothing bare on stderr
    msgs = [r.getMessage() for r in caplog.records if r.name.startswith("lusviewer.io")]
    assert msgs and all(m.startswith(f"{path}: ") and m.isprintable() for m in msgs)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("folder_named_mp4", "is a folder, not a mp4 file"),
        ("empty_folder", "is a folder with no frame images"),
        ("not_utf8", "not valid UTF-8"),
        ("newline", "could not open"),
    ],
)
def test_messages_in_user_terms_one_printable_line(tmp_path: Path, case: str, words: str) -> None:
    clip = write_cv2(tmp_path / "ok.mp4", "mp4v", index_frames(3))
    assert clip is not None
    if case == "folder_named_mp4":
        path: str = str(tmp_path / "x.mp4")
        os.mkdir(path)
    elif case == "empty_folder":
        path = str(tmp_path / "empty")
        os.mkdir(path)
    else:
        raw = os.fsencode(tmp_path) + (b"/bad\xff.mp4" if case == "not_utf8" else b"/new\nline\x1b[2J.mp4")
        try:
            with open(raw, "wb") as fh:
                fh.write(b"not a video" * 10)
        except OSError:
            pytest.skip("the file system refuses this name")
        path = os.fsdecode(raw)
    with pytest.raises(ClipError) as err:
        open_clip(path)
    assert words in err.value.reason
    assert str(err.value).isprintable() and err.value.path == path


def test_header_bytes_are_not_quoted_raw(tmp_path: Path) -> None:
    """A NumberOfFrames of 72 raw bytes was quoted whole into the message (200 characters)."""
    grey = np.stack([f[:, :, 0] for f in index_frames(4, 16, 16)])
    data = make_dicom(tmp_path / "ok.dcm", grey, NumberOfFrames=4).read_bytes()
    path = tmp_path / "g.dcm"
    path.write_bytes(set_raw(data, 0x0028, 0x0008, b"IS", bytes(range(128, 200))))
    with pytest.raises(ClipError) as err:
        open_clip(path)
    reason = err.value.reason
    assert reason.isascii() and reason.isprintable() and len(reason) < 120, reason
    assert "NumberOfFrames is" in reason


def test_clip_cut_short_keeps_seeking(tmp_path: Path) -> None:
    """A missing last frame is no reason to give up container seeks (decoding every
    backward jump from the start would make scrubbing slow); seeks stay exact."""
    from lusviewer.io.clip import VideoClipReader

    path = _cut_last_frame(tmp_path, "cut.mp4")
    with open_clip(path) as clip:
        assert isinstance(clip, VideoClipReader)
        for i in [28, 2, 20, 0, 27]:
            assert frame_index(clip.frame(i)) == i
        assert clip._seek_exact
