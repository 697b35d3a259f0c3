"""Clip readers (no Qt): OpenCV containers and DICOM, streaming, frame-accurate."""

from lusviewer.io.clip import (
    DICOM_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ClipError,
    ClipInfo,
    ClipReader,
    find_clips,
    open_clip,
)

__all__ = [
    "DICOM_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipError",
    "ClipInfo",
    "ClipReader",
    "find_clips",
    "open_clip",
]
