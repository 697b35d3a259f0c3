"""Clip readers: random access and streaming over video containers and DICOM.

Frames come out as RGB ``uint8`` arrays of shape (H, W, 3). Nothing here holds
more than one decoded frame (plus OpenCV's own decoder state), so memory does not
grow with clip length.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from lusviewer.io.base import (
    DEFAULT_FPS,
    DICOM_EXTENSIONS,
    FPS_RANGE,
    MAX_FRAME_PIXELS,
    SUPPORTED_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ClipError,
    ClipInfo,
    ClipReader,
    display_path,
    quoted,
    sane_fps,
    utf8_path,
)
from lusviewer.io.containers import sniff_container
from lusviewer.io.images import (
    IMAGE_EXTENSIONS,
    TIFF_EXTENSIONS,
    ImageFolderReader,
    TiffStackReader,
    image_files,
    is_multipage_tiff,
)
from lusviewer.io.video import VideoClipReader

_log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FPS",
    "DICOM_EXTENSIONS",
    "FPS_RANGE",
    "IMAGE_EXTENSIONS",
    "MAX_FRAME_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipError",
    "ClipInfo",
    "ClipReader",
    "ImageFolderReader",
    "TiffStackReader",
    "VideoClipReader",
    "display_path",
    "find_clips",
    "image_files",
    "is_dicom_file",
    "open_clip",
    "quoted",
    "sane_fps",
]


#: Video formats a folder search does not take: each file met is reported, not passed over.
OTHER_VIDEO_EXTENSIONS = (
    ".webm", ".ts", ".m2ts", ".mts", ".3gp", ".3g2", ".flv", ".f4v", ".ogv", ".vob", ".mxf", ".asf", ".rm",
    ".rmvb", ".divx", ".y4m", ".h264", ".h265", ".hevc", ".mjpeg", ".mjpg",
)  # fmt: skip
_SEARCHED = " ".join(VIDEO_EXTENSIONS) + ", DICOM, multi-page TIFF, folders of frame images"


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
    or a DICOM extension), TIFF (:class:`TiffStackReader`: one frame per page),
    uncompressed AVI (read by :mod:`lusviewer.io.avi`, never by
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
    if container == "tiff":
        return TiffStackReader(p)
    if container == "avi":
        from lusviewer.io.avi import KNOWN_CODECS, RawAviReader, read_avi_header

        header = read_avi_header(p)
        if header is not None and header.raw:
            return RawAviReader(p, header)
        if header is None or header.compression.upper() not in KNOWN_CODECS:
            from lusviewer.io.probe import check_decoder_survives

            check_decoder_survives(utf8_path(path), st)
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
    name them, e.g. ``IM00001``; DICOMDIR index files are skipped), multi-page TIFF
    files (a stack of frames), and folders of frame images (the ICLUS-DB layout: one
    folder per clip; single-page images), each as one clip.

    A path that is not a folder is returned as given (:func:`open_clip` then says
    what is wrong with it). Nothing found in a folder is reported silently: each
    problem met while searching (a subfolder that cannot be read, a broken symbolic
    link or link loop, a FIFO/device with a clip's name) is passed to
    ``on_error(ClipError)`` (one call per problem; the search goes on), or, without
    ``on_error``, logged as a warning on logger ``lusviewer.io``; so is each file of a
    video format the search does not take (:data:`OTHER_VIDEO_EXTENSIONS`, e.g. ``.webm``),
    each folder with a clip's name that holds no clip (``x.mp4/``), and each symbolic link
    to a folder outside the one searched. Symbolic links to folders are not followed (no
    loops; a link to the folder searched or one of its own folders is passed over, its
    clips being found there); hidden files are skipped.
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
    clip_named: list[Path] = []  # folders with a clip's name: said if nothing is found in them
    unread: set[Path] = set()  # folders that could not be read (said)
    stack = [Path(path)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            report(folder, f"folder cannot be read ({exc.strerror or exc}); clips in it are skipped")
            unread.add(folder)
            continue
        for e in entries:
            f = folder / e.name
            suffix = f.suffix.lower()
            try:
                is_link = e.is_symlink()
                if e.is_dir(follow_symlinks=False):
                    stack.append(f)
                    if suffix in SUPPORTED_EXTENSIONS:
                        clip_named.append(f)
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
                if _outside(f, path):
                    report(f, "is a symbolic link to a folder elsewhere, not followed (its clips are not searched); "
                           "give that folder itself")  # fmt: skip
                continue
            if not stat.S_ISREG(mode):
                if suffix in SUPPORTED_EXTENSIONS:
                    report(f, f"is {_kind(mode)}, not a clip file; skipped")
                continue
            if e.name.upper() == "DICOMDIR":
                continue
            clip_file = suffix in SUPPORTED_EXTENSIONS or (not suffix and is_dicom_file(f))
            if clip_file or (suffix in TIFF_EXTENSIONS and is_multipage_tiff(f)):  # a TIFF stack is a clip
                found.append(str(f))
            elif suffix in IMAGE_EXTENSIONS:
                frame_dirs.add(str(folder))
            elif suffix in OTHER_VIDEO_EXTENSIONS:  # a clip, to its owner: not passed over in silence
                report(f, f"a {suffix} file is not among the formats a folder search takes ({_SEARCHED}); skipped")
    clips = found + sorted(frame_dirs)
    for d in clip_named:
        inside = str(d) + os.sep
        if d not in unread and not any(c == str(d) or c.startswith(inside) for c in clips):
            report(d, f"is a folder named like a clip ({d.suffix.lower()}) and holds no clips; skipped")
    return sorted(clips)


def _outside(link: Path, root: str | os.PathLike[str]) -> bool:
    """Whether a symbolic link to a folder leads out of the folder searched: not to it, one
    of its own folders (found there anyway) or a folder above it (a loop)."""
    try:
        target, top = os.path.realpath(link), os.path.realpath(root)
    except (OSError, ValueError):
        return True
    return not (
        target == top
        or target.startswith(top.rstrip(os.sep) + os.sep)
        or top.startswith(target.rstrip(os.sep) + os.sep)
    )
