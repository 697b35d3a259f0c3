"""Clip readers: random access and streaming over video containers and DICOM.

Frames come out as RGB ``uint8`` arrays of shape (H, W, 3). Nothing here holds
more than one decoded frame (plus OpenCV's own decoder state), so memory does not
grow with clip length.
"""

from __future__ import annotations

import errno
import logging
import math
import mmap
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mpeg", ".mpg", ".gif", ".m4v", ".mkv", ".wmv")
DICOM_EXTENSIONS = (".dcm", ".dicom")
SUPPORTED_EXTENSIONS = VIDEO_EXTENSIONS + DICOM_EXTENSIONS

#: Forward distance (frames) up to which decoding onwards beats a container seek.
_SEEK_THRESHOLD = 48

#: Frame rate used where a header gives none or an absurd one (outside ``FPS_RANGE``).
DEFAULT_FPS = 25.0
#: Frame rates (frames/s) taken as plausible from a header; anything else is replaced by DEFAULT_FPS.
FPS_RANGE = (0.1, 1000.0)
#: The most pixels one frame may have (16384 x 16384): a header claiming more is corrupt.
MAX_FRAME_PIXELS = 1 << 28

_log = logging.getLogger(__name__)


def sane_fps(fps: float) -> bool:
    """True if ``fps`` is a finite frame rate inside :data:`FPS_RANGE`."""
    return math.isfinite(fps) and FPS_RANGE[0] <= fps <= FPS_RANGE[1]


def quoted(value: object, limit: int = 60) -> str:
    """``value`` for a message: quoted and escaped like ``ascii()`` (control characters,
    bytes that are not text and anything beyond ASCII become escapes), and cut to about
    ``limit`` characters, so raw header bytes never reach a terminal or a CSV."""
    short = bytes(value[: limit + 1]) if isinstance(value, bytes | bytearray) else str(value)[: limit + 1]
    text = ascii(short)
    if len(text) > limit + 2:
        text = text[:limit] + "..."
    return text


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as one printable line: non-UTF-8 bytes, control characters (newlines,
    ANSI escapes) and other unprintables are backslash-escaped; plain names unchanged."""
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that is not UTF-8 (surrogate escape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


class ClipError(Exception):
    """A clip could not be opened or read. ``str()`` names the file and the reason.

    ``path`` is the path as given (possibly not printable); ``str()`` shows it with
    :func:`display_path`, so a message is always one printable line.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
        self.reason = reason
        super().__init__(f"{display_path(self.path)}: {reason}")


@dataclass(frozen=True)
class ClipInfo:
    """What is known about an open clip.

    ``frame_count`` is always the number of frames that can be read (frames that
    exist), never a header's claim; ``fps`` is always finite and inside
    :data:`FPS_RANGE` (:data:`DEFAULT_FPS` where the header gives none or an absurd
    value, with a warning logged).

    ``complete`` is False when the clip holds fewer frames than its header says
    (``header_frame_count`` > ``frame_count``: a file cut short), when its data stops
    decoding before the end (a video whose frames stop decoding while being read in
    order: ``frame_count`` then drops to the frames read), or when a container with
    an end marker lacks it (a GIF without its trailer, an MPEG program stream without
    its end code). Readers log a warning (logger ``lusviewer.io``) when they find a
    clip incomplete. ``header_frame_count`` is the frame count the header states, or
    None where the format has none that can be trusted (image folders, MPEG/GIF/MKV
    streams whose count is an estimate).
    """

    path: str
    frame_count: int
    fps: float
    width: int
    height: int
    format: str  # "video/<fourcc>", "dicom" or "images"
    complete: bool = True
    header_frame_count: int | None = None

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


class ClipReader:
    """Base class: frame access by index and in order."""

    info: ClipInfo

    def __len__(self) -> int:
        return self.info.frame_count

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (H, W, 3). Raises ``IndexError`` or ``ClipError``."""
        raise NotImplementedError

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start`` .. ``stop - 1`` in order, one at a time."""
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        for i in range(max(0, start), stop):
            yield self.frame(i)

    def close(self) -> None:
        pass

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_index(self, index: int) -> int:
        if index < 0:
            index += self.info.frame_count
        if not 0 <= index < self.info.frame_count:
            raise IndexError(f"frame {index} out of range 0..{self.info.frame_count - 1}")
        return index


def _utf8_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a str OpenCV can take: a file name that is not valid UTF-8 (a
    surrogate-escaped str in Python) crashes OpenCV's path conversion, so refuse it."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeError:
        raise ClipError(path, "the file name is not valid UTF-8 (rename the file)") from None
    return str(path)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB))
    if frame.shape[2] == 4:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB))
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


#: Containers whose frame seeks OpenCV gets right (an index of every frame); each seek
#: is still checked against the decoder's timestamp and, at open, by content.
_SEEKABLE = ("isom", "avi", "matroska")
#: Containers whose header frame count is trusted: an index (MP4/MOV, AVI) or the
#: duration of a Matroska file (an estimate: a variable-frame-rate MKV may be called
#: incomplete when it is not).
_COUNTED = ("isom", "avi", "matroska")
#: Streams with a fixed frame rate: a timestamp gap while counting means frames lost.
_CFR_STREAMS = ("mpeg-ps", "mpeg-ts", "mpeg-es")


def sniff_container(head: bytes) -> str:
    """The container format from a file's first bytes (not its name)."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "isom"  # MP4 / MOV / M4V
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg-ps"
    if head[:4] == b"\x00\x00\x01\xb3":
        return "mpeg-es"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:1] == b"\x47" and head[188:189] == b"\x47":
        return "mpeg-ts"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "other"


def _read_vint(data: bytes, at: int, *, marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``at``: (value, length). With ``marker`` False
    the length marker bit stays in (element IDs); an all-ones size is -1 (unknown)."""
    first = data[at]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or at + length > len(data):
        raise ValueError("bad EBML number")
    value = int.from_bytes(data[at : at + length], "big")
    if not marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


def _matroska_cut(head: bytes, size: int) -> bool:
    """True if the Segment says it is longer than the file (a Matroska file cut short)."""
    try:
        _, n = _read_vint(head, 0, marker=False)
        ebml_size, m = _read_vint(head, n, marker=True)
        at = n + m + ebml_size
        seg_id, n = _read_vint(head, at, marker=False)
        if seg_id != 0x18538067:
            return False
        seg_size, m = _read_vint(head, at + n, marker=True)
    except (ValueError, IndexError):
        return False
    return seg_size >= 0 and at + n + m + seg_size > size


def gif_image_count(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """(image descriptors whose data is whole, whether the block structure runs to its
    trailer). Walks the block headers only; pixel data is skipped, not decoded."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < 13:
            return 0, False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:  # paged in, not loaded
            return _gif_walk(data)


def _gif_walk(data: mmap.mmap) -> tuple[int, bool]:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return 0, False
    at = 13
    if data[10] & 0x80:  # global colour table
        at += 3 << ((data[10] & 7) + 1)
    images = 0

    def skip_sub_blocks(p: int) -> int:
        while p < len(data):
            n = data[p]
            p += 1 + n
            if n == 0:
                return p
        return -1

    while at < len(data):
        kind = data[at]
        if kind == 0x3B:
            return images, True
        if kind == 0x21 and at + 2 <= len(data):
            at = skip_sub_blocks(at + 2)
        elif kind == 0x2C and at + 10 <= len(data):
            flags = data[at + 9]
            at += 10
            if flags & 0x80:  # local colour table
                at += 3 << ((flags & 7) + 1)
            at = skip_sub_blocks(at + 1)  # after the LZW minimum code size
            if at < 0:
                return images, False
            images += 1
            continue
        else:
            return images, False
        if at < 0:
            return images, False
    return images, False


def mpeg_picture_count(path: str | os.PathLike[str]) -> int | None:
    """The coded pictures in an MPEG-1/2 program stream: its video packets' payload
    demultiplexed (pack and PES headers walked, other streams skipped) and its picture
    start codes counted. None where the packet structure is not followed to the end
    (damage, or not a program stream). Memory stays flat (the file is mapped, not read)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < 16:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _mpeg_walk(data)


def _mpeg_walk(data: mmap.mmap) -> int | None:
    size = len(data)
    pictures = 0
    carry = b""
    p = 0
    while p + 4 <= size:
        if data[p : p + 3] != b"\x00\x00\x01":
            return None
        code = data[p + 3]
        if code == 0xB9:  # program end
            break
        if code == 0xBA:  # pack header
            if p + 5 > size:
                break
            if data[p + 4] & 0xC0 == 0x40:  # MPEG-2: 14 bytes and stuffing
                if p + 14 > size:
                    break
                p += 14 + (data[p + 13] & 7)
            elif data[p + 4] & 0xF0 == 0x20:  # MPEG-1: 12 bytes
                p += 12
            else:
                return None
            continue
        if code < 0xBB or p + 6 > size:
            return None if code < 0xBB else pictures
        end = p + 6 + int.from_bytes(data[p + 4 : p + 6], "big")
        if 0xE0 <= code <= 0xEF:  # video: skip the PES header, scan the payload
            q = p + 6
            if q < size and data[q] & 0xC0 == 0x80:  # MPEG-2 PES header
                q += 3 + (data[q + 2] if q + 2 < size else 0)
            else:  # MPEG-1: stuffing, STD buffer, time stamps
                while q < size and data[q] == 0xFF:
                    q += 1
                if q < size and data[q] & 0xC0 == 0x40:
                    q += 2
                if q < size:
                    q += {0x20: 5, 0x30: 10}.get(data[q] & 0xF0, 1)
            payload = carry + data[q : min(end, size)]
            pictures += payload.count(b"\x00\x00\x01\x00")
            carry = payload[-3:]
        p = end
    return pictures


def _cut_short(path: str, container: str) -> bool:
    """True if a container without an exact frame count was visibly cut: a Matroska
    Segment longer than the file, or an MPEG program stream whose last packet runs
    past the end of the file (its length field says more bytes than are left). A
    program stream cut exactly between packets is a valid shorter stream and cannot
    be told apart. (GIF: see :func:`gif_image_count`.)"""
    if container not in ("mpeg-ps", "matroska"):
        return False
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if container == "matroska":
                return _matroska_cut(fh.read(4096), size)
            fh.seek(max(0, size - 65536))
            tail = fh.read()
    except OSError:
        return False
    at = len(tail)
    while True:  # the last PES packet (stream ids 0xBB..0xEF) in the tail
        at = tail.rfind(b"\x00\x00\x01", 0, at)
        if at < 0:
            return False
        code = tail[at + 3 : at + 4]
        if code == b"\xba":  # a pack header: its packets follow; none left means cut
            return at + 14 > len(tail)
        if code and 0xBB <= code[0] <= 0xEF:
            if at + 6 > len(tail):
                return True
            length = int.from_bytes(tail[at + 4 : at + 6], "big")
            return at + 6 + length > len(tail)


class VideoClipReader(ClipReader):
    """OpenCV (FFmpeg) reader with frame-accurate random access.

    Reading in order decodes once per frame. A jump forward of up to
    ``_SEEK_THRESHOLD`` frames decodes onwards (``grab``) instead of seeking. A longer
    or backward jump seeks the container (``CAP_PROP_POS_FRAMES``) only where seeking
    has proved exact: containers with a frame index (MP4/MOV, AVI, MKV), checked at
    open by content (the frame a seek back to 0 reaches must equal frame 0 read in
    order) and on every seek by the decoder's timestamp (the frame reached must carry
    frame ``i``'s time). Elsewhere (MPEG program/transport streams, GIF, APNG), or once
    a check fails, it reopens the file and decodes onwards, so frame ``i`` by index
    always equals frame ``i`` in order. OpenCV's position property is never trusted:
    on MPEG-1/2 it reports the frame asked for while returning a later one.

    The frame count is the frames that decode: the header's count is checked by
    reading the last frame, and where that fails (or the container has no exact
    count) the frames are counted by decoding them once (grab only, no frame kept).
    See :class:`ClipInfo` for ``complete``. Reading in order stops at the first frame
    that no longer decodes (after frame 0): ``info`` then says ``complete=False`` and
    ``frame_count`` the frames read, and a warning is logged.
    """

    def __init__(self, path: str | os.PathLike[str], *, container: str = "other") -> None:
        self._path = _utf8_path(path)
        self._container = container
        self._seek_exact = container in _SEEKABLE
        self._cap = self._capture()
        self._next = 0  # index of the frame the next read() returns
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise ClipError(path, "no frame could be decoded (empty, truncated or corrupt video)")
        self._next = 1
        self._first = first
        self._last: tuple[int, np.ndarray] | None = (0, first)
        self._t0 = self._msec()
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not sane_fps(fps):
            if fps:
                _log.warning("%s: the frame rate in the header (%r) is not plausible; using %g fps",
                             display_path(self._path), fps, DEFAULT_FPS)  # fmt: skip
            fps = DEFAULT_FPS
        self._frame_ms = 1000.0 / fps
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> (8 * k)) & 0xFF) for k in range(4)).strip("\x00 ")
        raw_count = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        count = int(raw_count) if math.isfinite(raw_count) and 0 < raw_count < 2**31 else 0
        header = count if container in _COUNTED and count > 0 else None
        gif_whole = True
        if container == "gif":  # the images in the file, counted from its block structure
            images, gif_whole = gif_image_count(self._path)
            header = images or None
        elif container == "mpeg-ps":  # the coded pictures in the file
            header = mpeg_picture_count(self._path) or None
        self._gaps = False  # timestamps show frames missing (MPEG streams)
        self.info = ClipInfo(
            path=self._path,
            frame_count=max(1, count),
            fps=fps,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            format=f"video/{codec if codec.isprintable() and codec else 'unknown'}",
            header_frame_count=header,
        )
        try:
            n = self._count_frames(count)
        except BaseException:
            self._cap.release()
            raise
        complete = (
            (header is None or n >= header) and gif_whole and not self._gaps and not _cut_short(self._path, container)
        )
        self.info = replace(self.info, frame_count=n, complete=complete)
        if not complete:
            said = f"the header says {header} frames, " if header is not None and header > n else ""
            _log.warning("%s: the clip is incomplete (%s%d frames decode; file cut short or damaged)",
                         display_path(self._path), said, n)  # fmt: skip

    def _capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self._path, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise ClipError(self._path, "not a readable video (the decoder could not open it)")
        return cap

    def _msec(self) -> float | None:
        ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        return ms if math.isfinite(ms) else None

    def _count_frames(self, count: int) -> int:
        """The number of frames that decode (see the class docstring)."""
        if self._seek_exact and count > 1:
            try:
                self._read_at(count - 1)  # the timestamp check makes sure it is frame count-1
                extra = 0  # frames after it: a header that undercounts
                while self._cap.grab():
                    extra += 1
                self._next = count + extra
                if not self._seek_exact:  # the seek missed, frame count-1 was decoded in order: exact
                    return count + extra
                if self._seek_back_matches():
                    return count + extra
            except ClipError:
                # Frame count-1 does not decode (a file cut short): that says nothing
                # against seeking, which stays on (every seek is checked anyway).
                self._seek_exact = True
        elif count <= 1 and not self._cap.grab():  # one frame read already; is there another?
            self._rewind()
            return 1
        # Count by decoding from a fresh capture (grab only): exact, costs one pass.
        self._rewind()
        n = 0
        stamps = self._container in _CFR_STREAMS
        prev_ms = None
        while self._cap.grab():
            n += 1
            if stamps:
                ms = self._msec()
                if ms is not None and prev_ms is not None and ms - prev_ms > 1.5 * self._frame_ms:
                    self._gaps = True  # a frame between these two did not decode
                prev_ms = ms if ms is not None else prev_ms
        if n == 0:
            raise ClipError(self._path, "no frame could be decoded (truncated or corrupt video)")
        self._rewind()
        if self._seek_exact:  # a seek back from frame 1 must reach frame 0
            ok, frame = self._cap.read()
            self._next = 1
            if not ok or frame is None:
                raise ClipError(self._path, "frame 0 could not be decoded again")
            self._seek_back_matches()
        return n

    def _seek_back_matches(self) -> bool:
        """Seek back to frame 0 and compare with frame 0 read in order (content check).
        On a mismatch seeking is given up for this clip (sequential decoding instead)."""
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0.0)
        ok, frame = self._cap.read()
        if ok and frame is not None and frame.shape == self._first.shape and np.array_equal(frame, self._first):
            self._next, self._last = 1, (0, frame)
            return True
        _log.debug("%s: seeking lands on the wrong frame; decoding in order instead", display_path(self._path))
        self._seek_exact = False
        return False

    def _rewind(self) -> None:
        """Back to frame 0 by reopening the file: exact where seeking is not."""
        self._cap.release()
        self._last = None
        self._cap = self._capture()
        self._next = 0

    def _read_at(self, index: int) -> np.ndarray:
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        seeked = False
        if not (0 <= index - self._next <= _SEEK_THRESHOLD):
            if self._seek_exact:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, float(index))
                self._next = index
                seeked = True
            elif index < self._next:
                self._rewind()
        while self._next < index:
            if not self._cap.grab():
                raise ClipError(self._path, f"frame {index} could not be decoded (truncated?)")
            self._next += 1
        ok, frame = self._cap.read()
        if seeked and not (ok and frame is not None and self._at_time(index)):
            # The seek landed elsewhere (or its frame did not decode): from now on
            # decode in order from a fresh capture, which is exact.
            _log.debug("%s: seek to frame %d missed; decoding in order instead", display_path(self._path), index)
            self._seek_exact = False
            self._rewind()
            return self._read_at(index)
        if not ok or frame is None:
            raise ClipError(self._path, f"frame {index} could not be decoded (truncated?)")
        self._next = index + 1
        self._last = (index, frame)
        return frame

    def _at_time(self, index: int) -> bool:
        """True if the frame just decoded carries frame ``index``'s timestamp."""
        ms = self._msec()
        if ms is None or self._t0 is None:
            return False
        return abs(ms - self._t0 - index * self._frame_ms) < 0.5 * self._frame_ms

    def frame(self, index: int) -> np.ndarray:
        return _to_rgb(self._read_at(self._check_index(index)))

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        for i in range(max(0, start), stop):
            try:
                frame = self._read_at(i)
            except ClipError:
                if i == 0:
                    raise
                self.info = replace(self.info, frame_count=i, complete=False)
                _log.warning("%s: frame %d and after do not decode; the clip is incomplete (%d frames read)",
                             display_path(self._path), i, i)  # fmt: skip
                return
            yield _to_rgb(frame)

    def close(self) -> None:
        self._cap.release()
        self._last = None


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a folder (not recursive), in natural order (2 before 10)."""
    try:
        files = [f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and _is_regular(f)]
    except OSError as exc:
        raise ClipError(folder, f"cannot be read ({exc.strerror or exc})") from None
    return sorted(files, key=lambda f: _natural_key(f.name))


class ImageFolderReader(ClipReader):
    """A folder of frame images as one clip (the ICLUS-DB layout), in natural order."""

    def __init__(self, path: str | os.PathLike[str], *, fps: float = 25.0) -> None:
        self._path = str(path)
        self.files = image_files(path)
        if not self.files:
            raise ClipError(path, "is a folder with no frame images (.png, .jpg, .bmp, .tif)")
        first = self._read(0)
        self.info = ClipInfo(
            path=self._path,
            frame_count=len(self.files),
            fps=fps,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            format="images",
            complete=True,
            header_frame_count=None,
        )

    def _read(self, index: int) -> np.ndarray:
        # Decoded from bytes, not cv2.imread(path): any file name works (not only UTF-8).
        try:
            data = np.fromfile(self.files[index], dtype=np.uint8)
        except OSError as exc:
            raise ClipError(self.files[index], f"cannot be read ({exc.strerror or exc})") from None
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            raise ClipError(self.files[index], "image could not be decoded")
        if img.dtype != np.uint8:
            lo, hi = float(img.min()), float(img.max())
            img = ((img.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6))).astype(np.uint8)
        return _to_rgb(img)

    def frame(self, index: int) -> np.ndarray:
        return self._read(self._check_index(index))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _stat_input(path: str | os.PathLike[str]) -> os.stat_result:
    """``os.stat`` of an input, or a :class:`ClipError` that says why it cannot be used."""
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ClipError(path, "cannot be resolved (symbolic link loop)") from None
        if os.path.islink(path):
            raise ClipError(path, "is a broken symbolic link (its target does not exist)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ClipError(path, "file not found") from None
        raise ClipError(path, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. an embedded NUL character
        raise ClipError(path, f"is not a valid path ({exc})") from None


def open_clip(path: str | os.PathLike[str]) -> ClipReader:
    """Open a clip for reading; raises :class:`ClipError` with a readable reason.

    Only a regular file or a folder (of frame images) is opened: a FIFO, device or
    socket is refused before anything reads from it (reading a FIFO blocks forever).
    The container is recognised from the file's first bytes: DICOM (``DICM`` at 128
    or a DICOM extension), uncompressed AVI (read by :mod:`lusviewer.io.avi`, never by
    OpenCV, which crashes on it), else OpenCV. An AVI whose codec OpenCV is not known
    to handle safely is first decoded in a child process (:mod:`lusviewer.io.probe`),
    so a decoder crash becomes a ClipError instead of ending this process.
    """
    st = _stat_input(path)
    p = Path(path)
    if stat.S_ISDIR(st.st_mode):
        if p.suffix.lower() in SUPPORTED_EXTENSIONS and not image_files(p):
            raise ClipError(path, f"is a folder, not a {p.suffix.lower()[1:]} file (and holds no frame images)")
        return ImageFolderReader(p)
    if not stat.S_ISREG(st.st_mode):
        raise ClipError(path, f"is {_kind(st.st_mode)}, not a clip file; not opened")
    try:
        with open(p, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise ClipError(path, f"cannot be read ({exc.strerror or exc})") from None
    if st.st_size == 0 or not head:
        raise ClipError(path, "file is empty")
    if p.suffix.lower() in DICOM_EXTENSIONS or head[128:132] == b"DICM":  # see is_dicom_file
        from lusviewer.io.dicom import DicomClipReader

        return DicomClipReader(p)
    container = sniff_container(head)
    if container == "avi":
        from lusviewer.io.avi import KNOWN_CODECS, RawAviReader, read_avi_header

        header = read_avi_header(p)
        if header is not None and header.raw:
            return RawAviReader(p, header)
        if header is None or header.compression.upper() not in KNOWN_CODECS:
            from lusviewer.io.probe import check_decoder_survives

            check_decoder_survives(_utf8_path(path), st)
    return VideoClipReader(p, container=container)


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True if a regular file has the DICOM preamble ("DICM" at byte 128)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except (OSError, ValueError):
        return False


def find_clips(path: str | os.PathLike[str], on_error: Callable[[ClipError], None] | None = None) -> list[str]:
    """A clip path as given, or the clips in a folder (recursively, sorted): files with a
    supported extension, extension-less files with the DICOM preamble (as PACS exports
    name them, e.g. ``IM00001``; DICOMDIR index files are skipped), and folders of
    frame images (the ICLUS-DB layout: one folder per clip), each as one clip.

    A path that is not a folder is returned as given (:func:`open_clip` then says
    what is wrong with it). Nothing found in a folder is reported silently: each
    problem met while searching (a subfolder that cannot be read, a broken symbolic
    link or link loop, a FIFO/device with a clip's name) is passed to
    ``on_error(ClipError)`` (one call per problem; the search goes on), or, without
    ``on_error``, logged as a warning on logger ``lusviewer.io``. Symbolic links to
    folders are not followed (no loops); hidden files are skipped.
    """

    def report(where: str | os.PathLike[str], reason: str) -> None:
        err = ClipError(where, reason)
        if on_error is not None:
            on_error(err)
        else:
            _log.warning("%s", err)

    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            return [str(path)]
    except (OSError, ValueError):
        return [str(path)]
    found: list[str] = []
    frame_dirs: set[str] = set()
    stack = [Path(path)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            report(folder, f"folder cannot be read ({exc.strerror or exc}); clips in it are skipped")
            continue
        for e in entries:
            f = folder / e.name
            suffix = f.suffix.lower()
            try:
                is_link = e.is_symlink()
                if e.is_dir(follow_symlinks=False):
                    stack.append(f)
                    continue
                if e.name.startswith("."):
                    continue
                mode = e.stat().st_mode
            except OSError as exc:
                if is_link and exc.errno == errno.ELOOP:
                    report(f, "cannot be resolved (symbolic link loop); skipped")
                elif is_link and exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    if suffix in SUPPORTED_EXTENSIONS:
                        report(f, "is a broken symbolic link (its target does not exist); skipped")
                else:
                    report(f, f"cannot be read ({exc.strerror or exc}); skipped")
                continue
            if stat.S_ISDIR(mode):  # a symbolic link to a folder: not followed
                continue
            if not stat.S_ISREG(mode):
                if suffix in SUPPORTED_EXTENSIONS:
                    report(f, f"is {_kind(mode)}, not a clip file; skipped")
                continue
            if e.name.upper() == "DICOMDIR":
                continue
            if suffix in SUPPORTED_EXTENSIONS or (not suffix and is_dicom_file(f)):
                found.append(str(f))
            elif suffix in IMAGE_EXTENSIONS:
                frame_dirs.add(str(folder))
    return sorted(found + sorted(frame_dirs))
