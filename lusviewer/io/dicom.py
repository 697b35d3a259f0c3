"""DICOM ultrasound (single- and multi-frame) through pydicom, one frame at a time."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from lusviewer.io.clip import ClipError, ClipInfo, ClipReader

_DEFAULT_FPS = 25.0
_log = logging.getLogger(__name__)


def _fps(ds: Any) -> float:
    """Frame rate from Frame Time (ms), Cine Rate, Recommended Display Frame Rate.

    A corrupt element is skipped (pydicom parses lazily, so reading one can raise
    almost anything): a bad frame rate is no reason to reject the clip.
    """
    try:
        ms = float(ds.FrameTime)
        if ms > 0:
            return 1000.0 / ms
    except Exception:
        pass
    try:
        times = [float(t) for t in list(ds.FrameTimeVector)[1:]]
        mean = sum(times) / len(times) if times else 0.0
        if mean > 0:
            return 1000.0 / mean
    except Exception:
        pass
    for kw in ("CineRate", "RecommendedDisplayFrameRate"):
        try:
            rate = float(getattr(ds, kw))
            if 0 < rate < float("inf"):
                return rate
        except Exception:
            pass
    return _DEFAULT_FPS


def _why(exc: BaseException) -> str:
    """``ExcType: message``, the message cut short (pydicom may quote raw bytes)."""
    msg = str(exc)
    return f"{type(exc).__name__}: {msg[:200] + '...' if len(msg) > 200 else msg}"


_PIXEL_TAGS = (0x7FE00010, 0x7FE00009, 0x7FE00008)  # Pixel Data, Double/Float Pixel Data


def _frames_present(ds: Any, path: str, pixel_at: int, length: int, n: int) -> int:
    """How many whole frames of native pixel data the file holds (at most ``n``).

    Counted from the element's length and the bytes left in the file, so a header
    that overstates NumberOfFrames or a cut-off file still yields the frames it has.
    Encapsulated (compressed) data cannot be counted without reading it: ``n``.
    """
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None or ts.is_encapsulated or ts.is_deflated or length == 0xFFFFFFFF:
        return n
    header = 8 if ts.is_implicit_VR else 12  # tag, (VR, reserved,) 4-byte length
    available = min(length, os.path.getsize(path) - pixel_at - header)
    frame_bits = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * int(ds.BitsAllocated)
    if str(ds.PhotometricInterpretation).upper() == "YBR_FULL_422":
        frame_bits = frame_bits // 3 * 2
    if frame_bits <= 0:
        raise ValueError("SamplesPerPixel or BitsAllocated is not positive")
    return min(n, max(0, available) * 8 // frame_bits)


class DicomClipReader(ClipReader):
    """Reads pixel data frame by frame; colour converted to RGB.

    YBR_* photometric interpretations are converted by pydicom; PALETTE COLOR is
    expanded through its lookup table; more-than-8-bit data is scaled to 8 bits with
    the window from the header, else min-max of the first frame (fixed for the whole
    clip so levels never jump between frames), both on stored values; MONOCHROME1 is
    then inverted. Bad input of any kind raises :class:`ClipError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from pydicom.errors import InvalidDicomError
        from pydicom.filereader import read_partial

        self._path = str(path)
        pixels: list[int] = []  # length of the pixel data element, once reached

        def at_pixels(tag: int, vr: str | None, length: int) -> bool:
            if tag in _PIXEL_TAGS:
                pixels.append(length)
                return True
            return False

        try:
            with open(self._path, "rb") as fh:
                ds = read_partial(fh, stop_when=at_pixels)  # as dcmread(stop_before_pixels=True)
                pixel_at = fh.tell()  # read_partial rewinds to the start of the element
        except InvalidDicomError:
            raise ClipError(
                path, "not a DICOM file (no 'DICM' prefix / file meta information; raw datasets are not supported)"
            ) from None
        except OSError as exc:
            raise ClipError(path, f"cannot be read ({exc.strerror or exc})") from None
        except Exception as exc:  # truncated or garbled header: pydicom raises many types
            raise ClipError(path, f"not a readable DICOM file ({_why(exc)})") from None
        self._ds = ds
        # pydicom converts element values lazily, on first access: a corrupt value
        # (bad VR, wrong length, text where a number belongs) raises here, not above.
        try:
            rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
            if rows <= 0 or cols <= 0:
                raise ClipError(path, "DICOM file has no image (no Rows/Columns)")
            n = int(getattr(ds, "NumberOfFrames", 1) or 1)
            if n < 1:
                raise ClipError(path, f"DICOM header is corrupt (NumberOfFrames is {n})")
            self._photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
            if not pixels or pixels[0] == 0:
                raise ClipError(path, "DICOM file has no pixel data (no or empty Pixel Data element)")
            present = _frames_present(ds, self._path, pixel_at, pixels[0], n)
        except ClipError:
            raise
        except Exception as exc:
            raise ClipError(path, f"DICOM header is corrupt or unsupported ({_why(exc)})") from None
        if present == 0:
            raise ClipError(path, f"DICOM pixel data is truncated (header says {n} frame(s), pixel data holds none)")
        if present < n:  # trust the frames actually present
            _log.warning("%s: header says %d frames, pixel data holds %d; reading those", self._path, n, present)
        self._header_frames = n
        self._scale: tuple[float, float] | None = None
        self.info = ClipInfo(
            path=self._path, frame_count=present, fps=_fps(ds), width=cols, height=rows, format="dicom"
        )
        self._first = self._decode(0)

    def _raw(self, index: int) -> np.ndarray:
        from pydicom.pixels import pixel_array  # type: ignore[attr-defined]

        if self._header_frames == 1:
            return np.asarray(pixel_array(self._path))
        return np.asarray(pixel_array(self._path, index=index))

    def _convert(self, arr: np.ndarray) -> np.ndarray:
        from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]

        if self._photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, self._ds)
        if arr.dtype != np.uint8:
            # The window (and min-max) is on stored values: scale first, invert after.
            if self._scale is None:
                lo, hi = float(arr.min()), float(arr.max())
                try:
                    wc, ww = self._ds.WindowCenter, self._ds.WindowWidth
                    c = float(wc[0] if hasattr(wc, "__len__") and not isinstance(wc, str) else wc)
                    w = float(ww[0] if hasattr(ww, "__len__") and not isinstance(ww, str) else ww)
                    if w > 0 and np.isfinite(c) and np.isfinite(w):
                        lo, hi = c - w / 2, c + w / 2
                except Exception:  # absent or corrupt: min-max of the first frame
                    pass
                self._scale = (lo, max(hi - lo, 1e-6))
            lo, span = self._scale
            arr = np.clip((arr.astype(np.float32) - lo) * (255.0 / span), 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            if self._photometric == "MONOCHROME1":
                arr = 255 - arr
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        return np.ascontiguousarray(arr[:, :, :3])

    def _decode(self, index: int) -> np.ndarray:
        try:
            return self._convert(self._raw(index))
        except ClipError:
            raise
        except Exception as exc:  # pydicom and the codecs raise many types for bad pixel data
            raise ClipError(self._path, f"frame {index} could not be decoded ({_why(exc)})") from None

    def frame(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        if index == 0:
            return self._first
        return self._decode(index)

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        if start <= 0 and stop == self._header_frames > 1:  # all frames, all present
            from pydicom.pixels import iter_pixels  # type: ignore[attr-defined]

            i = 0
            try:
                for arr in iter_pixels(self._path):
                    yield self._convert(np.asarray(arr))
                    i += 1
            except ClipError:
                raise
            except Exception as exc:
                raise ClipError(self._path, f"frame {i} could not be decoded ({_why(exc)})") from None
            return
        yield from super().iter_frames(start, stop)
