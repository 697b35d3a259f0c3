"""DICOM ultrasound (single- and multi-frame) through pydicom, one frame at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lusviewer.io.clip import ClipError, ClipInfo, ClipReader

_DEFAULT_FPS = 25.0


def _fps(ds: Any) -> float:
    """Frame rate from Frame Time (ms), Cine Rate, Recommended Display Frame Rate."""
    for kw in ("FrameTime",):
        v = getattr(ds, kw, None)
        if v not in (None, ""):
            try:
                ms = float(v)
                if ms > 0:
                    return 1000.0 / ms
            except (TypeError, ValueError):
                pass
    vec = getattr(ds, "FrameTimeVector", None)
    if vec:
        try:
            times = [float(t) for t in list(vec)[1:]]
            mean = sum(times) / len(times) if times else 0.0
            if mean > 0:
                return 1000.0 / mean
        except (TypeError, ValueError):
            pass
    for kw in ("CineRate", "RecommendedDisplayFrameRate"):
        v = getattr(ds, kw, None)
        if v not in (None, ""):
            try:
                rate = float(v)
                if rate > 0:
                    return rate
            except (TypeError, ValueError):
                pass
    return _DEFAULT_FPS


class DicomClipReader(ClipReader):
    """Reads pixel data frame by frame; colour converted to RGB.

    YBR_* photometric interpretations are converted by pydicom; PALETTE COLOR is
    expanded through its lookup table; MONOCHROME1 is inverted; more-than-8-bit
    data is scaled to 8 bits with the window from the header, else min-max of the
    first frame (fixed for the whole clip so levels never jump between frames).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import pydicom
        from pydicom.errors import InvalidDicomError

        self._path = str(path)
        try:
            ds = pydicom.dcmread(self._path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise ClipError(path, f"not a readable DICOM file ({exc})") from None
        if "PixelData" not in ds and not Path(self._path).stat().st_size:
            raise ClipError(path, "DICOM file has no pixel data")
        self._ds = ds
        rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
        if rows <= 0 or cols <= 0:
            raise ClipError(path, "DICOM file has no image (no Rows/Columns)")
        n = int(getattr(ds, "NumberOfFrames", 1) or 1)
        self._photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
        self._scale: tuple[float, float] | None = None
        self.info = ClipInfo(path=self._path, frame_count=n, fps=_fps(ds), width=cols, height=rows, format="dicom")
        try:
            self._first = self._decode(0)
        except ClipError:
            raise
        except Exception as exc:  # pydicom raises many types for bad pixel data
            raise ClipError(path, f"DICOM pixel data could not be decoded ({exc})") from None

    def _raw(self, index: int) -> np.ndarray:
        from pydicom.pixels import pixel_array  # type: ignore[attr-defined]

        try:
            if self.info.frame_count == 1:
                return np.asarray(pixel_array(self._path))
            return np.asarray(pixel_array(self._path, index=index))
        except Exception as exc:
            raise ClipError(self._path, f"frame {index} could not be decoded ({exc})") from None

    def _convert(self, arr: np.ndarray) -> np.ndarray:
        from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]

        if self._photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, self._ds)
        if arr.ndim == 2:
            if self._photometric == "MONOCHROME1":
                arr = arr.max() - arr if arr.dtype.kind == "f" else np.iinfo(arr.dtype).max - arr
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.dtype != np.uint8:
            if self._scale is None:
                lo, hi = float(arr.min()), float(arr.max())
                wc, ww = getattr(self._ds, "WindowCenter", None), getattr(self._ds, "WindowWidth", None)
                try:
                    if wc is not None and ww is not None:
                        c = float(wc[0] if hasattr(wc, "__len__") and not isinstance(wc, str) else wc)
                        w = float(ww[0] if hasattr(ww, "__len__") and not isinstance(ww, str) else ww)
                        lo, hi = c - w / 2, c + w / 2
                except (TypeError, ValueError):
                    pass
                self._scale = (lo, max(hi - lo, 1e-6))
            lo, span = self._scale
            arr = np.clip((arr.astype(np.float32) - lo) * (255.0 / span), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr[:, :, :3])

    def _decode(self, index: int) -> np.ndarray:
        return self._convert(self._raw(index))

    def frame(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        if index == 0:
            return self._first
        return self._decode(index)

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        if start <= 0 and stop == self.info.frame_count and self.info.frame_count > 1:
            from pydicom.pixels import iter_pixels  # type: ignore[attr-defined]

            try:
                for i, arr in enumerate(iter_pixels(self._path)):
                    if i >= stop:
                        break
                    yield self._convert(np.asarray(arr))
            except ClipError:
                raise
            except Exception as exc:
                raise ClipError(self._path, f"DICOM pixel data could not be decoded ({exc})") from None
            return
        yield from super().iter_frames(start, stop)
