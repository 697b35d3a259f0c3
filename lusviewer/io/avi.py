"""AVI headers, and a pure-numpy reader for uncompressed (DIB / BI_RGB) AVI.

OpenCV 5.0.0's FFmpeg path crashes the process (SIGSEGV / SIGABRT, "munmap_chunk():
invalid pointer") on a standard bottom-up uncompressed BGR24 AVI, so such files never
reach OpenCV: :class:`RawAviReader` reads them here, one frame at a time with a file
seek (memory is one frame plus an offset table of 8 bytes per frame).
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from lusviewer.io.base import DEFAULT_FPS, MAX_FRAME_PIXELS, ClipError, ClipInfo, ClipReader, display_path, sane_fps
from lusviewer.wording import count

_log = logging.getLogger(__name__)

#: biCompression values that mean "uncompressed pixels": BI_RGB, and the fourccs writers use for it.
RAW_CODECS = (b"\0\0\0\0", b"DIB ", b"RGB ", b"raw ")
#: Compressed video fourccs OpenCV decodes in AVI without trouble (upper-cased).
KNOWN_CODECS = frozenset(
    s.encode()
    for s in (
        "MJPG", "XVID", "DIVX", "DX50", "FMP4", "MP4V", "H264", "X264", "AVC1", "HEVC", "H265", "HVC1",
        "MP42", "MP43", "DIV3", "WMV1", "WMV2", "WMV3", "VP80", "VP90", "FFV1", "HFYU", "MPG1", "MPG2",
        "MPEG", "CVID", "IV50", "IV41", "FLV1", "THEO", "AV01", "MSVC", "CRAM", "WHAM", "ULRG", "ULY0",
    )
)  # fmt: skip

_MAX_CHUNKS = 10_000_000  # a movi list with more chunks than this is corrupt, not a clip


@dataclass
class AviHeader:
    """What the headers of an AVI file say about its first video stream."""

    frames: int  # total frames from the stream header (dwLength), else the main header
    fps: float
    width: int
    height: int  # positive: the biHeight sign says the row order
    bottom_up: bool
    bit_count: int
    compression: bytes  # the fourcc as 4 bytes (b"\0\0\0\0" for BI_RGB)
    palette: np.ndarray | None  # (n, 3) RGB for 8-bit and lower
    stream: int  # index of the video stream (chunk ids "NNdb" / "NNdc")
    movi: list[tuple[int, int]]  # (start, end) of each 'movi' list body (several in OpenDML files)

    @property
    def raw(self) -> bool:
        return self.compression in RAW_CODECS


def _u32(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", b, at)[0])


def read_avi_header(path: str | os.PathLike[str]) -> AviHeader | None:
    """The header of an AVI (``RIFF....AVI ``) file, or None when the file is not one or its
    headers cannot be parsed (the caller then lets the decoder judge it)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
                return None
            return _parse(fh, size)
    except (OSError, struct.error, ValueError):
        return None


def _parse(fh: BinaryIO, size: int) -> AviHeader | None:
    main_frames = 0
    streams: list[tuple[bytes, bytes]] = []  # (strh, strf) per stream
    movi: list[tuple[int, int]] = []
    pos = 0
    # Top level: RIFF 'AVI ' then (OpenDML) RIFF 'AVIX' lists, each holding LIST chunks.
    while pos + 12 <= size:
        fh.seek(pos)
        riff = fh.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF":
            break
        riff_end = pos + 8 + _u32(riff, 4)
        p = pos + 12
        while p + 8 <= min(riff_end, size):
            fh.seek(p)
            ck = fh.read(12)
            if len(ck) < 8:
                break
            cid, clen = ck[:4], _u32(ck, 4)
            if cid == b"LIST" and ck[8:12] == b"hdrl":
                body = fh.read(min(clen - 4, 1 << 20))
                main_frames, streams = _parse_hdrl(body)
            elif cid == b"LIST" and ck[8:12] == b"movi":
                movi.append((p + 12, p + 8 + clen))
            p += 8 + clen + (clen & 1)
        pos = pos + 8 + _u32(riff, 4) + (_u32(riff, 4) & 1)
    for stream, (strh, strf) in enumerate(streams):
        if strh[:4] != b"vids" or len(strh) < 36 or len(strf) < 40:
            continue
        scale, rate, length = _u32(strh, 20), _u32(strh, 24), _u32(strh, 32)
        width, height = struct.unpack_from("<ii", strf, 4)
        bit_count = struct.unpack_from("<H", strf, 14)[0]
        compression = strf[16:20]
        palette = None
        if bit_count <= 8 and compression in RAW_CODECS:
            used = _u32(strf, 32) or (1 << bit_count)
            table = strf[40 : 40 + 4 * used]
            if len(table) >= 4:
                palette = np.frombuffer(table[: len(table) // 4 * 4], np.uint8).reshape(-1, 4)[:, 2::-1].copy()
        fps = rate / scale if scale else 0.0
        return AviHeader(
            frames=length or main_frames,
            fps=fps if sane_fps(fps) else 0.0,
            width=int(width),
            height=abs(int(height)),
            bottom_up=height > 0,
            bit_count=int(bit_count),
            compression=compression,
            palette=palette,
            stream=stream,
            movi=movi,
        )
    return None


def _parse_hdrl(body: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    main_frames = 0
    streams: list[tuple[bytes, bytes]] = []
    p = 0
    while p + 8 <= len(body):
        cid, clen = body[p : p + 4], _u32(body, p + 4)
        data = body[p + 8 : p + 8 + clen]
        if cid == b"avih" and len(data) >= 20:
            main_frames = _u32(data, 16)
        elif cid == b"LIST" and data[:4] == b"strl":
            strh = strf = b""
            q = 4
            while q + 8 <= len(data):
                sid, slen = data[q : q + 4], _u32(data, q + 4)
                if sid == b"strh":
                    strh = data[q + 8 : q + 8 + slen]
                elif sid == b"strf":
                    strf = data[q + 8 : q + 8 + slen]
                q += 8 + slen + (slen & 1)
            streams.append((strh, strf))
        p += 8 + clen + (clen & 1)
    return main_frames, streams


class RawAviReader(ClipReader):
    """Uncompressed AVI (BI_RGB: 8-bit palette, 24-bit BGR, 32-bit BGRx; bottom-up or
    top-down rows), read with numpy. Frames are the stream's data chunks in file order;
    a zero-length chunk repeats the previous frame (a dropped frame, as AVI defines it).
    A chunk cut off by the end of the file ends the clip there (``complete=False``)."""

    def __init__(self, path: str | os.PathLike[str], header: AviHeader) -> None:
        self._path = str(path)
        h = header
        if h.bit_count not in (8, 24, 32) or (h.bit_count == 8 and h.palette is None):
            raise ClipError(
                path,
                f"uncompressed AVI with {h.bit_count} bits per pixel is not supported (only 8-bit palette, 24 or 32)",
            )
        if h.width <= 0 or h.height <= 0 or h.width * h.height > MAX_FRAME_PIXELS:
            raise ClipError(path, f"AVI header gives an impossible frame size ({h.width}x{h.height})")
        self._h = h
        self._stride = (h.width * h.bit_count + 31) // 32 * 4
        self._frame_bytes = self._stride * h.height
        size = os.path.getsize(self._path)
        if self._frame_bytes > size:
            raise ClipError(path, f"AVI header says {h.width}x{h.height} frames, larger than the whole file")
        self._fh = open(self._path, "rb")  # noqa: SIM115 - held open while the reader lives
        try:
            offsets, cut = self._index(size)
        except BaseException:
            self._fh.close()
            raise
        if len(offsets) == 0 or offsets[0] < 0:
            self._fh.close()
            raise ClipError(path, "no frame could be decoded (the AVI holds no complete video frame)")
        self._offsets = offsets
        n = len(offsets)
        header_count = h.frames if h.frames > 0 else None
        complete = not cut and (header_count is None or n >= header_count)
        # 8-bit frames index a 256-entry palette: built once, not per frame
        self._palette = None
        if h.bit_count == 8 and h.palette is not None:
            self._palette = h.palette if len(h.palette) == 256 else np.resize(h.palette, (256, 3))
        self.info = ClipInfo(
            path=self._path,
            frame_count=n,
            fps=h.fps if h.fps > 0 else DEFAULT_FPS,
            width=h.width,
            height=h.height,
            format="video/" + (h.compression.decode("latin-1").strip("\0 ") or "DIB"),
            complete=complete,
            header_frame_count=header_count,
        )
        if not complete:
            _log.warning(
                "%s: the clip is incomplete (the header says %s, the file holds %s)",
                display_path(self._path),
                count(header_count, "frame") if header_count is not None else "more frames",
                count(n, "whole frame"),
            )

    def _index(self, size: int) -> tuple[np.ndarray, bool]:
        """Data offsets of the video frames (a repeat of the previous one for an empty
        chunk, -1 if the first is empty), and whether the data was cut off."""
        ids = (b"%02ddb" % self._h.stream, b"%02ddc" % self._h.stream)
        offsets: list[int] = []
        fh = self._fh
        for start, end in self._h.movi:
            p = start
            while p + 8 <= end:
                fh.seek(p)
                ck = fh.read(12)
                if len(ck) < 8:
                    return np.asarray(offsets, dtype=np.int64), True
                cid, clen = ck[:4], _u32(ck, 4)
                if cid == b"LIST":  # 'rec ' groups: their chunks follow in line
                    p += 12
                    continue
                if cid in ids:
                    if p + 8 + clen > size or 0 < clen < self._frame_bytes:  # cut off, or short
                        return np.asarray(offsets, dtype=np.int64), True
                    offsets.append(p + 8 if clen else (offsets[-1] if offsets else -1))
                    if len(offsets) > _MAX_CHUNKS:
                        raise ClipError(self._path, "AVI index is corrupt (too many chunks)")
                p += 8 + clen + (clen & 1)
            if end > size:  # the list says it holds more than the file does
                return np.asarray(offsets, dtype=np.int64), True
        return np.asarray(offsets, dtype=np.int64), False

    def frame(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        self._fh.seek(int(self._offsets[index]))
        data = self._fh.read(self._frame_bytes)
        if len(data) < self._frame_bytes:
            raise ClipError(self._path, f"frame {index} could not be read (file truncated)")
        h = self._h
        rows = np.frombuffer(data, np.uint8).reshape(h.height, self._stride)
        if h.bottom_up:
            rows = rows[::-1]
        if self._palette is not None:  # 8-bit
            return np.ascontiguousarray(self._palette[rows[:, : h.width]])
        k = h.bit_count // 8
        px = rows[:, : h.width * k].reshape(h.height, h.width, k)
        return np.ascontiguousarray(px[:, :, 2::-1])

    def close(self) -> None:
        self._fh.close()
