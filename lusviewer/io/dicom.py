"""DICOM ultrasound (single- and multi-frame) through pydicom, one frame at a time."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from lusviewer.io.base import (
    DEFAULT_FPS,
    MAX_FRAME_PIXELS,
    ClipError,
    ClipInfo,
    ClipReader,
    display_path,
    quoted,
    sane_fps,
)
from lusviewer.wording import count

_log = logging.getLogger(__name__)
_warn_lock = threading.RLock()


@contextlib.contextmanager
def _pydicom_warnings(path: str) -> Iterator[None]:
    """Turn what pydicom says while reading ``path`` into one warning log record each
    (logger ``lusviewer.io.dicom``, message ``<path>: <what pydicom said>``, escaped and
    cut short), instead of bare lines on stderr: pydicom both ``warnings.warn``s and
    logs to logger ``pydicom``, which is kept quiet meanwhile. The same message is
    logged once per read. A lock serialises this (``warnings.catch_warnings`` is
    process-wide), so two DICOM reads on two threads do not swap their warnings."""
    seen: set[str] = set()

    def emit(msg: str) -> None:
        msg = " ".join(msg.split())
        if msg.startswith("Please see") or not msg:
            return
        text = msg if len(msg) <= 160 else msg[:157] + "..."
        if text not in seen:
            seen.add(text)
            _log.warning("%s: %s", display_path(path), display_path(text))

    pd_log = logging.getLogger("pydicom")
    with _warn_lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        was = pd_log.disabled
        pd_log.disabled = True
        try:
            yield
        finally:
            pd_log.disabled = was
            for w in caught:
                emit(str(w.message).split(" Please see <")[0])


def _fps(ds: Any, path: str) -> float:
    """Frame rate from Frame Time (ms), Frame Time Vector, Cine Rate, Recommended
    Display Frame Rate: the first present whose rate is plausible
    (:data:`~lusviewer.io.base.FPS_RANGE`), else :data:`~lusviewer.io.base.DEFAULT_FPS`.

    A corrupt element is skipped (pydicom parses lazily, so reading one can raise
    almost anything): a bad frame rate is no reason to reject the clip. An element
    present but absurd (Frame Time ``1e-320``, ``inf``, ``1e300``, ``0``) is logged as a
    warning naming it. The result is always finite and > 0.
    """

    def rate_from_ms(ms: float) -> float:
        try:
            return 1000.0 / ms if ms > 0 else 0.0
        except (OverflowError, ZeroDivisionError):
            return float("inf")

    absurd: list[str] = []
    candidates: list[tuple[str, Any]] = [
        ("FrameTime", lambda: rate_from_ms(float(ds.FrameTime))),
        ("FrameTimeVector", lambda: rate_from_ms(float(np.mean([float(t) for t in list(ds.FrameTimeVector)[1:]])))),
        ("CineRate", lambda: float(ds.CineRate)),
        ("RecommendedDisplayFrameRate", lambda: float(ds.RecommendedDisplayFrameRate)),
    ]
    for kw, get in candidates:
        try:
            if kw not in ds:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy's mean of an empty list
                rate = float(get())
        except Exception:
            absurd.append(kw)
            continue
        if sane_fps(rate):
            return rate
        absurd.append(kw)
    if absurd:
        _log.warning(
            "%s: the frame rate in the header (%s) is not plausible; using %g fps",
            display_path(path),
            ", ".join(absurd),
            DEFAULT_FPS,
        )
    return DEFAULT_FPS


def _why(exc: BaseException) -> str:
    """``ExcType: message``, the message escaped and cut short (pydicom may quote raw bytes)."""
    msg = display_path(" ".join(str(exc).split()))
    return f"{type(exc).__name__}: {msg[:100] + '...' if len(msg) > 100 else msg}"


def _int_element(ds: Any, keyword: str, default: int) -> int:
    """An integer element's value, or a :class:`ValueError` that says what it holds."""
    if keyword not in ds:
        return default
    elem = ds[keyword]
    raw = elem.value
    try:
        if raw is None or raw == "":
            return default
        if isinstance(raw, list | tuple) or (hasattr(raw, "__len__") and not isinstance(raw, str | bytes)):
            raise TypeError
        value = float(raw)
        if value != int(value):
            raise TypeError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise _HeaderValueError(f"{keyword} is {quoted(raw, 30)}, not a whole number") from None


class _HeaderValueError(ValueError):
    """A header element whose value makes no sense: the message says which and what."""


_PIXEL_TAGS = (0x7FE00010, 0x7FE00009, 0x7FE00008)  # Pixel Data, Double/Float Pixel Data


def _frames_present(ds: Any, path: str, pixel_at: int, length: int, n: int) -> int:
    """How many whole frames of native pixel data the file holds (at most ``n``).

    Counted from the element's length and the bytes left in the file, so a header
    that overstates NumberOfFrames or a cut-off file still yields the frames it has.
    Encapsulated (compressed) data cannot be counted without reading it: ``n``.
    """
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is not None and ts.is_encapsulated and length == 0xFFFFFFFF:
        return min(n, _fragments_present(path, pixel_at, ts.is_implicit_VR))
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


def _fragments_present(path: str, pixel_at: int, implicit: bool) -> int:
    """Frames an encapsulated Pixel Data element can hold: its whole fragments (items
    after the offset table), walked by their 8-byte headers without reading the data.
    A frame is one or more fragments, so this bounds the frame count from above; a
    header count larger than it is a header that overstates."""
    header = 8 if implicit else 12
    size = os.path.getsize(path)
    fragments = 0
    with open(path, "rb") as fh:
        p = pixel_at + header
        first = True
        while p + 8 <= size:
            fh.seek(p)
            item = fh.read(8)
            if item[:4] != b"\xfe\xff\x00\xe0":  # not an Item: the sequence delimiter or damage
                break
            length = int.from_bytes(item[4:8], "little")
            if p + 8 + length > size:  # cut off
                break
            if not first:
                fragments += 1
            first = False  # the first item is the Basic Offset Table
            p += 8 + length
    return fragments


class DicomClipReader(ClipReader):
    """Reads pixel data frame by frame; colour converted to RGB.

    YBR_* photometric interpretations are converted by pydicom; PALETTE COLOR is
    expanded through its lookup table; more-than-8-bit data is scaled to 8 bits with
    the window from the header, else the lowest..highest stored value over all frames
    (found at open, one frame at a time, as for image stacks; fixed for the whole clip
    so levels never jump between frames); MONOCHROME1 is then inverted. Bad input of
    any kind raises :class:`ClipError`.
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
            with _pydicom_warnings(self._path), open(self._path, "rb") as fh:
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
            with _pydicom_warnings(self._path):
                rows, cols = _int_element(ds, "Rows", 0), _int_element(ds, "Columns", 0)
                if rows <= 0 or cols <= 0:
                    raise ClipError(path, "DICOM file has no image (no Rows/Columns)")
                if rows * cols > MAX_FRAME_PIXELS:
                    raise ClipError(path, f"DICOM header gives an impossible image size ({cols}x{rows})")
                spp = _int_element(ds, "SamplesPerPixel", 1)
                if spp not in (1, 3):
                    raise ClipError(
                        path,
                        f"DICOM image has {spp} samples per pixel; only 1 (greyscale) or 3 (colour) are supported",
                    )
                n = _int_element(ds, "NumberOfFrames", 1)
                if n < 1:
                    raise ClipError(path, f"DICOM header is corrupt (NumberOfFrames is {n})")
                self._photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
                if not pixels or pixels[0] == 0:
                    raise ClipError(path, "DICOM file has no pixel data (no or empty Pixel Data element)")
                present = _frames_present(ds, self._path, pixel_at, pixels[0], n)
                fps = _fps(ds, self._path)
        except ClipError:
            raise
        except _HeaderValueError as exc:
            raise ClipError(path, f"DICOM header is corrupt: {exc}") from None
        except Exception as exc:
            raise ClipError(path, f"DICOM header is corrupt or unsupported ({_why(exc)})") from None
        if present == 0:
            said = f"header says {count(n, 'frame')}"
            raise ClipError(path, f"DICOM pixel data is truncated ({said}, pixel data holds none)")
        if present < n:  # trust the frames actually present
            _log.warning(
                "%s: the clip is incomplete (the header says %s, the pixel data holds %d); reading those",
                display_path(self._path),
                count(n, "frame"),
                present,
            )
        self._header_frames = n
        self._scale: tuple[float, float] | None = None
        self.info = ClipInfo(
            path=self._path,
            frame_count=present,
            fps=fps,
            width=cols,
            height=rows,
            format="dicom",
            complete=present >= n,
            header_frame_count=n,
        )
        self._deep = False  # stored values deeper than 8 bits (set as frame 0 is converted)
        first = self._decode(0)
        if self._deep and present > 1 and self._window() is None:
            self._clip_range()
            first = self._decode(0)
        self._first = first

    def _raw(self, index: int) -> np.ndarray:
        from pydicom.pixels import pixel_array  # type: ignore[attr-defined]

        with _pydicom_warnings(self._path):
            if self._header_frames == 1:
                return np.asarray(pixel_array(self._path))
            return np.asarray(pixel_array(self._path, index=index))

    def _lut(self, arr: np.ndarray) -> np.ndarray:
        from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]

        return np.asarray(apply_color_lut(arr, self._ds)) if self._photometric == "PALETTE COLOR" else arr

    def _window(self) -> tuple[float, float] | None:
        """The header's window as (lowest, highest) stored value; None if absent or corrupt."""
        try:
            wc, ww = self._ds.WindowCenter, self._ds.WindowWidth
            c = float(wc[0] if hasattr(wc, "__len__") and not isinstance(wc, str) else wc)
            w = float(ww[0] if hasattr(ww, "__len__") and not isinstance(ww, str) else ww)
        except Exception:
            return None
        return (c - w / 2, c + w / 2) if w > 0 and np.isfinite(c) and np.isfinite(w) else None

    def _clip_range(self) -> None:
        """Deeper than 8 bits and no window in the header: the lowest and highest stored
        value over all the clip's frames (read once, one at a time), as for image stacks.
        Frame 0's alone left a brighter later frame mostly white (a 16-bit clip whose frame
        0 reached 1000 and frame 1 60000: 99 % of frame 1 at 255). A frame that does not
        decode ends the pass (reading it will say so)."""
        from pydicom.pixels import iter_pixels  # type: ignore[attr-defined]

        n = self.info.frame_count
        lo, hi = np.inf, -np.inf
        try:
            with _pydicom_warnings(self._path):
                frames = iter_pixels(self._path) if n == self._header_frames else (self._raw(i) for i in range(n))
                for raw in itertools.islice(frames, n):
                    arr = self._lut(np.asarray(raw))
                    if arr.size:
                        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
        except Exception:  # pydicom and the codecs raise many types for bad pixel data
            pass
        if np.isfinite(lo) and np.isfinite(hi):
            self._scale = (lo, max(hi - lo, 1e-6))

    def _convert(self, arr: np.ndarray) -> np.ndarray:
        arr = self._lut(arr)
        if arr.dtype != np.uint8:
            self._deep = True
            # The window (and min-max) is on stored values: scale first, invert after.
            if self._scale is None:
                window = self._window()
                lo, hi = window or (float(arr.min()), float(arr.max()))
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
                frames = iter_pixels(self._path)
                while True:
                    with _pydicom_warnings(self._path):  # not held across the yield
                        arr = next(frames, None)
                    if arr is None:
                        break
                    yield self._convert(np.asarray(arr))
                    i += 1
            except ClipError:
                raise
            except Exception as exc:
                raise ClipError(self._path, f"frame {i} could not be decoded ({_why(exc)})") from None
            if i < stop:  # the pixel data ran out early (damaged fragments): say so
                if i == 0:
                    raise ClipError(self._path, "no frame could be decoded (damaged pixel data)")
                self.info = replace(self.info, frame_count=i, complete=False)
                _log.warning(
                    "%s: the clip is incomplete (frame %d and after do not decode; %d frames read)",
                    display_path(self._path),
                    i,
                    i,
                )
            return
        yield from super().iter_frames(start, stop)
