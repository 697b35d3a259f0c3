"""What the Keras server and lusviewer's side of ``benchmarks/keras_side_by_side.py`` share.

Standard library and numpy only: this module is imported both in the TensorFlow
virtual environment (``benchmarks/keras/hybrid_keras.py --serve``) and in lusviewer's
environment, so that the two frameworks are timed by the very same loop
(:func:`time_batches`) and talk over one definition of the protocol.

Protocol: one JSON object a line. The client writes a request on the server's stdin
and reads exactly one reply line from its stdout; every reply has ``"ok"`` (and
``"error"``, one line, where it is false). Frames travel as a ``.npy`` file of uint8
(N, S, S, 3) RGB frames, named in the ``setup`` request.

    {"cmd": "setup", "frames": PATH, "threads": 2, "variants": ["fp32", ...], "batches": [1, 8, 32]}
    {"cmd": "bench", "variant": "fp32", "batch": 8, "min_frames": 32, "min_seconds": 3.0}
        -> {"ok": true, "frames": 40, "seconds": 3.1, "fps": 12.9}
    {"cmd": "quit"}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np

#: The Keras variants the server knows: (name, mixed_bfloat16 policy, XLA jit_compile).
KERAS_VARIANTS: dict[str, tuple[bool, bool]] = {
    "fp32": (False, False),
    "fp32-xla": (False, True),
    "bf16": (True, False),
    "bf16-xla": (True, True),
}


class ProtocolError(Exception):
    """The other side said something that is not a reply of this protocol, or nothing."""


def send(stream: IO[str], obj: dict[str, Any]) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def recv(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise EOFError("the other side closed the stream")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        raise ProtocolError(f"not a JSON line: {line.strip()[:200]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"not a JSON object: {line.strip()[:200]!r}")
    return obj


def serve(handler: Callable[[dict[str, Any]], dict[str, Any]], fin: IO[str], fout: IO[str]) -> None:
    """Answer requests until ``quit`` or the end of ``fin``. A request that fails gets
    ``{"ok": false, "error": "..."}`` and the server goes on."""
    while True:
        try:
            req = recv(fin)
        except EOFError:
            return
        except ProtocolError as exc:
            send(fout, {"ok": False, "error": str(exc)})
            continue
        if req.get("cmd") == "quit":
            send(fout, {"ok": True})
            return
        try:
            reply = handler(req)
        except Exception as exc:  # one line back to the client; the server stays up
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        send(fout, reply)


def batches_of(frames: np.ndarray, batch: int) -> list[np.ndarray]:
    """The frames cut into whole batches, in order; tiled when there are fewer than ``batch``."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    if len(frames) == 0:
        raise ValueError("no frames")
    if len(frames) < batch:
        frames = np.concatenate([frames] * -(-batch // len(frames)))
    return [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]


def time_batches(
    run: Callable[[np.ndarray], object],
    frames: np.ndarray,
    batch: int,
    *,
    min_frames: int,
    min_seconds: float,
    warmup: int = 1,
) -> tuple[int, float]:
    """Run ``run`` on consecutive batches of ``frames`` (cycling) until at least
    ``min_frames`` frames and ``min_seconds`` seconds; ``warmup`` batches first, untimed.
    Returns (frames, seconds)."""
    chunks = batches_of(frames, batch)
    for i in range(warmup):
        run(chunks[i % len(chunks)])
    n, k = 0, 0
    t0 = time.perf_counter()
    while True:
        run(chunks[k % len(chunks)])
        n += batch
        k += 1
        dt = time.perf_counter() - t0
        if n >= min_frames and dt >= min_seconds:
            return n, dt


def bench_request(variant: str, batch: int, min_frames: int, min_seconds: float) -> dict[str, Any]:
    return {"cmd": "bench", "variant": variant, "batch": batch, "min_frames": min_frames, "min_seconds": min_seconds}


def bench_reply(frames: int, seconds: float) -> dict[str, Any]:
    return {"ok": True, "frames": frames, "seconds": seconds, "fps": frames / seconds}
