"""The clip readers' common ground: ClipInfo, ClipReader, ClipError, limits and how
names and header values are shown in messages."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mpeg", ".mpg", ".gif", ".m4v", ".mkv", ".wmv")
DICOM_EXTENSIONS = (".dcm", ".dicom")
SUPPORTED_EXTENSIONS = VIDEO_EXTENSIONS + DICOM_EXTENSIONS

#: Forward distance (frames) up to which decoding onwards beats a container seek.
SEEK_THRESHOLD = 48

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


def utf8_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a str OpenCV can take: a file name that is not valid UTF-8 (a
    surrogate-escaped str in Python) crashes OpenCV's path conversion, so refuse it."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeError:
        raise ClipError(path, "the file name is not valid UTF-8 (rename the file)") from None
    return str(path)


def to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB))
    if frame.shape[2] == 4:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB))
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
