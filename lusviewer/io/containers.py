"""Container sniffing and frame counting from the bytes (GIF, MPEG, Matroska): what
the video reader needs to know before it trusts OpenCV's seeks and counts."""

from __future__ import annotations

import mmap
import os

#: Containers whose frame seeks OpenCV gets right (an index of every frame); each seek
#: is still checked against the decoder's timestamp and, at open, by content.
SEEKABLE = ("isom", "avi", "matroska")
#: Containers whose header frame count is trusted: an index (MP4/MOV, AVI) or the
#: duration of a Matroska file (an estimate: a variable-frame-rate MKV may be called
#: incomplete when it is not).
COUNTED = ("isom", "avi", "matroska")
#: Streams with a fixed frame rate: a timestamp gap while counting means frames lost.
CFR_STREAMS = ("mpeg-ps", "mpeg-ts", "mpeg-es")


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
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"  # classic or BigTIFF, either byte order
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


def cut_short(path: str, container: str) -> bool:
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
