from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dicom as _dicom
from conftest import shared_data

from lusviewer.io import ClipError, find_clips, open_clip
from lusviewer.io.synthetic import synthetic_frames, write_video


@pytest.mark.parametrize(("suffix", "fourcc"), [(".mp4", "mp4v"), (".avi", "MJPG"), (".avi", "XVID")])
def test_video_containers_frame_accurate(tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", synthetic_frames(30, size=64, seed=2), fps=15.0, fourcc=fourcc)
    with open_clip(path) as clip:
        assert clip.info.frame_count == 30
        assert clip.info.fps == pytest.approx(15.0)
        assert (clip.info.width, clip.info.height) == (64, 64)
        in_order = list(clip.iter_frames())
        assert len(in_order) == 30 and in_order[0].shape == (64, 64, 3) and in_order[0].dtype == np.uint8
        for i in [29, 0, 17, 3, 28, 5, 6, 29, 12]:
            assert np.array_equal(clip.frame(i), in_order[i]), f"frame {i} by index differs"
        assert np.array_equal(clip.frame(-1), in_order[-1])
        with pytest.raises(IndexError):
            clip.frame(30)


def test_gif(tmp_path: Path) -> None:
    from PIL import Image

    frames = [Image.fromarray(f) for f in synthetic_frames(8, size=48, seed=3)]
    path = tmp_path / "clip.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with open_clip(path) as clip:
        assert clip.info.frame_count == 8
        seq = list(clip.iter_frames())
        assert np.array_equal(clip.frame(5), seq[5])


def test_dicom_monochrome_multiframe(tmp_path: Path) -> None:
    frames = np.stack([f[:, :, 0] for f in synthetic_frames(6, size=40, seed=4)])
    path = _dicom(tmp_path / "mono.dcm", frames, "MONOCHROME2", FrameTime="40")
    with open_clip(path) as clip:
        assert clip.info.frame_count == 6 and clip.info.fps == pytest.approx(25.0)
        assert clip.info.format == "dicom"
        seq = list(clip.iter_frames())
        assert np.array_equal(seq[3][:, :, 0], frames[3])
        assert np.array_equal(clip.frame(3), seq[3]) and np.array_equal(clip.frame(0), seq[0])


def test_dicom_rgb_and_ybr_and_cine_rate(tmp_path: Path) -> None:
    import cv2

    rgb = np.stack(list(synthetic_frames(4, size=32, seed=5)))
    rgb[..., 0] = 200  # make it colourful
    path = _dicom(tmp_path / "rgb.dcm", rgb, "RGB", CineRate="30")
    with open_clip(path) as clip:
        assert clip.info.fps == pytest.approx(30.0)
        assert np.array_equal(clip.frame(2), rgb[2])
    ybr = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb)[:, :, [0, 2, 1]] for f in rgb])
    path = _dicom(tmp_path / "ybr.dcm", ybr, "YBR_FULL")
    with open_clip(path) as clip:
        got = clip.frame(1).astype(int)
        assert np.abs(got - rgb[1].astype(int)).max() <= 3  # YBR -> RGB rounding


def test_dicom_palette_and_single_frame(tmp_path: Path) -> None:
    idx = np.arange(32 * 32, dtype=np.uint8).reshape(1, 32, 32) % 4
    lut_r = (np.array([0, 100, 200, 255], dtype=np.uint16) * 257).tobytes()
    lut_g = (np.array([0, 50, 60, 70], dtype=np.uint16) * 257).tobytes()
    lut_b = (np.array([10, 20, 30, 40], dtype=np.uint16) * 257).tobytes()
    path = _dicom(
        tmp_path / "pal.dcm",
        idx,
        "PALETTE COLOR",
        RedPaletteColorLookupTableDescriptor=[4, 0, 16],
        GreenPaletteColorLookupTableDescriptor=[4, 0, 16],
        BluePaletteColorLookupTableDescriptor=[4, 0, 16],
        RedPaletteColorLookupTableData=lut_r,
        GreenPaletteColorLookupTableData=lut_g,
        BluePaletteColorLookupTableData=lut_b,
    )
    with open_clip(path) as clip:
        assert clip.info.frame_count == 1
        f = clip.frame(0)
        assert f.shape == (32, 32, 3)
        assert tuple(f[0, 1]) == (100, 50, 20)  # index 1 through the LUT, 16 -> 8 bit


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "not_video", "folder", "garbage_dicom"])
def test_bad_input_names_file_and_reason(tmp_path: Path, synthetic_clip: Path, case: str) -> None:
    path = tmp_path / f"{case}.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        data = synthetic_clip.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif case == "not_video":
        path.write_text("this is a text file, not a video\n" * 50)
    elif case == "folder":
        path.mkdir()
    elif case == "garbage_dicom":
        path = tmp_path / "garbage.dcm"
        path.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    with pytest.raises(ClipError) as err, open_clip(path) as clip:
        list(clip.iter_frames())
    assert str(path) in str(err.value)
    assert err.value.reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path, synthetic_clip: Path) -> None:
    path = tmp_path / "locked.mp4"
    path.write_bytes(synthetic_clip.read_bytes())
    path.chmod(0)
    with pytest.raises(ClipError, match="cannot be read"):
        open_clip(path)


def test_image_folder_is_a_clip(tmp_path: Path) -> None:
    import cv2

    frames = list(synthetic_frames(12, size=40, seed=6))
    folder = tmp_path / "clip_001"
    folder.mkdir()
    for i, f in enumerate(frames):  # natural order: frame_2 before frame_10
        cv2.imwrite(str(folder / f"frame_{i}_Score1.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    with open_clip(folder) as clip:
        assert clip.info.frame_count == 12 and clip.info.format == "images"
        assert np.array_equal(clip.frame(10), frames[10])
        assert np.array_equal(list(clip.iter_frames())[2], frames[2])
    assert find_clips(tmp_path) == [str(folder)]


def test_find_clips(tmp_path: Path, synthetic_clip: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ["b.mp4", "sub/a.AVI", "notes.txt", ".hidden.mp4", "README"]:
        (tmp_path / name).write_bytes(b"x")
    for name in ["sub/IM0001", "DICOMDIR"]:  # PACS-style names: DICOM preamble, no extension
        (tmp_path / name).write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    found = find_clips(tmp_path)
    assert found == [str(tmp_path / "b.mp4"), str(tmp_path / "sub/IM0001"), str(tmp_path / "sub/a.AVI")]
    assert find_clips(synthetic_clip) == [str(synthetic_clip)]


def test_real_clips_frame_accurate_and_counted() -> None:
    """Every unscored POCUS clip (avi FMP4/h264, mp4, mov, gif): index == in order."""
    folder = shared_data("pocus-unscored")
    with open(folder / "metadata.csv", newline="") as fh:
        meta = {r["file"]: r for r in csv.DictReader(fh)}
    rng = np.random.default_rng(0)
    for path in sorted((folder / "videos").iterdir()):
        with open_clip(path) as clip:
            seq = list(clip.iter_frames())
            assert len(seq) == clip.info.frame_count, path.name
            if path.name in meta and meta[path.name].get("frames"):
                assert clip.info.frame_count == int(meta[path.name]["frames"]), path.name
            picks = [len(seq) - 1, 0, *rng.integers(0, len(seq), 6).tolist()]
            for i in picks:
                assert np.array_equal(clip.frame(i), seq[i]), f"{path.name}: frame {i}"


def _mono_dicom(tmp_path: Path, name: str = "m.dcm", n: int = 4, **attrs: object) -> Path:
    frames = np.stack([f[:, :, 0] for f in synthetic_frames(n, size=16, seed=7)])
    return _dicom(tmp_path / name, frames, "MONOCHROME2", **attrs)


@pytest.mark.parametrize(
    ("case", "old", "new"),
    [
        ("frames_garbage", b"\x28\x00\x08\x00IS\x02\x004 ", b"\x28\x00\x08\x00IS\x02\x00x\xd4"),
        ("unknown_vr", b"\x28\x00\x10\x00US", b"\x28\x00\x10\x00\x55\xa4"),
        ("odd_length", b"\x28\x00\x10\x00US\x02\x00", b"\x28\x00\x10\x00US\x03\x00"),
        ("rows_multivalue", b"", b""),
        ("truncated_header", b"", b""),
    ],
)
def test_corrupt_dicom_header_is_a_clip_error(tmp_path: Path, case: str, old: bytes, new: bytes) -> None:
    path = _mono_dicom(tmp_path, Rows=[16, 16]) if case == "rows_multivalue" else _mono_dicom(tmp_path)
    data = path.read_bytes()
    if old:
        assert data.count(old) == 1
        path.write_bytes(data.replace(old, new))
    elif case == "truncated_header":
        path.write_bytes(data[:200])
    with pytest.raises(ClipError) as err, open_clip(path) as clip:
        list(clip.iter_frames())
    assert err.value.path == str(path)
    if case != "truncated_header":
        assert "DICOM header is corrupt" in err.value.reason


def test_dicom_fewer_frames_than_header_says(tmp_path: Path) -> None:
    frames = np.stack([f[:, :, 0] for f in synthetic_frames(12, size=16, seed=8)])
    path = _dicom(tmp_path / "over.dcm", frames, "MONOCHROME2", NumberOfFrames=20)
    with open_clip(path) as clip:
        assert clip.info.frame_count == 12
        seq = list(clip.iter_frames())
        assert len(seq) == 12 and np.array_equal(seq[11][:, :, 0], frames[11])
        assert np.array_equal(clip.frame(7)[:, :, 0], frames[7])
    cut = tmp_path / "cut.dcm"  # a file cut off in frame 5: frames 0..4 remain
    data = _dicom(tmp_path / "full.dcm", frames, "MONOCHROME2").read_bytes()
    cut.write_bytes(data[: len(data) - frames[5:].nbytes + 100])
    with open_clip(cut) as clip:
        assert clip.info.frame_count == 5
        assert np.array_equal(list(clip.iter_frames())[4][:, :, 0], frames[4])


@pytest.mark.parametrize("signed", [False, True])
def test_dicom_monochrome1_16bit_window(tmp_path: Path, signed: bool) -> None:
    base = np.stack([f[:, :, 0] for f in synthetic_frames(3, size=16, seed=9)]).astype(np.int32) * 100
    if signed:
        base -= 12000  # negative stored values
    top = int(base.max())
    dtype = np.int16 if signed else np.uint16
    common = {"BitsAllocated": 16, "BitsStored": 16, "HighBit": 15, "PixelRepresentation": int(signed)}
    c, w = float(base.mean()), float(base.max() - base.min()) * 0.8  # a window that clips both ends
    m2 = _dicom(tmp_path / "m2.dcm", base.astype(dtype), "MONOCHROME2", WindowCenter=c, WindowWidth=w, **common)
    m1 = _dicom(
        tmp_path / "m1.dcm", (top - base).astype(dtype), "MONOCHROME1", WindowCenter=top - c, WindowWidth=w, **common
    )
    with open_clip(m2) as a, open_clip(m1) as b:
        fa, fb = np.stack(list(a.iter_frames())), np.stack(list(b.iter_frames()))
    assert fa.std() > 20  # not flat
    assert np.abs(fa.astype(int) - fb.astype(int)).max() <= 1


def test_animated_png(tmp_path: Path) -> None:
    import cv2
    from PIL import Image

    frames = list(synthetic_frames(10, size=48, seed=10))
    path = tmp_path / "anim.png"
    Image.fromarray(frames[0]).save(path, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]])
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    decodable = 0
    while cap.grab():
        decodable += 1
    cap.release()
    if decodable != 10:
        pytest.skip(f"OpenCV here does not decode APNG ({decodable} of 10 frames)")
    with open_clip(path) as clip:
        assert clip.info.frame_count == 10
        seq = list(clip.iter_frames())
        assert all(np.array_equal(s, f) for s, f in zip(seq, frames, strict=True))
        for i in [9, 0, 5, 2, 8, 1]:
            assert np.array_equal(clip.frame(i), frames[i]), f"frame {i}"


def test_file_name_not_utf8(tmp_path: Path, synthetic_clip: Path) -> None:
    import cv2

    name = os.fsencode(tmp_path) + b"/bad\xffname.mp4"
    try:
        with open(name, "wb") as fh:
            fh.write(synthetic_clip.read_bytes())
    except OSError:
        pytest.skip("the filesystem refuses file names that are not UTF-8")
    with pytest.raises(ClipError, match="not valid UTF-8"):
        open_clip(os.fsdecode(name))
    folder = os.fsencode(tmp_path) + b"/frames\xff"  # frame images: read whatever their names
    os.mkdir(folder)
    frames = list(synthetic_frames(3, size=16, seed=11))
    for i, f in enumerate(frames):
        with open(folder + b"/f\xff%d.png" % i, "wb") as fh:
            fh.write(cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes())
    with open_clip(os.fsdecode(folder)) as clip:
        assert np.array_equal(clip.frame(2), frames[2])


def test_reasons_for_links_and_odd_dicoms(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").symlink_to(tmp_path / "b.mp4")
    (tmp_path / "b.mp4").symlink_to(tmp_path / "a.mp4")
    with pytest.raises(ClipError, match="symbolic link loop"):
        open_clip(tmp_path / "a.mp4")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    with pytest.raises(ClipError, match="broken symbolic link"):
        open_clip(tmp_path / "dangling.mp4")

    import pydicom

    ds = pydicom.dcmread(_mono_dicom(tmp_path, "meta.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(ClipError, match="no pixel data"):
        open_clip(tmp_path / "nopixels.dcm")
    ds = pydicom.dcmread(_mono_dicom(tmp_path, "meta.dcm"))
    del ds.file_meta
    ds.preamble = None
    ds.save_as(tmp_path / "nometa.dcm", implicit_vr=True, little_endian=True)
    with pytest.raises(ClipError) as err:
        open_clip(tmp_path / "nometa.dcm")
    assert "not a DICOM file" in err.value.reason and "force" not in err.value.reason
