"""Scoring a folder of many clips at once, for a GPU: the frames of many clips share
each CNN batch.

:class:`ScoringEngine` scores one clip at a time; on a GPU that leaves it idle most of
the time (per-clip work: opening the clip, the first decode, short last batches, the
LSTM's windows, one kernel launch per module). :class:`FolderScorer` scores a list of
clips with the engine's model, precision and preprocessing, and gives each clip the
same :class:`~lusviewer.inference.engine.ClipResult` (frame i is frame i), but:

* **Decoding in a pool of processes** (``spawn``; ``workers`` of them). Each worker
  decodes whole clips, preprocesses their frames exactly as the engine does (the card's
  sector crop included: the sector is found on the clip's first
  :data:`~lusviewer.model.preprocess.SECTOR_FRAMES` frames) and sends them back in
  chunks of ``chunk_frames`` frames through a bounded queue: at most about
  ``queue_chunks`` chunks wait, so memory stays flat whatever the clips' lengths.
* **One fixed batch shape** for the CNN: frames of several clips fill each batch of
  ``batch_size``; the last batch is padded (eval-mode batch norm is per frame: padding
  changes nothing). On CUDA the batch is assembled in pinned memory and copied with
  ``non_blocking``; the CNN runs as a captured CUDA graph (``capture="graph"``) or
  through ``torch.compile(mode="reduce-overhead")`` (``capture="compile"``), falling
  back to eager with one warning line where that fails. The outputs of batch i are
  copied back while batch i + 1 runs.
* **The LSTM per clip**, on that clip's CNN features in frame order, with the engine's
  stateless windows (:class:`~lusviewer.inference.sequence.SequenceStreamer`): every
  window is independent, so the windows of several finished clips run as one padded
  LSTM batch (right padding does not change a unidirectional LSTM's earlier outputs).

A clip that cannot be read is named in one line (the engine's words) and the others
carry on; a clip that fails part-way is never scored in part. Results come back in the
order of the clips given. On the CPU this path is not faster than the engine (the CNN is
the bottleneck there); ``lusviewer score`` uses it on CUDA, or when asked
(``--batch-clips``).

The decoding processes, their messages and their stopping live in
:mod:`lusviewer.inference.folder_decode`; this module batches, runs the model and
assembles each clip's result.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from lusviewer.inference.engine import Cancelled, ClipResult, ScoringEngine
from lusviewer.inference.folder_decode import (
    _END,
    _ERROR,
    _EXIT,
    _FRAMES,
    _START,
    _decode_worker,
    _end_processes,
)
from lusviewer.io import ClipInfo
from lusviewer.model.hybrid import SequenceHead
from lusviewer.model.preprocess import Sector

log = logging.getLogger("lusviewer.folder")

CAPTURES = ("auto", "graph", "compile", "eager")
#: The smallest CNN batch on CUDA when none is given (the engine's default, 32, leaves a GPU idle).
CUDA_BATCH = 256


@dataclass
class ClipOutcome:
    """One clip of a folder: its result, or the one line saying why it has none."""

    index: int
    path: str
    result: ClipResult | None
    error: str | None = None
    # (level, message) of what the readers logged (logger ``lusviewer``) while decoding it
    logs: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class FolderStats:
    """What a run did, for benchmarks and tests."""

    frames: int = 0
    batches: int = 0
    padded_frames: int = 0
    capture: str = "eager"  # what the CNN ran as
    # most frames ever decoded but not yet through the CNN (chunking bounds it)
    peak_frames_in_flight: int = 0
    worker_pids: list[int] = field(default_factory=list)
    wall_s: float = 0.0


# --- the windowed LSTM over many clips at once ---------------------------------------


def window_logits(
    head: SequenceHead,
    feats: Sequence[torch.Tensor],
    *,
    window: int,
    burn_in: int,
    max_windows: int = 512,
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """Per-frame LSTM logits of each clip's (T, F) features, as
    :func:`~lusviewer.inference.sequence.sequence_logits` gives them clip by clip: each
    chunk of ``window - burn_in`` frames is run with the ``burn_in`` frames before it
    through a fresh LSTM, and only the chunk's outputs are kept. The windows of all the
    clips run together, ``max_windows`` at a time, right-padded to one length; they are
    assembled where the features are and run on ``device`` (default: there too), so
    features on the CPU cross to a GPU in one copy per group."""
    if not 0 <= burn_in < window:
        raise ValueError("need 0 <= burn_in < window")
    stride = window - burn_in
    wins: list[tuple[int, int, int, int]] = []  # clip, first frame fed, end, first frame kept
    for c, f in enumerate(feats):
        t = int(f.shape[0])
        for s in range(0, t, stride):
            wins.append((c, max(0, s - burn_in), min(t, s + stride), s))
    pieces: list[list[torch.Tensor]] = [[] for _ in feats]
    for w0 in range(0, len(wins), max_windows):
        group = wins[w0 : w0 + max_windows]
        length = max(b - a for _, a, b, _ in group)
        ref = feats[group[0][0]]
        x = ref.new_zeros((len(group), length, ref.shape[1]), dtype=torch.float32)
        for j, (c, a, b, _) in enumerate(group):
            x[j, : b - a] = feats[c][a:b]
        logits, _ = head(x if device is None else x.to(device, non_blocking=True))
        for j, (c, a, b, s) in enumerate(group):
            pieces[c].append(logits[j, s - a : b - a])
    n_classes = head.fc.out_features
    return [torch.cat(p) if p else head.fc.weight.new_zeros((0, n_classes)) for p in pieces]


# --- the scorer ---------------------------------------------------------------------


@dataclass
class _Batch:
    slot: int
    n: int = 0
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # clip, offset in batch, count
    events: list[tuple[Any, ...]] = field(default_factory=list)  # messages to apply after its frames
    decoded: int = 0  # frames decoded by all workers when this batch was handed over
    last: bool = False


@dataclass
class _Clip:
    total: int = 0
    info: ClipInfo | None = None
    sector: Sector | None = None
    probs: list[np.ndarray] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)
    errs: list[np.ndarray] = field(default_factory=list)
    finds: list[np.ndarray] = field(default_factory=list)
    logs: list[tuple[int, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)


class FolderScorer:
    """Scores many clips with one :class:`ScoringEngine`'s model, frames of several clips
    batched together (see the module's description). One run at a time."""

    def __init__(
        self,
        engine: ScoringEngine,
        *,
        batch_size: int | None = None,
        workers: int = 0,
        chunk_frames: int = 64,
        queue_chunks: int = 0,
        capture: str = "auto",
        lstm_windows: int = 256,
    ) -> None:
        if capture not in CAPTURES:
            raise ValueError(f"unknown capture {capture!r}; expected one of {CAPTURES}")
        self.engine = engine
        self.device = engine.device
        self.cuda = self.device.type == "cuda"
        # frames of many clips: a large batch costs no latency on a GPU (not yet measured there)
        self.batch_size = int(batch_size or (max(engine.batch_size, CUDA_BATCH) if self.cuda else engine.batch_size))
        if self.batch_size < 1 or chunk_frames < 1:
            raise ValueError("batch_size and chunk_frames must be >= 1")
        cores = os.cpu_count() or 1
        self.workers = workers if workers > 0 else max(1, min(16, cores - 1 if self.cuda else cores))
        self.chunk_frames = chunk_frames
        self.queue_chunks = queue_chunks if queue_chunks > 0 else 2 * self.workers + 2
        self.capture = ("graph" if self.cuda else "eager") if capture == "auto" else capture
        self.lstm_windows = lstm_windows
        self.size = engine.input_size
        self.stats = FolderStats()
        heads = tuple(engine.card.config.aux_heads)
        self._cols = [heads.index(n) for n in engine.finding_names]
        self._n_classes = int(engine.card.config.num_classes)
        self._feat_dim = int(engine.card.config.feature_dim)
        self._run: Callable[[torch.Tensor], torch.Tensor] | None = None  # uint8 batch on device -> packed

    # -- the CNN at one batch shape ----------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.engine.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.engine.precision == "bf16" else torch.float16
        # no weight-cast cache: a captured graph must not hold tensors freed after capture
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=False)

    def _forward(self, xb: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 on the device -> (B, C + F + 1 + nF) float32: the CNN's
        probabilities, features, reconstruction error and findings, as the engine's ``_cnn``."""
        x = xb.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.engine.model.cnn(x)
        probs = self.engine._softmax(out.logits)
        feats = out.features.float()
        if out.reconstruction is None:
            err = torch.full((x.shape[0], 1), float("nan"), device=x.device)
        else:
            err = (out.reconstruction.float() - x).abs().mean((1, 2, 3))[:, None]
        parts = [probs, feats, err]
        if self._cols and out.aux is not None:
            parts.append(torch.sigmoid(out.aux[:, self._cols].float()))
        return torch.cat(parts, 1)

    def _build(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The CNN step for this run: a CUDA graph, compiled, or eager (the fallback)."""
        if self._run is not None:
            return self._run
        eager = torch.inference_mode()(self._forward)
        run: Callable[[torch.Tensor], torch.Tensor] = eager
        chosen = "eager"
        if self.capture != "eager":
            if not self.cuda and self.capture == "graph":
                log.warning("CUDA graphs need a CUDA device: the CNN runs eagerly")
            else:
                try:
                    run = self._graph() if self.capture == "graph" else self._compiled()
                    chosen = self.capture
                except Exception as exc:  # any failure to capture: eager, said once
                    logging.getLogger("lusviewer").warning(
                        f"the CNN could not be run as a {self.capture} ({type(exc).__name__}: {exc}); it runs eagerly"
                    )
                    run = eager
        self.stats.capture = chosen
        self._run = run
        return run

    def _graph(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # one shape: the fastest kernels, chosen once
        static_in = torch.zeros((self.batch_size, self.size, self.size, 3), dtype=torch.uint8, device=self.device)
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm-up: kernel selection, workspaces
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = self._forward(static_in)

        def replay(xb: torch.Tensor) -> torch.Tensor:
            static_in.copy_(xb, non_blocking=True)
            graph.replay()
            return static_out

        self._graph_keep = (graph, static_in, static_out)
        return replay

    def _compiled(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        fn = torch.compile(self._forward, mode="reduce-overhead", dynamic=False, fullgraph=False)
        probe = torch.zeros((self.batch_size, self.size, self.size, 3), dtype=torch.uint8, device=self.device)
        with torch.inference_mode():
            for _ in range(3):  # compiles now (counted in the run's time), not on the first clip
                fn(probe)

        def call(xb: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return fn(xb).clone()  # type: ignore[no-any-return]

        return call

    # -- the run -----------------------------------------------------------------------

    def score(
        self, clips: Sequence[str], *, cancel: threading.Event | None = None
    ) -> Generator[ClipOutcome, None, None]:
        """Each clip's :class:`ClipOutcome`, in the order given. Closing the iterator early
        (``break``, an exception) or setting ``cancel`` (raises :class:`Cancelled`) stops
        the workers; no process is left behind."""
        t0 = time.perf_counter()
        self.stats = FolderStats()
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if not clips:
            return
        ctx = mp.get_context("spawn")
        tasks: Any = ctx.Queue()
        out: Any = ctx.Queue(maxsize=self.queue_chunks)
        stop: Any = ctx.Event()
        n_workers = min(self.workers, len(clips))
        for i, path in enumerate(clips):
            tasks.put((i, str(path)))
        for _ in range(n_workers):
            tasks.put(None)
        crop = "sector" if self.engine.crop == "sector" else "none"
        procs = [
            ctx.Process(
                target=_decode_worker,
                args=(w, tasks, out, stop, crop, self.size, self.chunk_frames),
                name=f"lusviewer-decode-{w}",
                daemon=True,
            )
            for w in range(n_workers)
        ]
        slots = 3
        pin = self.cuda
        bufs = [
            torch.empty((self.batch_size, self.size, self.size, 3), dtype=torch.uint8, pin_memory=pin)
            for _ in range(slots)
        ]
        free: queue.Queue[int] = queue.Queue()
        for s in range(slots):
            free.put(s)
        ready: queue.Queue[_Batch | BaseException] = queue.Queue(maxsize=slots - 1)
        quit_ = threading.Event()
        assembler = threading.Thread(
            target=self._assemble,
            args=(out, n_workers, bufs, free, ready, quit_, procs),
            name="lusviewer-assemble",
            daemon=True,
        )
        try:
            for p in procs:
                p.start()
            self.stats.worker_pids = [p.pid for p in procs if p.pid is not None]
            run = self._build()  # (graph capture, compiling) while the workers start
            assembler.start()
            yield from self._compute(clips, run, bufs, free, ready, cancel)
        finally:
            quit_.set()
            stop.set()
            while assembler.is_alive():  # unblock an assembler waiting on a full hand-over
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.05)
                free.put(0)
            if assembler.ident is not None:
                assembler.join()
            _end_processes(procs, out)
            for q in (tasks, out):
                q.cancel_join_thread()
                q.close()
            self.stats.wall_s = time.perf_counter() - t0

    def _assemble(
        self,
        out: Any,
        n_workers: int,
        bufs: list[torch.Tensor],
        free: queue.Queue[int],
        ready: queue.Queue[_Batch | BaseException],
        quit_: threading.Event,
        procs: list[Any],
    ) -> None:
        """Parent thread: worker messages -> full batches (pinned) with their clip events."""
        try:
            exited = 0
            decoded: dict[int, int] = {}  # frames each worker has sent so far
            batch = _Batch(free.get())
            pending: tuple[int, np.ndarray] | None = None  # (clip, frames) not yet in a batch
            while True:
                if quit_.is_set():
                    return
                if pending is None:
                    if exited == n_workers:
                        break
                    try:
                        msg = out.get(timeout=0.2)
                    except queue.Empty:
                        dead = [p for p in procs if p.exitcode not in (None, 0)]
                        if dead:
                            raise RuntimeError(
                                f"a decode process ended unexpectedly (exit code {dead[0].exitcode})"
                            ) from None
                        continue
                    kind = msg[0]
                    if kind == _EXIT:
                        exited += 1
                        continue
                    if kind == _FRAMES:
                        pending = (msg[1], msg[2])
                        decoded[msg[3]] = int(msg[4])
                        continue
                    batch.events.append(msg)
                    continue
                clip, frames = pending
                take = min(len(frames), self.batch_size - batch.n)
                bufs[batch.slot][batch.n : batch.n + take].numpy()[:] = frames[:take]
                batch.segments.append((clip, batch.n, take))
                batch.n += take
                pending = (clip, frames[take:]) if take < len(frames) else None
                if batch.n == self.batch_size:
                    batch.decoded = sum(decoded.values())
                    ready.put(batch)
                    batch = _Batch(free.get())
            batch.last = True
            batch.decoded = sum(decoded.values())
            ready.put(batch)
        except BaseException as exc:  # handed to the compute loop, raised there
            ready.put(exc)

    def _compute(
        self,
        clips: Sequence[str],
        run: Callable[[torch.Tensor], torch.Tensor],
        bufs: list[torch.Tensor],
        free: queue.Queue[int],
        ready: queue.Queue[_Batch | BaseException],
        cancel: threading.Event | None,
    ) -> Iterator[ClipOutcome]:
        state: dict[int, _Clip] = {}
        finished: list[int] = []  # CNN done, LSTM not yet
        done: dict[int, ClipOutcome] = {}
        next_out = 0
        scored = 0
        width = self._n_classes + self._feat_dim + 1 + len(self._cols)
        host = [torch.empty((self.batch_size, width), dtype=torch.float32, pin_memory=self.cuda) for _ in bufs]
        inflight: tuple[_Batch, torch.cuda.Event | None] | None = None
        while True:
            item = ready.get()
            if isinstance(item, BaseException):
                raise item
            batch = item
            event = None
            if batch.n:  # launch this batch; the previous one's outputs are read meanwhile
                x = bufs[batch.slot].to(self.device, non_blocking=True)
                packed = run(x)
                host[batch.slot].copy_(packed, non_blocking=True)
                if self.cuda:
                    event = torch.cuda.Event()  # type: ignore[no-untyped-call]
                    event.record()
                self.stats.batches += 1
                self.stats.padded_frames += self.batch_size - batch.n
            if inflight is not None:
                scored += self._collect(inflight, host, free, state, finished, done)
                self.stats.frames = scored
            inflight = (batch, event)
            self.stats.peak_frames_in_flight = max(self.stats.peak_frames_in_flight, batch.decoded - scored)
            if batch.last:
                scored += self._collect(inflight, host, free, state, finished, done)
                self.stats.frames = scored
                inflight = None
            if finished and (batch.last or self._windows(state, finished) >= self.lstm_windows):
                self._sequence(state, finished, done)
            while next_out in done:
                outcome = done.pop(next_out)
                outcome.path = outcome.path or str(clips[next_out])
                yield outcome
                next_out += 1
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if batch.last:
                break
        for i in range(next_out, len(clips)):  # every clip ends or fails: a lost one would be a bug, said so
            got = done.pop(i, None)
            yield got or ClipOutcome(i, str(clips[i]), None, f"{clips[i]}: no result came back from decoding")

    def _collect(
        self,
        inflight: tuple[_Batch, torch.cuda.Event | None],
        host: list[torch.Tensor],
        free: queue.Queue[int],
        state: dict[int, _Clip],
        finished: list[int],
        done: dict[int, ClipOutcome],
    ) -> int:
        """A launched batch's outputs into its clips' state, then its clip events."""
        batch, event = inflight
        if event is not None:
            event.synchronize()
        c, f = self._n_classes, self._feat_dim
        if batch.n:
            rows = host[batch.slot][: batch.n].numpy().copy()
        free.put(batch.slot)
        for msg in batch.events:  # a clip's start precedes its frames in the batch
            if msg[0] == _START:
                state[msg[1]] = _Clip(sector=msg[2], total=int(msg[3]))
        for clip, off, n in batch.segments:
            st = state.get(clip)
            if st is None:  # a clip already failed
                continue
            r = rows[off : off + n]
            st.probs.append(r[:, :c])
            st.feats.append(r[:, c : c + f])
            st.errs.append(r[:, c + f])
            if self._cols:
                st.finds.append(r[:, c + f + 1 :])
        for msg in batch.events:
            kind, i = msg[0], msg[1]
            if kind == _END:
                st = state.get(i)
                if st is not None:
                    st.logs.extend(msg[3])
                    st.info = msg[2]
                    finished.append(i)
            elif kind == _ERROR:
                st = state.pop(i, None)
                done[i] = ClipOutcome(i, "", None, msg[2], (st.logs if st else []) + list(msg[3]))
        return batch.n

    def _windows(self, state: dict[int, _Clip], finished: list[int]) -> int:
        stride = self.engine.window - self.engine.burn_in
        return sum(-(-sum(len(p) for p in state[i].probs) // stride) for i in finished)

    @torch.inference_mode()
    def _sequence(self, state: dict[int, _Clip], finished: list[int], done: dict[int, ClipOutcome]) -> None:
        """The finished clips' LSTM (their windows together), then their results."""
        eng = self.engine
        seq = eng.model.sequence
        logits: list[torch.Tensor | None] = [None] * len(finished)
        if seq is not None:
            feats = [torch.from_numpy(np.concatenate(state[i].feats)) for i in finished if state[i].feats]
            windows = window_logits(
                seq, feats, window=eng.window, burn_in=eng.burn_in, max_windows=self.lstm_windows, device=self.device
            )
            outs = iter(windows)
            logits = [next(outs) if state[i].feats else None for i in finished]
        for i, lg in zip(finished, logits, strict=True):
            st = state.pop(i)
            done[i] = self._result(i, st, None if lg is None else eng._softmax(lg).cpu().numpy())
        finished.clear()

    def _result(self, i: int, st: _Clip, lstm_probs: np.ndarray | None) -> ClipOutcome:
        """The clip's result, as ``ScoringEngine._score`` builds it."""
        from lusviewer.io import ClipError

        eng = self.engine
        info = st.info
        assert info is not None  # set by the clip's end message
        label = info.path
        if not st.probs:
            return ClipOutcome(i, label, None, str(ClipError(label, "no frame could be decoded")), st.logs)
        probs_all = (np.concatenate(st.probs) if lstm_probs is None else lstm_probs).astype(np.float32)
        scores = eng.frame_scores(probs_all)
        if len(scores) != st.total:
            info = replace(info, frame_count=len(scores), complete=info.complete and len(scores) > st.total)
        summary = eng.summarize(scores, probs_all, info.fps)
        result = ClipResult(
            info=info,
            clip=label,
            probs=probs_all,
            scores=scores,
            recon_error=np.concatenate(st.errs).astype(np.float32),
            summary=summary,
            model_name=eng.card.display_name,
            weights_sha256=eng.card.sha256,
            device=eng.device.type,
            precision=eng.precision,
            elapsed_s=time.perf_counter() - st.t0,
            recon_error_limit=eng.recon_error_limit,
            sector=st.sector,
            findings=np.concatenate(st.finds).astype(np.float32) if eng.finding_names else None,
            finding_names=eng.finding_names,
            finding_auc=eng.finding_auc,
        )
        return ClipOutcome(i, label, result, None, st.logs)
