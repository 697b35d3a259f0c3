"""A generated corpus of bad and odd inputs (issue 16), made fresh into a folder.

Nothing third-party is committed: every clip is written here (OpenCV's writers, PIL,
pydicom, or by hand with ``struct``), then damaged on purpose. Each builder takes a
folder and returns :class:`Case` s; :func:`reader_corpus` is all of them for the clip
readers. Frames encode their own index (:func:`index_frame` / :func:`frame_index`), so
a reader's frame ``i`` can be checked by content.

Reusable: other suites add builders of their own (outputs, cards, weights) that return
``Case`` lists the same way, and can run any per-case check in a child process with
:func:`run_isolated` (a native crash or a hang then names its case instead of ending
the test run).
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

FRAMES = 30  # frames per generated clip
W, H = 64, 48  # frame size of generated clips
FPS = 25.0
BITS = 8  # index bits drawn per frame (0..255)


@dataclass(frozen=True)
class Case:
    """One generated input.

    ``frames``: how many frames it was made with (None: it is not a clip, or how
    many survive is not defined). ``intact``: an undamaged clip that must open and
    read exactly ``frames`` frames. ``indexed``: its frames carry their index
    (checkable with :func:`frame_index`; lossy codecs keep it at this size).
    """

    name: str
    path: str
    frames: int | None = None
    intact: bool = False
    indexed: bool = False
    #: What the case is given as: "clip" (an input), "output" (``-o``), "model" (``--model``).
    kind: str = "clip"


# --- frames that carry their index ---------------------------------------------------


def index_frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    """An RGB frame showing ``i`` as BITS vertical stripes (white = 1, LSB left), with
    a grey band across the bottom so no frame is all black."""
    img = np.zeros((h, w, 3), np.uint8)
    sw = max(1, w // BITS)
    for b in range(BITS):
        if (i >> b) & 1:
            img[: max(1, h * 3 // 4), b * sw : (b + 1) * sw] = 255
    img[h * 3 // 4 :, :] = 40 + (i * 37) % 200  # no two neighbours alike, even at 1x1
    return img


def frame_index(frame: np.ndarray) -> int:
    """The index :func:`index_frame` drew into ``frame`` (any size it was made at)."""
    h, w = frame.shape[:2]
    sw = max(1, w // BITS)
    row = frame[max(0, h * 3 // 8)]
    return sum(1 << b for b in range(BITS) if row[b * sw + sw // 2].mean() > 128)


def index_frames(n: int, w: int = W, h: int = H) -> list[np.ndarray]:
    return [index_frame(i, w, h) for i in range(n)]


# --- writers -------------------------------------------------------------------------


def write_cv2(path: Path, fourcc: str, frames: Iterable[np.ndarray], fps: float = FPS) -> Path | None:
    """Write RGB frames with OpenCV; None if this OpenCV cannot write ``fourcc`` there."""
    writer = None
    try:
        for f in frames:
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (f.shape[1], f.shape[0]))  # type: ignore[attr-defined]
                if not writer.isOpened():
                    return None
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path if path.exists() and path.stat().st_size > 0 else None


def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def dib_avi_bytes(frames: list[np.ndarray], fps: float = FPS, *, bits: int = 24, top_down: bool = False) -> bytes:
    """A standard uncompressed AVI ('DIB ' / BI_RGB), as Windows writes it: bottom-up
    rows (positive biHeight) unless ``top_down``; 24-bit BGR, 32-bit BGRx or 8-bit grey
    palette; an idx1 index."""
    n = len(frames)
    h, w = frames[0].shape[:2]
    stride = (w * bits + 31) // 32 * 4
    size = stride * h
    rate = round(fps)
    avih = struct.pack("<10I4I", int(1e6 / fps), size * rate, 0, 0x10, n, 0, 1, size, w, h, 0, 0, 0, 0)
    strh = struct.pack(
        "<4s4sIHHIIIIIIIIhhhh", b"vids", b"DIB ", 0, 0, 0, 0, 1, rate, 0, n, size, 0xFFFFFFFF, 0, 0, 0, w, h
    )
    palette = b"".join(bytes((g, g, g, 0)) for g in range(256)) if bits == 8 else b""
    strf = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bits, 0, size, 0, 0, 256 if bits == 8 else 0, 0)
    hdrl = _chunk(
        b"LIST",
        b"hdrl"
        + _chunk(b"avih", avih)
        + _chunk(b"LIST", b"strl" + _chunk(b"strh", strh) + _chunk(b"strf", strf + palette)),
    )
    movi, idx, off = b"", b"", 4
    for f in frames:
        if bits == 8:
            px = f[:, :, 0]
        elif bits == 24:
            px = f[:, :, ::-1].reshape(h, w * 3)
        else:
            px = np.concatenate([f[:, :, ::-1], np.zeros((h, w, 1), np.uint8)], axis=2).reshape(h, w * 4)
        rows = np.zeros((h, stride), np.uint8)
        rows[:, : px.shape[1]] = px
        if not top_down:
            rows = rows[::-1]
        c = _chunk(b"00db", rows.tobytes())
        idx += struct.pack("<4sIII", b"00db", 0x10, off, size)
        off += len(c)
        movi += c
    body = b"AVI " + hdrl + _chunk(b"LIST", b"movi" + movi) + _chunk(b"idx1", idx)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_gif(path: Path, frames: list[np.ndarray]) -> Path:
    from PIL import Image

    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=40, loop=0)
    return path


def _atoms(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the ISO-BMFF boxes in data[start:end]."""
    out = []
    p = start
    while p + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, p)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, p + 8)[0], 16
        elif size == 0:
            size = end - p
        if size < header or p + size > end:
            break
        out.append((kind, p, size))
        p += size
    return out


def faststart(data: bytes) -> bytes:
    """An MP4/MOV rewritten with its 'moov' box before 'mdat' (as streaming files are),
    chunk offsets moved to match: a file cut short then keeps its header."""
    top = _atoms(data, 0, len(data))
    moov = next((a for a in top if a[0] == b"moov"), None)
    if moov is None:
        return data
    moov_bytes = bytearray(data[moov[1] : moov[1] + moov[2]])
    shift = len(moov_bytes)

    def patch(start: int, end: int) -> None:
        for kind, off, size in _atoms(bytes(moov_bytes), start, end):
            if kind in (b"trak", b"mdia", b"minf", b"stbl", b"edts"):
                patch(off + 8, off + size)
            elif kind in (b"stco", b"co64"):
                n = struct.unpack_from(">I", moov_bytes, off + 12)[0]
                fmt, width = (">I", 4) if kind == b"stco" else (">Q", 8)
                for k in range(n):
                    at = off + 16 + k * width
                    struct.pack_into(fmt, moov_bytes, at, struct.unpack_from(fmt, moov_bytes, at)[0] + shift)

    patch(8, len(moov_bytes))
    first = top[0]
    keep = [a for a in top if a[0] != b"moov"]
    out = bytearray(data[first[1] : first[1] + first[2]]) if first[0] == b"ftyp" else bytearray()
    out += moov_bytes
    for kind, off, size in keep:
        if kind != b"ftyp":
            out += data[off : off + size]
    return bytes(out)


def last_sample_size(data: bytes) -> int:
    """The size of the last sample (frame) an MP4/MOV's 'stsz' box lists."""
    at = data.index(b"stsz") + 4
    fixed, count = struct.unpack_from(">II", data, at + 4)
    return int(fixed or struct.unpack_from(">I", data, at + 12 + 4 * (count - 1))[0])


def make_dicom(path: Path, frames: np.ndarray, photometric: str = "MONOCHROME2", **attrs: object) -> Path:
    from conftest import make_dicom as _make

    return _make(path, frames, photometric, **attrs)


def patch_bytes(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times"
    return data.replace(old, new)


def set_raw(data: bytes, group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """An explicit-VR little-endian DICOM file with one short element's value bytes
    replaced by ``value`` (padded to even length): values pydicom would not write."""
    key = struct.pack("<HH", group, element) + vr
    at = data.index(key)
    old_len = struct.unpack_from("<H", data, at + 6)[0]
    value = value + b" " * (len(value) % 2)
    return data[: at + 6] + struct.pack("<H", len(value)) + value + data[at + 8 + old_len :]


# --- intact sources --------------------------------------------------------------------


def sources(folder: Path) -> list[Case]:
    """The undamaged clips every damage is applied to (those this OpenCV can write)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = index_frames(FRAMES)
    out: list[Case] = []

    def add(name: str, path: Path | None, indexed: bool = True, n: int = FRAMES) -> None:
        if path is not None:
            out.append(Case(name, str(path), n, intact=True, indexed=indexed))

    for name, fourcc in [
        ("mp4v.mp4", "mp4v"),
        ("mp4v.mov", "mp4v"),
        ("mjpg.avi", "MJPG"),
        ("xvid.avi", "XVID"),
        ("ffv1.mkv", "FFV1"),
        ("mpeg1.mpg", "PIM1"),
        ("mpeg2.mpeg", "mpg2"),
    ]:
        add(name, write_cv2(folder / name, fourcc, frames))
    for name in ("mp4v.mp4", "mp4v.mov"):
        src = folder / name
        if src.exists():
            fast = folder / f"fast_{name}"
            fast.write_bytes(faststart(src.read_bytes()))
            add(fast.name, fast)
    add("anim.gif", write_gif(folder / "anim.gif", frames))
    for name, kw in [("dib24.avi", {}), ("dib24_topdown.avi", {"top_down": True}), ("dib32.avi", {"bits": 32})]:
        (folder / name).write_bytes(dib_avi_bytes(frames, **kw))  # type: ignore[arg-type]
        add(name, folder / name)
    (folder / "dib8.avi").write_bytes(dib_avi_bytes(frames, bits=8))
    add("dib8.avi", folder / "dib8.avi")
    grey = np.stack([f[:, :, 0] for f in frames])
    add("mono.dcm", make_dicom(folder / "mono.dcm", grey, FrameTime="40"))
    add("rgb.dcm", make_dicom(folder / "rgb.dcm", np.stack(frames), "RGB", CineRate="25"))
    try:
        import pydicom
        from pydicom.uid import RLELossless

        ds = pydicom.dcmread(folder / "mono.dcm")
        ds.compress(RLELossless)
        ds.save_as(folder / "rle.dcm")
        add("rle.dcm", folder / "rle.dcm")
    except Exception:  # this pydicom cannot encode RLE: the case is left out
        pass
    img_dir = folder / "frames_clip"
    img_dir.mkdir(exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(img_dir / f"frame_{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    add("frames_clip", img_dir)
    return out


# --- damage ----------------------------------------------------------------------------

TRUNCATIONS = (0.01, 0.05, 0.12, 0.25, 0.4, 0.5, 0.63, 0.77, 0.9, 0.97, 0.995)


def truncations(folder: Path, srcs: list[Case], fractions: Iterable[float] = TRUNCATIONS) -> list[Case]:
    """Each file clip cut at each fraction of its length (an MPEG program stream cut
    exactly between its 2048-byte packs is a valid shorter stream: moved off those)."""
    out = []
    fractions = tuple(fractions)
    for src in srcs:
        p = Path(src.path)
        if p.is_dir():
            continue
        data = p.read_bytes()
        for frac in fractions:
            cut = max(1, int(len(data) * frac))
            if cut % 2048 == 0:
                cut -= 7
            dst = folder / f"trunc{int(frac * 1000):03d}_{p.name}"
            dst.write_bytes(data[:cut])
            out.append(Case(dst.name, str(dst), src.frames))
    return out


def bitflips(folder: Path, srcs: list[Case], per_source: int = 8, seed: int = 16) -> list[Case]:
    """Each file clip with a few bits flipped: half in its first 1 KB (headers), half anywhere."""
    rng = random.Random(seed)
    out = []
    for src in srcs:
        p = Path(src.path)
        if p.is_dir():
            continue
        data = p.read_bytes()
        for k in range(per_source):
            buf = bytearray(data)
            span = min(len(buf), 1024) if k % 2 == 0 else len(buf)
            for _ in range(1 + k % 3):
                at = rng.randrange(span)
                buf[at] ^= 1 << rng.randrange(8)
            dst = folder / f"flip{k}_{p.name}"
            dst.write_bytes(bytes(buf))
            out.append(Case(dst.name, str(dst), src.frames))
    return out


def odd_sizes(folder: Path) -> list[Case]:
    """Tiny and odd frame sizes in each writable format, and headers claiming huge frames."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for w, h in [(1, 1), (2, 2), (3, 5), (17, 9), (65, 47), (8, 600)]:
        frames = index_frames(6, w, h)
        tag = f"{w}x{h}"
        for ext, fourcc in [(".mp4", "mp4v"), (".avi", "MJPG"), (".mpg", "PIM1")]:
            path = write_cv2(folder / f"odd_{tag}_{fourcc}{ext}", fourcc, frames)
            if path is not None:
                out.append(Case(path.name, str(path)))  # encoders may pad or refuse: not defined
        dib = folder / f"odd_{tag}_dib.avi"
        dib.write_bytes(dib_avi_bytes(frames))
        out.append(Case(dib.name, str(dib), 6, intact=True))
        gif = write_gif(folder / f"odd_{tag}.gif", frames)
        out.append(Case(gif.name, str(gif), 6, intact=True))
        dcm = make_dicom(folder / f"odd_{tag}.dcm", np.stack([f[:, :, 0] for f in frames]))
        out.append(Case(dcm.name, str(dcm), 6, intact=True))
    # Headers that claim enormous frames over a few bytes of data.
    small = index_frames(3, 16, 16)
    avi = bytearray(dib_avi_bytes(small))
    for w, h in [(1_000_000, 1_000_000), (65535, 65535), (2**31 - 1, 1), (-5, 16)]:
        buf = bytearray(avi)
        strf = buf.index(b"strf") + 8
        struct.pack_into("<ii", buf, strf + 4, w, h)
        dst = folder / f"huge_{w}x{h}_dib.avi"
        dst.write_bytes(bytes(buf))
        out.append(Case(dst.name, str(dst), 3))
    gif = bytearray(write_gif(folder / "tmp.gif", small).read_bytes())
    struct.pack_into("<HH", gif, 6, 65535, 65535)
    (folder / "huge_screen.gif").write_bytes(bytes(gif))
    out.append(Case("huge_screen.gif", str(folder / "huge_screen.gif"), 3))
    for rows, cols in [(65535, 65535), (1, 65535), (0, 16)]:
        dst = make_dicom(
            folder / f"huge_{rows}x{cols}.dcm", np.stack([f[:, :, 0] for f in small]), Rows=rows, Columns=cols
        )
        out.append(Case(dst.name, str(dst), 3))
    mp4 = write_cv2(folder / "tmp.mp4", "mp4v", small)
    if mp4 is not None:
        data = bytearray(mp4.read_bytes())
        at = data.index(b"tkhd")
        version = data[at + 4]
        wh = at + 4 + (92 if version == 1 else 80)
        struct.pack_into(">II", data, wh, 65535 << 16, 65535 << 16)
        at = data.index(b"mp4v")  # the visual sample entry: width and height at +28
        struct.pack_into(">HH", data, at + 28, 65535, 65535)
        (folder / "huge_dims.mp4").write_bytes(bytes(data))
        out.append(Case("huge_dims.mp4", str(folder / "huge_dims.mp4"), 3))
    return out


def dicom_variants(folder: Path) -> list[Case]:
    """DICOM headers with odd or absurd values."""
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.stack([f[:, :, 0] for f in index_frames(5, 16, 16)])
    out = []

    def add(name: str, frames: int | None, data: bytes | None = None, **attrs: object) -> None:
        path = make_dicom(folder / name, grey, **attrs)  # type: ignore[arg-type]
        if data is not None:
            path.write_bytes(data)
        out.append(Case(name, str(path), frames))

    ok = make_dicom(folder / "base6.dcm", grey, NumberOfFrames=6, FrameTime="40", CineRate="25").read_bytes()
    out.append(Case("base6.dcm", str(folder / "base6.dcm"), 5))
    raw_values = [
        *[
            (0x0018, 0x1063, b"DS", ft, 5)
            for ft in [b"1e-320", b"inf", b"-inf", b"nan", b"1e300", b"0", b"-40", b"abc"]
        ],
        *[(0x0018, 0x0040, b"IS", rate, 5) for rate in [b"0", b"99999999", b"-5", b"x"]],
        *[(0x0028, 0x0008, b"IS", nf, 5) for nf in [b"ab", b"-1", b"0", b"1e", b"\xff\xfe", b"2147483647", b"1000"]],
    ]
    for group, elem, vr, value, frames in raw_values:
        name = f"raw_{group:04x}{elem:04x}_{value.hex()}.dcm"
        (folder / name).write_bytes(set_raw(ok, group, elem, vr, value))
        out.append(Case(name, str(folder / name), frames))
    base = ok
    add("frames_2.dcm", 2, NumberOfFrames=2)  # the header says 2: the clip is 2 frames
    for spp in [0, 2, 4]:
        add(f"spp_{spp}.dcm", 5, SamplesPerPixel=spp)
    for bits in [0, 1, 12, 32]:
        add(f"bits_{bits}.dcm", 5, BitsAllocated=bits)
    add("pal_no_lut.dcm", 5, PhotometricInterpretation="PALETTE COLOR")
    add("ybr422.dcm", None, PhotometricInterpretation="YBR_FULL_422")
    add("photometric_junk.dcm", 5, PhotometricInterpretation="NONSENSE")
    add("window_zero.dcm", 5, WindowCenter=0, WindowWidth=0)
    rle = folder / "rle_src.dcm"
    try:
        import pydicom
        from pydicom.uid import RLELossless

        ds = pydicom.dcmread(make_dicom(rle, grey, NumberOfFrames=5))
        ds.compress(RLELossless)
        ds.NumberOfFrames = 2**31 - 1
        ds.save_as(folder / "rle_frames_huge.dcm")
        out.append(Case("rle_frames_huge.dcm", str(folder / "rle_frames_huge.dcm"), 5))
    except Exception:
        pass
    (folder / "preamble_only.dcm").write_bytes(b"\0" * 128 + b"DICM")
    out.append(Case("preamble_only.dcm", str(folder / "preamble_only.dcm")))
    (folder / "IM0001").write_bytes(base[: len(base) * 2 // 3])
    out.append(Case("IM0001", str(folder / "IM0001"), 5))
    return out


def other_formats(folder: Path) -> list[Case]:
    """Files with clip names that hold something else."""
    folder.mkdir(parents=True, exist_ok=True)
    png = cv2.imencode(".png", index_frame(3))[1].tobytes()
    contents = {
        "text.mp4": b"this is a text file, not a video\n" * 40,
        "html.avi": b"<!DOCTYPE html><html><body>404</body></html>\n",
        "png_named.mp4": png,
        "zeros.mov": b"\0" * 5000,
        "ones.mpeg": b"\xff" * 5000,
        "random.mkv": random.Random(1).randbytes(20000),
        "one_byte.mp4": b"\x00",
        "riff_only.avi": b"RIFF\x10\x00\x00\x00AVI LIST",
        "ftyp_only.mp4": struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0),
        "gif_header_only.gif": b"GIF89a\x10\x00\x10\x00\x00\x00\x00",
        "mpeg_pack_only.mpg": b"\x00\x00\x01\xba" + b"\x44" * 10,
        "wmv_random.wmv": random.Random(2).randbytes(3000),
    }
    out = []
    for name, data in contents.items():
        (folder / name).write_bytes(data)
        out.append(Case(name, str(folder / name)))
    return out


def fs_oddities(folder: Path) -> list[Case]:
    """File-system oddities: FIFO, links, empty files, folders with clip names, names
    that are not UTF-8 or hold control characters."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []

    def add(name: str | bytes, frames: int | None = None) -> None:
        raw = os.fsencode(folder) + b"/" + (name if isinstance(name, bytes) else name.encode())
        out.append(Case(os.fsdecode(name) if isinstance(name, bytes) else name, os.fsdecode(raw), frames))

    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.mp4")
        add("fifo.mp4")
    (folder / "loop_a.mp4").symlink_to(folder / "loop_b.mp4")
    (folder / "loop_b.mp4").symlink_to(folder / "loop_a.mp4")
    add("loop_a.mp4")
    (folder / "self.avi").symlink_to(folder / "self.avi")
    add("self.avi")
    (folder / "dangling.mov").symlink_to(folder / "nowhere.mov")
    add("dangling.mov")
    (folder / "empty.mp4").write_bytes(b"")
    add("empty.mp4")
    (folder / "empty.dcm").write_bytes(b"")
    add("empty.dcm")
    (folder / "dir.mp4").mkdir()
    add("dir.mp4")
    (folder / "empty_dir").mkdir()
    add("empty_dir")
    add("missing.mp4")
    out.append(Case("dev_null", "/dev/null"))
    clip = write_cv2(folder / "ok_for_names.mp4", "mp4v", index_frames(4))
    names = [b"bad\xffname.mp4", b"new\nline.mp4", b"esc\x1b[2J.mp4", "ünïcödé.mp4".encode()]
    for raw in names:
        try:
            with open(os.fsencode(folder) + b"/" + raw, "wb") as fh:
                fh.write(clip.read_bytes() if clip is not None else b"")
        except OSError:  # the file system refuses the name
            continue
        add(raw, 4)
    (folder / "link_to_clip.mp4").symlink_to(folder / "ok_for_names.mp4")
    add("link_to_clip.mp4", 4)
    return out


def reader_corpus(folder: Path) -> list[Case]:
    """Every case for the clip readers (about 400)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom on the odd values written on purpose
        return _reader_corpus(folder)


def _reader_corpus(folder: Path) -> list[Case]:
    srcs = sources(folder / "src")
    (folder / "trunc").mkdir()
    (folder / "flip").mkdir()
    cases = [
        *srcs,
        *truncations(folder / "trunc", srcs),
        *bitflips(folder / "flip", srcs),
        *odd_sizes(folder / "odd"),
        *dicom_variants(folder / "dicom"),
        *other_formats(folder / "formats"),
        *fs_oddities(folder / "fs"),
    ]
    # Names unique across builders: the path under ``folder``.
    named = [Case(os.path.relpath(c.path, folder), c.path, c.frames, c.intact, c.indexed, c.kind) for c in cases]
    assert len({c.name for c in named}) == len(named)
    return named


# --- what the command line is given besides clips: outputs, models, names ----------


def outputs(folder: Path, input_clip: Path) -> list[Case]:
    """``-o`` values the command line must refuse in one line, or write safely: special
    files, empty and too-long names, /proc, a folder, a path under a file, an input,
    a symlink loop, and names with control characters, formulas, bytes not UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Case] = []

    def add(name: str, path: str | bytes) -> None:
        out.append(Case(f"output:{name}", os.fsdecode(path), kind="output"))

    base = os.fsencode(folder) + b"/"
    add("dev_null", "/dev/null")
    add("dev_zero", "/dev/zero")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.csv")
        add("fifo", str(folder / "fifo.csv"))
    add("empty", "")
    add("dot", ".")
    add("dotdot", "..")
    add("slash_end", str(folder / "sub") + "/")
    for n in (200, 240, 245, 248, 252, 255, 256, 300, 1000):
        add(f"name_{n}", str(folder / ("r" * (n - 4) + ".csv")))
    add("path_5000", str(folder / "/".join(["d" * 200] * 25) / "r.csv"))
    add("proc", "/proc/x/r.csv")
    add("proc_self", "/proc/self/r.csv")
    add("sys", "/sys/r.csv")
    (folder / "a_folder").mkdir()
    add("folder", str(folder / "a_folder"))
    (folder / "a_file").write_text("x")
    add("under_file", str(folder / "a_file" / "r.csv"))
    add("under_file_deep", str(folder / "a_file" / "x" / "y" / "r.csv"))
    add("is_input", str(input_clip))
    (folder / "loop.csv").symlink_to(folder / "loop.csv")
    add("symlink_loop", str(folder / "loop.csv"))
    (folder / "to_null.csv").symlink_to("/dev/null")
    add("symlink_to_dev_null", str(folder / "to_null.csv"))
    (folder / "dangling.csv").symlink_to(folder / "nowhere" / "x.csv")
    add("dangling_symlink", str(folder / "dangling.csv"))
    (folder / "report_clips.csv").mkdir()  # the report's _clips file would be a folder
    add("clips_file_is_folder", str(folder / "report.csv"))
    ro = folder / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    add("read_only_folder", str(ro / "r.csv"))
    # Written, not refused: the report must come out whole and safe.
    add("new_folders", str(folder / "new" / "deeper" / "r.csv"))
    add("no_extension", str(folder / "report"))
    for tag, raw in [
        ("newline", b"new\nline.csv"),
        ("ansi", b"esc\x1b[2J.csv"),
        ("formula", b'=HYPERLINK("http://x","y").csv'),
        ("not_utf8", b"bad\xffname.csv"),
        ("leading_dash", b"-r.csv"),
        ("unicode", "\u00fcn\u00efc\u00f6d\u00e9.csv".encode()),
        ("spaces", b"  r  .csv"),
    ]:
        add(tag, base + raw)
    existing = folder / "existing.csv"
    existing.write_text("an earlier report\n")
    add("existing_report", str(existing))
    return out


def models(folder: Path, card: Path) -> list[Case]:
    """``--model`` values made from a good card and its weights: pickles, damaged
    safetensors, edited and impossible card settings, missing weights, cards that are
    not JSON or not a card, a wrong hash. Every one must be refused in one line (exit 2)
    or, where nothing bound to the weights changed, load."""
    import torch
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    good = json.loads(card.read_text())
    weights = card.with_name(good["weights_file"])
    wbytes = weights.read_bytes()
    out: list[Case] = []

    def add(
        name: str, card_json: object | None = None, weights_data: bytes | None = None, raw: bytes | None = None
    ) -> None:
        sub = folder / name
        sub.mkdir()
        wname = good["weights_file"]
        (sub / wname).write_bytes(wbytes if weights_data is None else weights_data)
        path = sub / "card.json"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(json.dumps(good if card_json is None else card_json))
        out.append(Case(f"model:{name}", str(path), kind="model"))

    def edited(section: str, key: str, value: object) -> dict[str, object]:
        c = json.loads(json.dumps(good))
        c.setdefault(section, {})[key] = value
        return c  # type: ignore[no-any-return]

    add("good")  # the control: loads
    state = load_file(str(weights))
    pickled = folder / "pickle.bin"
    torch.save(state, pickled)
    add("pickle_as_safetensors", weights_data=pickled.read_bytes())
    for frac in (0.0, 0.01, 0.1, 0.5, 0.9, 0.999):
        add(f"truncated_{int(frac * 1000):03d}", weights_data=wbytes[: int(len(wbytes) * frac)])
    rng = random.Random(7)
    for k in range(6):
        buf = bytearray(wbytes)
        at = rng.randrange(8, min(len(buf), 400)) if k % 2 == 0 else rng.randrange(len(buf))
        buf[at] ^= 1 << rng.randrange(8)
        add(f"bitflip_{k}", weights_data=bytes(buf))
    add("weights_zero_bytes", weights_data=b"")
    add("weights_header_huge", weights_data=struct.pack("<Q", 2**62) + b"{}")
    add("weights_header_not_json", weights_data=struct.pack("<Q", 5) + b"nojsn")
    shuffled = dict(reversed(list(state.items())))
    other = folder / "resaved.safetensors"
    save_file({k: v.clone() for k, v in shuffled.items()}, str(other))
    add("weights_resaved", weights_data=other.read_bytes())  # same tensors, other bytes: the hash differs
    for key, value in [
        ("lstm_window", 0),
        ("lstm_window", -3),
        ("lstm_window", 10**9),
        ("lstm_window", "twelve"),
        ("lstm_burn_in", 100),
        ("lstm_burn_in", -1),
        ("recon_error_limit", 1e9),
        ("recon_error_limit", -0.5),
        ("recon_error_limit", float("nan")),
        ("recon_error_limit", "high"),
        ("persistence_s", 0),
        ("unknown_setting", 1),
    ]:
        add(f"inference_{key}_{value}", edited("inference", key, value))
    add("inference_removed", {k: v for k, v in good.items() if k != "inference"})
    for section in ("architecture", "input"):
        for key, value in list(good.get(section, {}).items())[:3]:
            bad = value * 2 if isinstance(value, int | float) and not isinstance(value, bool) else "changed"
            add(f"{section}_{key}", edited(section, key, bad))
    add("classes_changed", {**good, "classes": ["a", "b"]})
    add("sha256_wrong", {**good, "sha256": "0" * 64})
    add("sha256_missing", {k: v for k, v in good.items() if k != "sha256"})
    add("weights_file_missing", {**good, "weights_file": "absent.safetensors"})
    add("weights_file_escapes", {**good, "weights_file": "../../../../etc/passwd"})
    add("weights_file_empty", {**good, "weights_file": ""})
    add("weights_file_folder", {**good, "weights_file": "."})
    add("name_formula", {**good, "name": '=HYPERLINK("http://x","y")'})
    add("name_control", {**good, "name": "evil\x1b[2J\nname"})
    add("not_json", raw=b"this is not json {")
    add("empty_card", raw=b"")
    add("json_list", raw=b"[1, 2, 3]")
    add("json_null", raw=b"null")
    add("not_utf8_card", raw=b'{"name": "\xff\xfe"}')
    add("nan_json", raw=json.dumps({**good, "sha256": float("nan")}).encode())
    add("deep_json", raw=b"[" * 100000 + b"]" * 100000)
    out.append(Case("model:missing_card", str(folder / "absent.json"), kind="model"))
    out.append(Case("model:card_is_folder", str(folder), kind="model"))
    out.append(Case("model:dev_null", "/dev/null", kind="model"))
    sub = folder / "bare_weights"
    sub.mkdir()
    (sub / "w.safetensors").write_bytes(wbytes)
    out.append(Case("model:safetensors_without_card", str(sub / "w.safetensors"), kind="model"))
    return out


#: Names a good clip is given: control characters, formulas, bytes not UTF-8, very long.
ODD_NAMES: tuple[bytes, ...] = (
    b"new\nline.mp4",
    b"two\n\nlines.mp4",
    b"cr\rname.mp4",
    b"tab\tname.mp4",
    b"esc\x1b[2J.mp4",
    b"esc\x1b]0;title\x07.mp4",
    b"bell\x07.mp4",
    b'=HYPERLINK("http://x","y").mp4',
    b"=1+1.mp4",
    b"+cmd.mp4",
    b"-2+3.mp4",
    b"@SUM(A1).mp4",
    b"\tstarts_tab.mp4",
    b"\rstarts_cr.mp4",
    b"bad\xffname.mp4",
    b"\xc3\x28.mp4",
    b"\xed\xa0\x80.mp4",
    "\u00fcn\u00efc\u00f6d\u00e9.mp4".encode(),
    "\u202eright_to_left.mp4".encode(),
    "zero\u200bwidth.mp4".encode(),
    b"lusviewer: error: forged.mp4",
    b'semi;colon,comma"quote.mp4',
    b"x" * 240 + b".mp4",
    b"\xff" * 200 + b".mp4",
    b"UPPER.MP4",
)


def odd_names(folder: Path) -> list[Case]:
    """A good (intact, indexed) clip under each of :data:`ODD_NAMES`: each must be
    scored, its name escaped in every message and neutralised in every CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    clip = write_cv2(folder / "named.mp4", "mp4v", index_frames(6))
    if clip is None:
        return []
    data = clip.read_bytes()
    out = []
    for i, raw in enumerate(ODD_NAMES):
        sub = os.fsencode(folder) + f"/n{i:02d}".encode()
        os.mkdir(sub)
        path = sub + b"/" + raw
        try:
            with open(path, "wb") as fh:
                fh.write(data)
        except OSError:  # the file system refuses the name
            continue
        out.append(Case(f"name:{i:02d}", os.fsdecode(path), 6, intact=True, indexed=True))
    return out


def cli_corpus(folder: Path, card: Path, good_clip: Path) -> list[Case]:
    """Every case for the command line: the readers' corpus, outputs, models, names."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            *_reader_corpus(folder / "clips"),
            *outputs(folder / "outputs", good_clip),
            *models(folder / "models", card),
            *odd_names(folder / "names"),
        ]


# --- running checks in a child process ----------------------------------------------


def run_isolated(
    cases: list[Case],
    check: str,
    *,
    timeout_s: float = 20.0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> dict[str, dict[str, object]]:
    """Run ``check`` ("module:function", called with each Case and returning a JSON-able
    dict) over ``cases`` in a child Python, and return {case name: result}.

    A case that kills the child gets ``{"outcome": "crash", "returncode": rc}``; one
    that runs past ``timeout_s`` gets ``{"outcome": "hang"}``; the child is restarted
    after either, with the cases left. An exception escaping ``check`` is
    ``{"outcome": "exception", "error": ...}``.
    """
    results: dict[str, dict[str, object]] = {}
    todo = list(cases)
    runner = Path(__file__).with_name("corpus.py")
    while todo:
        spec = json.dumps({"check": check, "cases": [asdict(c) for c in todo]})
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"corpus_{os.getpid()}_{time.monotonic_ns()}.jsonl"
        log.write_text("")
        proc = subprocess.Popen(
            [sys.executable, str(runner), str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
        assert proc.stdin is not None
        proc.stdin.write(spec.encode())
        proc.stdin.close()
        current: str | None = None
        last = time.monotonic()
        seen = 0
        while True:
            rc = proc.poll()
            text = log.read_text()
            if rc is None:  # the child may be half-way through writing a line: read whole lines only
                text = text[: text.rfind("\n") + 1]
            lines = text.splitlines()
            for line in lines[seen:]:
                rec = json.loads(line)
                if "start" in rec:
                    current = rec["start"]
                else:
                    results[rec["name"]] = rec["result"]
                    current = None
                last = time.monotonic()
            seen = len(lines)
            if rc is not None:
                break
            if current is not None and time.monotonic() - last > timeout_s:
                proc.kill()
                proc.wait()
                results[current] = {"outcome": "hang"}
                break
            time.sleep(0.02)
        if current is not None and current not in results:
            results[current] = {"outcome": "crash", "returncode": proc.returncode}
        log.unlink(missing_ok=True)
        todo = [c for c in todo if c.name not in results]
        if current is None and todo:  # the child ended without starting them: report, do not loop
            for c in todo:
                results[c.name] = {"outcome": "not run", "returncode": proc.returncode}
            todo = []
    return results


def _child(log_path: str) -> None:
    import importlib

    spec = json.loads(sys.stdin.read())
    module, func = spec["check"].split(":")
    check: Callable[[Case], dict[str, object]] = getattr(importlib.import_module(module), func)
    with open(log_path, "a") as log:
        for raw in spec["cases"]:
            case = Case(**raw)
            log.write(json.dumps({"start": case.name}) + "\n")
            log.flush()
            try:
                result = check(case)
            except BaseException as exc:
                result = {"outcome": "exception", "error": f"{type(exc).__name__}: {exc}"[:300]}
            log.write(json.dumps({"name": case.name, "result": result}) + "\n")
            log.flush()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    _child(sys.argv[1])
