"""The generated bad-input corpus (tests/corpus.py) through the clip readers.

Every case is opened with ``open_clip`` and read to the end (in order, then a few
frames by index) in a child process, so a native crash or a hang names its case
instead of ending the test run. Wanted: 0 crashes, 0 hangs, 0 exceptions other than
ClipError, every intact clip read whole and frame-accurate by content, and every
clip that yields fewer frames than it was made with marked ``complete=False`` (or
refused with a ClipError).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from corpus import Case, frame_index, reader_corpus, run_isolated

ROOT = Path(__file__).resolve().parent.parent


def check_reader(case: Case) -> dict[str, object]:
    """Open and read one case; what happened, as plain data."""
    from lusviewer.io import ClipError, open_clip

    wrong: list[int] = []
    try:
        with open_clip(case.path) as clip:
            n = 0
            for i, f in enumerate(clip.iter_frames()):
                if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                    return {"outcome": "bad frame", "shape": list(f.shape), "dtype": str(f.dtype)}
                if case.indexed and frame_index(f) != i:
                    wrong.append(i)
                n += 1
            info = clip.info
            picks = sorted({n - 1, 0, n // 2, max(0, n - 13), min(n - 1, 12)}, reverse=True) if n else []
            for i in picks:
                f = clip.frame(i)
                if case.indexed and frame_index(f) != i:
                    wrong.append(i)
    except ClipError as exc:
        return {"outcome": "clip_error", "message": str(exc), "path": exc.path}
    return {
        "outcome": "read",
        "frames": n,
        "frame_count": info.frame_count,
        "complete": info.complete,
        "header": info.header_frame_count,
        "fps": info.fps,
        "wrong": wrong[:10],
    }


def test_reader_corpus(tmp_path: Path) -> None:
    cases = reader_corpus(tmp_path / "corpus")
    assert len(cases) >= 300, len(cases)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    results = run_isolated(cases, "test_corpus_io:check_reader", timeout_s=30, env=env, cwd=str(ROOT / "tests"))
    problems = []
    for case in cases:
        r = results.get(case.name, {"outcome": "missing"})
        what = r["outcome"]
        if what == "clip_error":
            msg = str(r["message"])
            if not msg.isprintable() or "\n" in msg:
                problems.append(f"{case.name}: message not one printable line: {msg!r}")
            if case.intact:
                problems.append(f"{case.name}: intact clip refused: {msg}")
            continue
        if what != "read":
            problems.append(f"{case.name}: {what} {r}")
            continue
        n = int(r["frames"])  # type: ignore[call-overload]
        if n != r["frame_count"]:
            problems.append(f"{case.name}: read {n} frames, frame_count says {r['frame_count']}")
        fps = float(r["fps"])  # type: ignore[arg-type]
        if not (math.isfinite(fps) and fps > 0):
            problems.append(f"{case.name}: fps {fps}")
        if r["wrong"]:
            problems.append(f"{case.name}: frames not where they belong (by content): {r['wrong']}")
        if case.frames is not None and n < case.frames and r["complete"]:
            problems.append(f"{case.name}: {n} of {case.frames} frames read, but complete=True (silent partial)")
        if case.intact and (n != case.frames or not r["complete"]):
            problems.append(f"{case.name}: intact clip read {n} of {case.frames} frames, complete={r['complete']}")
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
