"""The OpenCV (FFmpeg) video reader with frame-accurate random access."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import replace

import cv2
import numpy as np

from lusviewer import wording
from lusviewer.io.base import (
    DEFAULT_FPS,
    SEEK_THRESHOLD,
    ClipError,
    ClipInfo,
    ClipReader,
    display_path,
    sane_fps,
    to_rgb,
    utf8_path,
)
from lusviewer.io.containers import CFR_STREAMS, COUNTED, SEEKABLE, cut_short, gif_image_count, mpeg_picture_count

_log = logging.getLogger(__name__)


class VideoClipReader(ClipReader):
    """OpenCV (FFmpeg) reader with frame-accurate random access.

    Reading in order decodes once per frame. A jump forward of up to
    ``SEEK_THRESHOLD`` frames decodes onwards (``grab``) instead of seeking. A longer
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
        self._path = utf8_path(path)
        self._container = container
        self._seek_exact = container in SEEKABLE
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
        header = count if container in COUNTED and count > 0 else None
        gif_whole = True
        if container == "gif":  # the images in the file, counted from its block structure
            images, gif_whole = gif_image_count(self._path)
            header = images or None
        elif container == "mpeg-ps":  # the coded pictures in the file
            header = mpeg_picture_count(self._path) or None
        self._gaps = False  # timestamps show frames missing (MPEG streams)
        self._gap_at: int | None = None  # the first frame decoded after frames went missing: the clip ends before it
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
            (header is None or n >= header) and gif_whole and not self._gaps and not cut_short(self._path, container)
        )
        if self._gap_at is not None:  # frames after a gap would be read as the frames missing: not read
            _log.warning("%s: the clip is incomplete (frames missing after frame %d, damaged or cut data); only the "
                         "%s before the gap are read", display_path(self._path), self._gap_at - 1,
                         wording.count(self._gap_at, "frame"))  # fmt: skip
            self.info = replace(self.info, frame_count=self._gap_at, complete=False)
            return
        self.info = replace(self.info, frame_count=n, complete=complete)
        if not complete:
            said = f"the header says {wording.count(header, 'frame')}, " if header is not None and header > n else ""
            _log.warning("%s: the clip is incomplete (%s%s decoded; file cut short or damaged)",
                         display_path(self._path), said, wording.count(n, "frame"))  # fmt: skip

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
        stamps = self._container in CFR_STREAMS
        prev_ms = first_ms = None
        while self._cap.grab():
            n += 1
            if stamps:
                ms = self._msec()
                if (
                    ms is not None
                    and prev_ms is not None
                    and first_ms is not None
                    and self._lost(ms, prev_ms, first_ms, n)
                ):
                    self._gaps = True  # a frame between these two did not decode
                    if self._gap_at is None:  # frame n-1 decoded is a later frame: it and all after are misnumbered
                        self._gap_at = n - 1
                prev_ms = ms if ms is not None else prev_ms
                first_ms = prev_ms if first_ms is None else first_ms
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

    def _lost(self, ms: float, prev_ms: float, first_ms: float, n: int) -> bool:
        """Whether the ``n``-th frame decoded (timestamp ``ms``) shows frames lost before
        it: its timestamp is more than 1.5 frames after the previous one's *and* more than
        half a frame later than the ``n``-th frame's time. The second condition keeps a jump
        that only makes up for timestamps that ran behind (FFmpeg gives a few frames of an
        intact MPEG-2 program stream, after a GOP boundary, times two frames early) from
        calling the clip incomplete."""
        late = ms - first_ms - (n - 1) * self._frame_ms
        return ms - prev_ms > 1.5 * self._frame_ms and late > 0.5 * self._frame_ms

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
        if not (0 <= index - self._next <= SEEK_THRESHOLD):
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
        return to_rgb(self._read_at(self._check_index(index)))

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        for i in range(max(0, start), stop):
            try:
                frame = self._read_at(i)
            except ClipError:
                if i == 0:
                    raise
                self._check_not_skipped(i)
                self.info = replace(self.info, frame_count=i, complete=False)
                _log.warning("%s: frame %d and after do not decode; the clip is incomplete (%d frames read)",
                             display_path(self._path), i, i)  # fmt: skip
                return
            yield to_rgb(frame)

    def _check_not_skipped(self, i: int) -> None:
        """Reading in order stopped at frame ``i``, before the end the container's index
        promises. The decoder may have passed over frames it could not decode earlier on
        (FFmpeg does so silently, in an AVI of MJPEG with damaged data), so that the frames
        read since were later ones, numbered as the ones missing. Frame ``i - 1`` reached by
        a seek (by the index) must equal the one read in order; if not, :class:`ClipError`:
        the frames read cannot be numbered."""
        if not (self._seek_exact and self._last is not None and self._last[0] == i - 1):
            return
        read = self._last[1]
        self._rewind()  # a capture whose read failed may not seek right: a fresh one
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, float(i - 1))
        ok, frame = self._cap.read()
        if ok and frame is not None and self._at_time(i - 1) and np.array_equal(frame, read):
            self._next, self._last = i, (i - 1, frame)
            return
        self._rewind()
        raise ClipError(
            self._path,
            f"frames are missing before frame {i} (damaged data); the frames read after the damage cannot be "
            "numbered, so the clip is not read",
        )

    def close(self) -> None:
        self._cap.release()
        self._last = None
