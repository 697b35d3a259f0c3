"""The scoring engine: stream a clip through the model in batches, on CUDA or CPU.

One :class:`ScoringEngine` holds one loaded model on one device and scores any
number of clips, one at a time. Frames are decoded by a prefetch thread while the
model runs (OpenCV releases the GIL), in batches of ``batch_size``; only the
current and the next batch are ever decoded, so memory does not grow with clip
length. Per-frame results are a few numbers each.

Precision: on CUDA, bf16 autocast where the GPU supports it, else fp16; on CPU,
bf16 autocast where the CPU has bf16 instructions *and* the model card records
that bf16 and fp32 agreed on >= 99 % of frame labels on real clips
(``inference.bf16_label_agreement``), else fp32. Always channels_last. The LSTM
head runs in fp32.

Runtime (:mod:`lusviewer.inference.runtime`): on the CPU the per-frame CNN runs on
OpenVINO where it is installed (the ``fast`` extra; BatchNorms folded, converted once
and cached, compiled in the engine's precision), about three times as fast as PyTorch
here; else, on CUDA, or when asked for (``runtime="torch"``, ``LUSVIEWER_RUNTIME=torch``,
the card's ``inference.runtime``), on PyTorch as loaded. A runtime that fails to load or
to run falls back to PyTorch, with one log line; the LSTM head, reconstructions for
overlays and Grad-CAM always run on PyTorch.

What the model sees of each frame follows its card (``input.crop``): the whole frame
resized (absent or ``"none"``), or the clip's ultrasound sector only (``"sector"``):
the decode thread reads the first :data:`~lusviewer.model.preprocess.SECTOR_FRAMES`
frames, finds the sector on them (:func:`~lusviewer.model.preprocess.detect_sector`),
then crops every frame to it, those first frames included, in order. Memory stays
bounded: at most those frames are held at the clip's own resolution. The result
carries the sector (:attr:`ClipResult.sector`) so that overlays can be mapped back
onto the frames. Probabilities are ``softmax(logits / T)`` with the card's calibration
temperature ``T`` (``inference.temperature``, 1 where absent), for the CNN's and the
LSTM's outputs alike.

Findings: a model with auxiliary heads (``architecture.aux_heads``: A-lines, B-lines)
gives per-frame probabilities of those findings, ``sigmoid`` of the CNN's auxiliary
logits in the same forward pass (no temperature), but only for the findings its card
says were validated (``inference.findings_shown``); the others are never computed into
a result. With an LSTM head the frames it emits lag the CNN's; the findings are carried
with them as the reconstruction error is, so that frame i's findings are frame i's.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import torch

from lusviewer.inference.runtime import (
    CNNRunner,
    OpenVINORunner,
    openvino_available,
    requested_runtime,
)
from lusviewer.inference.sequence import DEFAULT_BURN_IN, DEFAULT_WINDOW, SequenceStreamer
from lusviewer.io import ClipError, ClipInfo, ClipReader, open_clip
from lusviewer.model.hybrid import CNNOutput
from lusviewer.model.preprocess import Sector, model_frames, resize_frame, to_model_input
from lusviewer.model.weights import LoadedModel
from lusviewer.report.aggregate import RULES, ClipSummary, frame_scores, summarize_clip

log = logging.getLogger("lusviewer.inference")

BF16_AGREEMENT_FLOOR = 0.99
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class Cancelled(Exception):
    """The job's cancel flag was set; raised between batches."""


@dataclass(frozen=True)
class ScoredFrames:
    """Final results for frames ``start .. start + len(scores) - 1`` of a clip."""

    start: int
    probs: np.ndarray  # (n, C) float32
    scores: np.ndarray  # (n,) int64
    recon_error: np.ndarray  # (n,) float32; NaN where the model has no autoencoder
    sector: Sector | None = None  # the clip's sector the frames were cropped to (as ClipResult.sector)
    findings: np.ndarray | None = None  # (n, F) float32 p(finding) per ClipResult.finding_names; None: none shown


@dataclass
class ClipResult:
    info: ClipInfo
    clip: str  # the path as given
    probs: np.ndarray
    scores: np.ndarray
    recon_error: np.ndarray
    summary: ClipSummary
    model_name: str
    weights_sha256: str
    device: str
    precision: str
    elapsed_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    # From the card (``inference.recon_error_limit``, a high quantile of the training clips'
    # mean reconstruction error); None when the card does not say.
    recon_error_limit: float | None = None
    # The clip's ultrasound sector the frames were cropped to (``input.crop: sector`` cards;
    # ``found`` False where none was told apart and the whole frame was used); None for a
    # card that resizes the whole frame.
    sector: Sector | None = None
    # Per-frame probabilities (T, F) of the findings the card validated
    # (``inference.findings_shown``), columns in the order of ``finding_names``; None (and
    # no names) for a model without auxiliary heads or a card that shows none.
    findings: np.ndarray | None = None
    finding_names: tuple[str, ...] = ()
    # The card's validation AUC of each finding shown (``metrics.findings.<name>.auc``), None where it gives none.
    finding_auc: tuple[float | None, ...] = ()

    @property
    def finding_means(self) -> dict[str, float]:
        """The clip's mean per-frame probability of each finding shown (empty: none shown)."""
        if self.findings is None or not len(self.findings):
            return {}
        means = self.findings.astype(np.float64).mean(0)
        return {name: float(m) for name, m in zip(self.finding_names, means, strict=True)}

    @property
    def frames_per_second(self) -> float:
        return len(self.scores) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def recon_error_mean(self) -> float:
        """The clip's mean autoencoder reconstruction error (how familiar its images are)."""
        finite = self.recon_error[np.isfinite(self.recon_error)]
        return float(finite.mean()) if len(finite) else float("nan")

    @property
    def unfamiliar(self) -> bool | None:
        """True when the clip's images are unlike the model's training clips (the mean
        reconstruction error is above the card's limit: another device, preset or
        organ); its scores are then unreliable. None when the card gives no limit."""
        if self.recon_error_limit is None or not np.isfinite(self.recon_error_mean):
            return None
        return self.recon_error_mean > self.recon_error_limit

    @property
    def familiarity_warning(self) -> str:
        """One sentence for an unfamiliar clip (CLI, viewer, log); empty otherwise."""
        if not self.unfamiliar:
            return ""
        return (
            f"unlike the model's training clips (another device, preset or organ?): mean reconstruction error "
            f"{self.recon_error_mean:.3f} > {self.recon_error_limit:.3f}; its scores are unreliable"
        )


def cpu_supports_bf16() -> bool:
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") and bool(
            getattr(torch.backends.mkldnn, "is_available", lambda: False)()
        )
    except Exception:  # older torch without get_cpu_capability
        return False


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA device is available")
    return dev


def resolve_precision(device: torch.device, precision: str, card_inference: dict[str, Any]) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    agreement = float(card_inference.get("bf16_label_agreement", 0.0) or 0.0)
    return "bf16" if cpu_supports_bf16() and agreement >= BF16_AGREEMENT_FLOOR else "fp32"


class ScoringEngine:
    """Scores clips with one loaded model; thread-compatible (one job at a time)."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 32,
        rule: str = "auto",
        runtime: str | None = None,
    ) -> None:
        """``runtime``: ``auto`` (OpenVINO on the CPU where installed, else PyTorch),
        ``torch`` or ``openvino``; None: ``LUSVIEWER_RUNTIME``, else the card's
        ``inference.runtime``, else ``auto`` (:func:`~lusviewer.inference.runtime.requested_runtime`)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.loaded = loaded
        self.card = loaded.card
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision, self.card.inference)
        self.batch_size = batch_size
        # "auto": the rule the model's card names (chosen in its cross-validation, with its
        # fitted thresholds), else the persistent worst pattern. A rule asked for by name
        # is used as such; "expected" then takes the card's thresholds where it has them.
        card_rule = self.card.clip_rule
        self.rule = (card_rule[0] if card_rule else "persistent") if rule == "auto" else rule
        self.thresholds = card_rule[1] if card_rule and self.rule == card_rule[0] else None
        if self.rule not in RULES:
            raise ValueError(f"unknown clip rule {self.rule!r}; expected one of {RULES}")
        self.model = loaded.model.to(self.device).eval()
        self.model.cnn.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.input_size = self.card.config.input_size
        self.window = int(self.card.inference.get("lstm_window", DEFAULT_WINDOW))
        self.burn_in = int(self.card.inference.get("lstm_burn_in", DEFAULT_BURN_IN))
        limit = self.card.inference.get("recon_error_limit")
        self.recon_error_limit = float(limit) if isinstance(limit, (int, float)) else None
        self.crop = self.card.crop
        self.temperature = self.card.temperature
        heads = tuple(self.card.config.aux_heads)
        shown = findings_shown(self.card.inference, heads)
        self.finding_names = shown
        self._finding_cols = [heads.index(name) for name in shown]
        self.finding_auc = tuple(finding_auc(self.card.metrics, name) for name in shown)
        self.runtime = "torch"  # what runs the CNN: "torch" or "openvino"
        self._runner: CNNRunner = self._torch_cnn
        self._choose_runtime(requested_runtime(runtime, self.card.inference))

    def _choose_runtime(self, want: str) -> None:
        """Load the CNN's runtime; PyTorch where the other is missing or fails (one log line)."""
        label = f"{self.card.display_name}: CNN on"
        if want == "torch":
            log.info("%s PyTorch (%s; asked for)", label, self.precision)
            return
        why = ""
        if self.device.type != "cpu":
            why = f"the device is {self.device.type}"
        elif self.precision not in ("fp32", "bf16"):
            why = f"precision {self.precision}"
        elif want == "auto" and not openvino_available():
            why = "OpenVINO is not installed (pip install 'lusviewer[fast]')"
        if not why:
            try:
                runner = OpenVINORunner(
                    self.model.cnn, self.card.config, weights_sha256=self.card.sha256, precision=self.precision
                )
            except Exception as exc:  # RuntimeUnavailable, or anything the runtime raised
                why = f"OpenVINO failed: {exc}"
            else:
                self.runtime, self._runner = "openvino", runner
                how = "converted and cached" if runner.converted else "from the cache"
                log.info("%s OpenVINO (%s; %s in %s)", label, self.precision, how, runner.cache_path)
                return
        level = logging.WARNING if want == "openvino" or why.startswith("OpenVINO failed") else logging.INFO
        log.log(level, "%s PyTorch (%s; %s)", label, self.precision, why)

    @property
    def description(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        return f"{name} ({self.precision}, OpenVINO)" if self.runtime == "openvino" else f"{name} ({self.precision})"

    def _torch_cnn(self, x: torch.Tensor) -> CNNOutput:
        with self._autocast():
            out: CNNOutput = self.model.cnn(x)
        return out

    def _run_cnn(self, x: torch.Tensor) -> CNNOutput:
        if self.runtime == "torch":
            return self._torch_cnn(x)
        try:
            return self._runner(x)
        except Exception as exc:  # the optional runtime broke mid-job: PyTorch from here on
            log.warning("%s: OpenVINO failed (%s); the CNN runs on PyTorch from now on", self.card.display_name, exc)
            self.runtime, self._runner = "torch", self._torch_cnn
            return self._torch_cnn(x)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def clip_sector(self, clip: str | ClipReader) -> Sector | None:
        """The sector this engine crops a clip's frames to (found on its first
        :data:`~lusviewer.model.preprocess.SECTOR_FRAMES` frames, as :meth:`score_clip`
        finds it), or None where the card resizes the whole frame. For overlays asked
        for before the clip's result is in."""
        if self.crop != "sector":
            return None
        reader = open_clip(clip) if isinstance(clip, str) else clip
        try:
            sector, _ = model_frames(reader.iter_frames(), self.input_size, "sector", error=_clip_error(reader))
        finally:
            if isinstance(clip, str):
                reader.close()
        if sector is None:
            raise ClipError(reader.info.path, "no frame could be decoded")
        return sector

    def _batches(self, reader: ClipReader, cancel: threading.Event | None, found: list[Sector]) -> Iterator[np.ndarray]:
        """Model-input uint8 batches, decoded one batch ahead on a helper thread. With a
        sector card, the sector is appended to ``found`` before the first batch."""
        q: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce() -> None:
            try:
                sector, frames = model_frames(
                    reader.iter_frames(), self.input_size, self.crop, error=_clip_error(reader)
                )
                if stop.is_set():
                    return
                if sector is not None:
                    found.append(sector)
                buf: list[np.ndarray] = []
                for _, small in frames:
                    if stop.is_set():
                        return
                    buf.append(small)
                    if len(buf) == self.batch_size:
                        q.put(np.stack(buf))
                        buf = []
                if buf:
                    q.put(np.stack(buf))
                q.put(None)
            except BaseException as exc:  # handed to the consumer, re-raised there
                q.put(exc)

        t = threading.Thread(target=produce, name="lusviewer-decode", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
        finally:
            stop.set()
            while t.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    q.get(timeout=0.05)
            t.join()

    def _softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from logits, with the card's calibration temperature."""
        z = logits.float()
        if self.temperature != 1.0:  # a card without one: the very same numbers as before
            z = z / self.temperature
        return torch.softmax(z, 1)

    @torch.inference_mode()
    def _cnn(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray | None]:
        x = to_model_input(batch, self.device)
        out = self._run_cnn(x)
        probs = self._softmax(out.logits).cpu()
        feats = out.features.float()  # stays on the device: the LSTM reads it there
        if out.reconstruction is None:
            err = np.full(len(batch), np.nan, dtype=np.float32)
        else:
            err = (out.reconstruction.float() - x).abs().mean((1, 2, 3)).cpu().numpy().astype(np.float32)
        found = None
        if self._finding_cols and out.aux is not None:  # no temperature: it calibrates the scores only
            found = torch.sigmoid(out.aux[:, self._finding_cols].float()).cpu().numpy().astype(np.float32)
        return probs, feats, err, found

    def frame_scores(self, probs: np.ndarray) -> np.ndarray:
        """Frame scores as this engine's clip rule reads them (:func:`report.aggregate.frame_scores`)."""
        return frame_scores(probs, self.rule, self.thresholds)

    def summarize(self, scores: np.ndarray, probs: np.ndarray, fps: float) -> ClipSummary:
        """The clip score by this engine's rule and thresholds (the engine and the folder scorer)."""
        return summarize_clip(scores, probs, fps=fps, rule=self.rule, thresholds=self.thresholds)

    def score_clip(
        self,
        clip: str | ClipReader,
        *,
        progress: Callable[[int, int], None] | None = None,
        on_frames: Callable[[ScoredFrames], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ClipResult:
        """Score every frame of a clip (a path or an open reader).

        ``progress(done, total)`` and ``on_frames(ScoredFrames)`` are called as
        frames become final; ``cancel`` is checked between batches (raises
        :class:`Cancelled`). Raises :class:`~lusviewer.io.ClipError` for bad input.
        """
        own = isinstance(clip, str)
        reader = open_clip(clip) if isinstance(clip, str) else clip
        try:
            return self._score(reader, str(clip) if own else reader.info.path, progress, on_frames, cancel)
        finally:
            if own:
                reader.close()

    def _score(
        self,
        reader: ClipReader,
        label: str,
        progress: Callable[[int, int], None] | None,
        on_frames: Callable[[ScoredFrames], None] | None,
        cancel: threading.Event | None,
    ) -> ClipResult:
        t0 = time.perf_counter()
        total = reader.info.frame_count
        seq = self.model.sequence
        streamer = SequenceStreamer(seq, window=self.window, burn_in=self.burn_in) if seq is not None else None
        probs_out: list[np.ndarray] = []
        errs: list[np.ndarray] = []
        pending_err: list[np.ndarray] = []
        shows = bool(self.finding_names)
        finds: list[np.ndarray] = []
        pending_find: list[np.ndarray] = []  # as pending_err: the findings of frames not yet final
        found: list[Sector] = []  # the decode thread's sector, before the first batch
        done = 0

        def emit(p: np.ndarray) -> None:
            nonlocal done
            n = len(p)
            buf = np.concatenate(pending_err)  # errors of frames not yet final, in order
            e = buf[:n]
            pending_err[:] = [buf[n:]] if len(buf) > n else []
            f = None
            if shows:
                fbuf = np.concatenate(pending_find)
                f = fbuf[:n]
                pending_find[:] = [fbuf[n:]] if len(fbuf) > n else []
                finds.append(f)
            probs_out.append(p)
            errs.append(e)
            if on_frames is not None:
                on_frames(ScoredFrames(done, p, self.frame_scores(p), e, found[0] if found else None, f))
            done += n
            if progress is not None:
                progress(done, total)

        if cancel is not None and cancel.is_set():
            raise Cancelled()
        for batch in self._batches(reader, cancel, found):
            probs, feats, err, frame_findings = self._cnn(batch)
            pending_err.append(err)
            if shows:
                assert frame_findings is not None  # the names shown are among the model's heads
                pending_find.append(frame_findings)
            if streamer is None:
                emit(probs.numpy())
            else:
                with torch.inference_mode():
                    logits = streamer.push(feats)
                if len(logits):
                    emit(self._softmax(logits).cpu().numpy())
        if streamer is not None:
            with torch.inference_mode():
                logits = streamer.flush()
            if len(logits):
                emit(self._softmax(logits).cpu().numpy())
        if not probs_out:
            raise ClipError(label, "no frame could be decoded")
        probs_all = np.concatenate(probs_out).astype(np.float32)
        scores = self.frame_scores(probs_all)
        # The frames decoded are the clip: the result says so when the count the reader
        # gave at the start was wrong (fewer frames than it promised: incomplete); the
        # readers that notice a clip ending early have already said so in reader.info.
        info = reader.info
        if len(scores) != total:
            info = replace(info, frame_count=len(scores), complete=info.complete and len(scores) > total)
        summary = self.summarize(scores, probs_all, info.fps)
        return ClipResult(
            info=info,
            clip=label,
            probs=probs_all,
            scores=scores,
            recon_error=np.concatenate(errs).astype(np.float32),
            summary=summary,
            model_name=self.card.display_name,
            weights_sha256=self.card.sha256,
            device=self.device.type,
            precision=self.precision,
            elapsed_s=time.perf_counter() - t0,
            extra={"runtime": self.runtime},
            recon_error_limit=self.recon_error_limit,
            sector=found[0] if found else None,
            findings=np.concatenate(finds).astype(np.float32) if shows else None,
            finding_names=self.finding_names,
            finding_auc=self.finding_auc,
        )

    @torch.inference_mode()
    def reconstruct(self, frame: np.ndarray, sector: Sector | None = None) -> np.ndarray | None:
        """Autoencoder reconstruction of one RGB frame at the frame's size (uint8).

        ``sector``: the clip's (:attr:`ClipResult.sector`, :meth:`clip_sector`), for a
        card that crops to it: the frame is cropped as for scoring and the reconstruction
        mapped back onto the sector; outside the sector it is the frame itself (the model
        never saw it: an error map is 0 there). None: the whole frame, resized."""
        if self.model.cnn.autoencoder is None:
            return None
        small = resize_frame(frame, self.input_size) if sector is None else sector.apply(frame, self.input_size)
        x = to_model_input(small[None], self.device)
        with self._autocast():
            rec = self.model.cnn.autoencoder(x).reconstruction
        img = (rec[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        if sector is None:
            size = (frame.shape[1], frame.shape[0])
            return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_LINEAR))
        out = sector.to_frame(np.ascontiguousarray(img))
        out[~sector.mask] = frame[~sector.mask]
        return out


def findings_shown(inference: dict[str, Any], heads: tuple[str, ...]) -> tuple[str, ...]:
    """The findings a card shows (``inference.findings_shown``), in its order, of those the
    model has heads for (:func:`~lusviewer.model.weights.check_card` refuses others)."""
    listed = inference.get("findings_shown") or ()
    if not isinstance(listed, list | tuple):
        return ()
    return tuple(str(name) for name in listed if name in heads)


def finding_auc(metrics: dict[str, Any], name: str) -> float | None:
    """``metrics.findings.<name>.auc`` of a card (free text for people), or None."""
    block = metrics.get("findings")
    entry = block.get(name) if isinstance(block, dict) else None
    auc = entry.get("auc") if isinstance(entry, dict) else None
    return float(auc) if isinstance(auc, int | float) and not isinstance(auc, bool) else None


def _clip_error(reader: ClipReader) -> Callable[[str], ClipError]:
    """What :func:`~lusviewer.model.preprocess.model_frames` raises for a clip's frames
    that no one sector fits: a :class:`ClipError` naming the clip."""
    path = reader.info.path
    return lambda reason: ClipError(path, reason)
