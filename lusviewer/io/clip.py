"""Clip readers: random access and streaming over video containers and DICOM.

Frames come out as RGB ``uint8`` arrays of shape (H, W, 3). Nothing here holds
more than one decoded frame (plus OpenCV's own decoder state), so memory does not
grow with clip length.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mpeg", ".mpg", ".gif", ".m4v", ".mkv", ".wmv")
DICOM_EXTENSIONS = (".dcm", ".dicom")
SUPPORTED_EXTENSIONS = VIDEO_EXTENSIONS + DICOM_EXTENSIONS

#: Forward distance (frames) up to which decoding onwards beats a container seek.
_SEEK_THRESHOLD = 48


class ClipError(Exception):
    """A clip could not be opened or read. ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ClipInfo:
    path: str
    frame_count: int
    fps: float
    width: int
    height: int
    format: str  # "video/<fourcc>" or "dicom"

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


class VideoClipReader(ClipReader):
    """OpenCV (FFmpeg) reader with frame-accurate random access.

    Reading in order decodes once per frame. A jump forward of up to
    ``_SEEK_THRESHOLD`` frames decodes onwards (``grab``) instead of seeking; a
    longer or backward jump seeks the container with ``CAP_PROP_POS_FRAMES`` and,
    where the backend lands elsewhere (some inter-frame codecs) or the container has
    no frame count (APNG), reopens the file and decodes onwards, so frame ``i`` by
    index always equals frame ``i`` in order.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = _utf8_path(path)
        cap = cv2.VideoCapture(self._path, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise ClipError(path, "not a readable video (the decoder could not open it)")
        self._cap = cap
        self._next = 0  # index of the frame the next read() returns
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise ClipError(path, "no frame could be decoded (empty, truncated or corrupt video)")
        self._next = 1
        self._last: tuple[int, np.ndarray] | None = (0, first)
        self._seek_exact = True
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 25.0
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> (8 * k)) & 0xFF) for k in range(4)).strip("\x00 ")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.info = ClipInfo(
            path=self._path,
            frame_count=max(1, count),
            fps=fps,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            format=f"video/{codec or 'unknown'}",
        )
        self._verify_count(count)

    def _verify_count(self, count: int) -> None:
        """Containers can over- or under-state their frame count: check the tail."""
        if count > 1:
            try:
                self._read_at(count - 1)
                # One more decodable frame means the header undercounts.
                if not self._cap.grab():
                    return
            except ClipError:
                pass
        elif not self._cap.grab():  # one frame read already; is there another?
            return
        # Count by decoding from a fresh capture (grab only): exact, costs one pass.
        self._rewind()
        n = 0
        while self._cap.grab():
            n += 1
        if n == 0:
            raise ClipError(self._path, "no frame could be decoded (truncated or corrupt video)")
        self.info = ClipInfo(**{**self.info.__dict__, "frame_count": n})
        # Start over for reading: a capture at its end may not seek back (APNG), and a
        # container with no frame count (APNG, some streams) may land anywhere when it
        # seeks, so there decode onwards from a fresh capture instead.
        self._rewind()
        if count <= 0:
            self._seek_exact = False

    def _rewind(self) -> None:
        """Back to frame 0 by reopening the file: exact where seeking is not."""
        self._cap.release()
        self._cap = cv2.VideoCapture(self._path, cv2.CAP_FFMPEG)
        self._next = 0

    def _seek_to(self, index: int) -> None:
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, float(index))
        self._next = index

    def _read_at(self, index: int) -> np.ndarray:
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if not (0 <= index - self._next <= _SEEK_THRESHOLD):
            if self._seek_exact:
                self._seek_to(index)
                if int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) != index:
                    self._seek_exact = False
                    self._rewind()
            elif index < self._next:
                self._rewind()
        while self._next < index:
            if not self._cap.grab():
                raise ClipError(self._path, f"frame {index} could not be decoded (truncated?)")
            self._next += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise ClipError(self._path, f"frame {index} could not be decoded (truncated?)")
        self._next = index + 1
        self._last = (index, frame)
        return frame

    def frame(self, index: int) -> np.ndarray:
        return _to_rgb(self._read_at(self._check_index(index)))

    def close(self) -> None:
        self._cap.release()
        self._last = None


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a folder (not recursive), in natural order (2 before 10)."""
    try:
        files = [f for f in Path(folder).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
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


def open_clip(path: str | os.PathLike[str]) -> ClipReader:
    """Open a clip for reading; raises :class:`ClipError` with a readable reason."""
    p = Path(path)
    try:
        p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ClipError(path, "cannot be resolved (symbolic link loop)") from None
        if p.is_symlink():
            raise ClipError(path, "is a broken symbolic link (its target does not exist)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ClipError(path, "file not found") from None
        raise ClipError(path, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. an embedded NUL character
        raise ClipError(path, f"is not a valid path ({exc})") from None
    if p.is_dir():
        return ImageFolderReader(p)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ClipError(path, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise ClipError(path, "file is empty")
    if p.suffix.lower() in DICOM_EXTENSIONS or head[128:132] == b"DICM":  # see is_dicom_file
        from lusviewer.io.dicom import DicomClipReader

        return DicomClipReader(p)
    return VideoClipReader(p)


def is_dicom_file(path: Path) -> bool:
    """True if the file has the DICOM preamble ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def find_clips(path: str | os.PathLike[str]) -> list[str]:
    """A clip path as given, or the clips in a folder (recursively, sorted): files with a
    supported extension, extension-less files with the DICOM preamble (as PACS exports
    name them, e.g. ``IM00001``; DICOMDIR index files are skipped), and folders of
    frame images (the ICLUS-DB layout: one folder per clip), each as one clip."""
    p = Path(path)
    if not p.is_dir():
        return [str(path)]
    found = []
    frame_dirs = set()
    for f in sorted(p.rglob("*")):
        if not f.is_file() or f.name.startswith(".") or f.name.upper() == "DICOMDIR":
            continue
        suffix = f.suffix.lower()
        if suffix in SUPPORTED_EXTENSIONS or (not suffix and is_dicom_file(f)):
            found.append(str(f))
        elif suffix in IMAGE_EXTENSIONS:
            frame_dirs.add(str(f.parent))
    return sorted(found + sorted(frame_dirs))
