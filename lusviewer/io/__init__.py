"""Clip readers (no Qt): OpenCV containers and DICOM, streaming, frame-accurate.

What callers get, and what they must do with it:

- :func:`open_clip` returns a :class:`ClipReader` or raises :class:`ClipError`
  (``str()`` is one printable line naming the file and the reason; ``.path`` is the
  path as given, ``.reason`` the reason alone). Nothing else escapes for bad input.
- ``reader.info`` (:class:`ClipInfo`): ``frame_count`` is the frames that exist,
  ``fps`` is always finite and plausible, ``complete`` is False for a clip cut short
  or whose frames stop decoding, ``header_frame_count`` what the header claimed.
  ``info`` can change while the clip is read in order (a video whose frames stop
  decoding ends early with ``complete=False``): read it again after reading.
- :func:`find_clips(path, on_error=...) <find_clips>` returns the clips under a folder
  and passes each problem met while searching (unreadable subfolder, link loop,
  broken link, FIFO with a clip's name) to ``on_error`` as a ClipError.
- Warnings (a clip found incomplete, an implausible frame rate, pydicom's complaints
  about a header) are ``logging`` records on logger ``lusviewer.io`` (children
  ``lusviewer.io.clip``, ``.dicom``, ``.avi``), each message ``<path>: <what>`` on one
  printable line; nothing is printed. A front end attaches a handler there.
"""

from lusviewer.io.clip import (
    DEFAULT_FPS,
    DICOM_EXTENSIONS,
    FPS_RANGE,
    SUPPORTED_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ClipError,
    ClipInfo,
    ClipReader,
    display_path,
    find_clips,
    open_clip,
)

__all__ = [
    "DEFAULT_FPS",
    "DICOM_EXTENSIONS",
    "FPS_RANGE",
    "SUPPORTED_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipError",
    "ClipInfo",
    "ClipReader",
    "display_path",
    "find_clips",
    "open_clip",
]
