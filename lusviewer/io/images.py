"""Clips made of still images: a folder of frame images (the ICLUS-DB layout) and a
multi-page TIFF (one page per frame).

Images deeper than 8 bits (16-bit PNG or TIFF, 32-bit float TIFF) are brought to 8 bits
with one range for the whole clip, the lowest and highest stored value over all its
frames (found at open, one frame at a time), so that a stored value shows at the same
grey level in every frame: levels never jump between frames, whichever frame is read
first. A clip that mixes bit depths (an 8-bit frame among 16-bit ones) is refused.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from lusviewer.io.base import (
    DEFAULT_FPS,
    ClipError,
    ClipInfo,
    ClipReader,
    display_path,
    to_rgb,
)

_log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_EXTENSIONS = (".tif", ".tiff")


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class TiffLayout:
    """Where a TIFF's pages are: the byte order, BigTIFF or not, the offset of each page's
    image directory (IFD) whose entries lie whole in the file, and whether the chain of
    directories runs to its end inside the file (False: cut short, or a loop)."""

    order: str
    big: bool
    offsets: tuple[int, ...]
    whole: bool


def tiff_layout(fh: BinaryIO, size: int, *, limit: int | None = None) -> TiffLayout | None:
    """The layout of the TIFF open as ``fh`` (``size`` bytes), from its directories only
    (no pixel data read); None if it is not a TIFF. ``limit``: stop after that many pages."""
    fh.seek(0)
    head = fh.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        return None
    magic = struct.unpack(order + "H", head[2:4])[0]
    if magic == 42:
        big, count_fmt, count_len, entry_len, off_fmt, off_len = False, "H", 2, 12, "I", 4
        offset = struct.unpack(order + "I", head[4:8])[0]
    elif magic == 43 and len(head) >= 16:  # BigTIFF
        big, count_fmt, count_len, entry_len, off_fmt, off_len = True, "Q", 8, 20, "Q", 8
        offset = struct.unpack(order + "Q", head[8:16])[0]
    else:
        return None
    offsets: list[int] = []
    seen: set[int] = set()
    whole = True
    while offset and (limit is None or len(offsets) < limit):
        if offset in seen or offset + count_len > size:  # a loop, or a directory past the end
            whole = False
            break
        seen.add(offset)
        fh.seek(offset)
        entries = struct.unpack(order + count_fmt, fh.read(count_len))[0]
        next_at = offset + count_len + entries * entry_len
        if next_at + off_len > size:
            whole = False
            break
        offsets.append(offset)
        fh.seek(next_at)
        offset = struct.unpack(order + off_fmt, fh.read(off_len))[0]
    return TiffLayout(order, big, tuple(offsets), whole)


def tiff_pages(path: str | os.PathLike[str], *, limit: int | None = None) -> tuple[int, bool]:
    """(pages of a TIFF file whose directory lies whole in the file, whether the chain
    of directories runs to its end inside the file); (0, False) for a file that is not a
    TIFF or cannot be read. ``limit``: count no further than that."""
    try:
        with open(path, "rb") as fh:
            layout = tiff_layout(fh, os.fstat(fh.fileno()).st_size, limit=limit)
    except (OSError, ValueError, struct.error):
        return 0, False
    return (len(layout.offsets), layout.whole) if layout is not None else (0, False)


def is_multipage_tiff(path: str | os.PathLike[str]) -> bool:
    """True for a file with a TIFF extension that holds more than one page."""
    return Path(path).suffix.lower() in TIFF_EXTENSIONS and tiff_pages(path, limit=2)[0] > 1


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The frame images of a folder (not recursive), in natural order (2 before 10).
    A multi-page TIFF is not a frame image: it is a clip of its own."""
    try:
        files = [f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and _is_regular(f)]
    except OSError as exc:
        raise ClipError(folder, f"cannot be read ({exc.strerror or exc})") from None
    return sorted((f for f in files if not is_multipage_tiff(f)), key=lambda f: _natural_key(f.name))


def _bits(dtype: np.dtype) -> str:
    return f"{dtype.itemsize * 8}-bit" + (" float" if dtype.kind == "f" else "")


def _a(words: str) -> str:
    """``words`` with its article: "an 8-bit", "a 16-bit"."""
    return f"{'an' if words.startswith(('8', '11', '18')) else 'a'} {words}"


class _Levels:
    """The one 8-bit conversion of a clip: identity for 8-bit images; for deeper ones
    the clip's lowest..highest stored value to 0..255, the same for every frame."""

    def __init__(self, first: np.ndarray) -> None:
        self.dtype = first.dtype
        self.lo, self.span = 0.0, 1.0
        self._hi: float | None = None

    def widen(self, img: np.ndarray) -> None:
        """Take one more frame's range into the clip's (at open, before any frame is shown)."""
        data = img[np.isfinite(img)] if img.dtype.kind == "f" else img
        if data.size:
            lo, hi = float(data.min()), float(data.max())
            if self._hi is not None:
                lo, hi = min(self.lo, lo), max(self._hi, hi)
            self.lo, self._hi = lo, hi
            self.span = max(hi - lo, 1e-6)

    def to_8bit(self, img: np.ndarray) -> np.ndarray:
        if img.dtype == np.uint8:
            return img
        out = (np.nan_to_num(img.astype(np.float32), nan=self.lo) - self.lo) * (255.0 / self.span)
        return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


class _StillClip(ClipReader):
    """What a folder of images and a multi-page TIFF share: frame ``i`` is one still
    image, decoded on demand (nothing kept but frame 0), brought to 8-bit RGB with the
    clip's one range."""

    _path: str

    def _raw(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def _where(self, index: int) -> str:
        raise NotImplementedError

    def _open_levels(self, count: int, *, stop_at_damage: bool) -> tuple[np.ndarray, int]:
        """Frame 0, raw, and the frames that can be used; the clip's levels set (every
        frame read once if deeper than 8 bits). With ``stop_at_damage``, a frame after
        the first that does not decode ends the clip there instead of failing it."""
        first = self._raw(0)
        self._levels = _Levels(first)
        if first.dtype != np.uint8:
            self._levels.widen(first)
            for i in range(1, count):
                try:
                    raw = self._raw(i)
                except ClipError:
                    if not stop_at_damage:
                        raise
                    return first, i
                self._levels.widen(self._checked(i, raw))
        return first, count

    def _checked(self, index: int, img: np.ndarray) -> np.ndarray:
        if img.dtype != self._levels.dtype:
            raise ClipError(
                self._where(index),
                f"is {_a(_bits(img.dtype))} image but the clip's first frame is {_bits(self._levels.dtype)}: "
                "a clip's frames must share one bit depth",
            )
        return img

    def _frame(self, index: int) -> np.ndarray:
        return to_rgb(self._levels.to_8bit(self._checked(index, self._raw(index))))

    def frame(self, index: int) -> np.ndarray:
        return self._frame(self._check_index(index))


class ImageFolderReader(_StillClip):
    """A folder of frame images as one clip (the ICLUS-DB layout), in natural order."""

    def __init__(self, path: str | os.PathLike[str], *, fps: float = DEFAULT_FPS) -> None:
        self._path = str(path)
        self.files = image_files(path)
        if not self.files:
            stacks = self._stacks()
            if stacks:
                raise ClipError(
                    path,
                    f"holds no single frame images, only multi-page TIFF ({display_path(stacks[0].name)}"
                    + (f" and {len(stacks) - 1} more" if len(stacks) > 1 else "")
                    + "): each is a clip of its own; give the file",
                )
            raise ClipError(path, "is a folder with no frame images (.png, .jpg, .bmp, .tif)")
        first, _ = self._open_levels(len(self.files), stop_at_damage=False)
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

    def _stacks(self) -> list[Path]:
        try:
            return sorted(f for f in Path(self._path).iterdir() if _is_regular(f) and is_multipage_tiff(f))
        except OSError:
            return []

    def _where(self, index: int) -> str:
        return str(self.files[index])

    def _raw(self, index: int) -> np.ndarray:
        # Decoded from bytes, not cv2.imread(path): any file name works (not only UTF-8).
        try:
            data = np.fromfile(self.files[index], dtype=np.uint8)
        except OSError as exc:
            raise ClipError(self.files[index], f"cannot be read ({exc.strerror or exc})") from None
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            raise ClipError(self.files[index], "image could not be decoded")
        return img


class TiffStackReader(_StillClip):
    """A multi-page TIFF as one clip: page ``i`` is frame ``i``, read one page at a time.

    The page count is the file's chain of image directories (walked at open, no pixel
    data read); a chain that breaks off inside the file (a file cut short) makes the
    clip incomplete, read on the pages whose directories are whole. Reading in order
    stops at the first page that no longer decodes (after page 0), as for videos.

    Page ``i`` is decoded in constant time, whatever ``i``: the file is mapped
    copy-on-write, its header pointed at page ``i``'s directory (in this process's copy
    of the first memory page only) and the mapping decoded as a one-page TIFF. (OpenCV's
    ``imreadmulti(start=i)`` walks every page before ``i``: reading 2,000 pages in order
    took 250 s.) The mapping is the file's, paged in as read: memory stays flat.
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float = DEFAULT_FPS) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 (held open with the mapping until close())
        except OSError as exc:
            raise ClipError(path, f"cannot be read ({exc.strerror or exc})") from None
        try:
            size = os.fstat(self._fh.fileno()).st_size
            layout = tiff_layout(self._fh, size) if size else None
            if layout is None or not layout.offsets:
                raise ClipError(path, "not a readable TIFF (no image directory)")
            self._layout = layout
            self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_COPY)
            self._buf: np.ndarray | None = np.frombuffer(self._map, dtype=np.uint8)
            pages = len(layout.offsets)
            first, usable = self._open_levels(pages, stop_at_damage=True)
        except BaseException:
            self.close()
            raise
        whole = layout.whole and usable == pages
        self.info = ClipInfo(
            path=self._path,
            frame_count=usable,
            fps=fps,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            format="tiff",
            complete=whole,
            header_frame_count=None,
        )
        if not whole:
            _log.warning(
                "%s: the clip is incomplete (%d pages read, the TIFF breaks off after them; file cut short or damaged)",
                display_path(self._path),
                usable,
            )

    def _where(self, index: int) -> str:
        return self._path

    def _raw(self, index: int) -> np.ndarray:
        layout = self._layout
        head = (8, "Q") if layout.big else (4, "I")
        with self._lock:
            if self._buf is None:
                raise ClipError(self._path, "the clip is closed")
            self._map[head[0] : head[0] + struct.calcsize(head[1])] = struct.pack(
                layout.order + head[1], layout.offsets[index]
            )
            try:
                img = cv2.imdecode(self._buf, cv2.IMREAD_UNCHANGED)
            except cv2.error:
                img = None
        if img is None or not img.size:
            raise ClipError(self._path, f"page {index} of the TIFF could not be decoded (truncated or corrupt?)")
        return np.asarray(img)

    def close(self) -> None:
        self._buf = None  # the array's view must go before the mapping can close
        m = getattr(self, "_map", None)
        if m is not None:
            m.close()
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        for i in range(max(0, start), stop):
            try:
                frame = self._frame(i)
            except ClipError as exc:
                if i == 0 or "bit depth" in exc.reason:
                    raise
                self.info = replace(self.info, frame_count=i, complete=False)
                _log.warning("%s: page %d and after do not decode; the clip is incomplete (%d frames read)",
                             display_path(self._path), i, i)  # fmt: skip
                return
            yield frame
