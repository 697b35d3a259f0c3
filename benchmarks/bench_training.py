"""Stage-1 training speed, old code against new, side by side in one run.

    python benchmarks/bench_training.py [--old-ref main] [--cases ROW:PRECISION:THREADS,...]
        [--steps 6] [--rounds 2] [--hybrid-batch 16] [--data DIR]

The old path is the package as it is at ``--old-ref`` (``git archive`` into a temporary
folder); the new one is this checkout. Each measurement is one subprocess running
:func:`lusviewer.training.stages.train_cnn` for one epoch of ``--steps`` batches on
the first clips of COVID-BLUeS (``../shared/data/covid-blues``, decoded into a frame
cache under the temporary folder; synthetic frames where the data is absent), without
validation. Frames/s are those the progress bar reports at the end of the epoch (the
first step, with its kernel set-up, included). Old and new alternate, row by row and
round by round, so that both see the same load on a shared machine; the table gives
the median of the rounds and the ratio.

Rows (the recipes of issue 18):

* ``compact64``: the compact CNN, 64 px, width 0.5, batch 32, 6 frames a clip, AdamW
  lr 0.001, SORD loss, sector crop, auxiliary findings' heads weighted 0.5 (the lead's
  cross-validation recipe);
* ``hybrid64`` / ``hybrid128``: the paper's hybrid CNN (stage 1 of ``cnn_lstm``), batch
  ``--hybrid-batch`` (default 16: the 128 px one runs about 1 frame/s on one busy core),
  Adam (the paper's), frame loss, 16 frames a clip.

``--cases``: row, precision (``bf16`` autocast or ``fp32``) and threads: ``default``
leaves the thread count to the code (old: torch's default, one per core; new:
``--threads 0``, timed as it trains); a number pins it in both. ``--steps``: batches
of the compact row; the 64 px hybrid runs half as many, the 128 px one a third.
The losses of every step are compared where old and new ran with the same pinned
thread count (same seed, same frames).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "covid-blues"

ROWS: dict[str, dict[str, Any]] = {
    "compact64": {
        "variant": "compact",
        "input_size": 64,
        "width": 0.5,
        "frames_per_clip": 6,
        "optimizer": "adamw",
        "lr": 0.001,
        "batch_size": 32,
        "loss": "sord",
        "crop": "sector",
        "aux_weight": 0.5,
    },
    "hybrid64": {"variant": "cnn", "input_size": 64, "frames_per_clip": 16},
    "hybrid128": {"variant": "cnn", "input_size": 128, "frames_per_clip": 16},
}


#: The default cases: the compact recipe in both precisions, the hybrid in bf16 (its
#: default), each with the threads left to the code and pinned to one.
CASES = (
    "compact64:bf16:default",
    "compact64:bf16:1",
    "compact64:fp32:default",
    "compact64:fp32:1",
    "hybrid64:bf16:default",
    "hybrid64:bf16:1",
    "hybrid128:bf16:default",
)


def _worker(args: argparse.Namespace) -> None:
    """One measurement, in a process whose ``sys.path`` starts with the code under test."""
    sys.path.insert(0, args.tree)
    import numpy as np
    import torch

    from lusviewer.model.hybrid import HybridModel
    from lusviewer.training import stages
    from lusviewer.training.config import TrainConfig, model_config
    from lusviewer.training.data import LabelledClip, cached_frames, load_covid_blues
    from lusviewer.training.loop import RunState

    assert stages.__file__.startswith(args.tree), stages.__file__
    settings = {**json.loads(args.settings), "val_fraction": 0.0, "cnn_epochs": 1, "cnn_minutes": 60.0}
    if args.threads:
        torch.set_num_threads(args.threads)  # as run_training does with --threads N
    work = Path(args.work)
    cfg = TrainConfig(data=args.data or "synthetic", out=str(work / "out"), work_dir=str(work), **settings)
    cfg.threads = args.threads
    cfg.bf16 = args.precision == "bf16"
    n_clips = -(-args.steps * cfg.batch_size // cfg.frames_per_clip)  # one epoch of `steps` batches
    if args.data:
        clips = load_covid_blues(args.data)[:n_clips]
        frames = {c.path: cached_frames(c.path, cfg.input_size, args.cache, cfg.crop) for c in clips}
    else:
        rng = np.random.default_rng(0)
        clips = [LabelledClip(f"synthetic_{i}", i % 4, str(i), findings=(i % 2, 1)) for i in range(n_clips)]
        frames = {c.path: rng.integers(0, 255, (40, cfg.input_size, cfg.input_size, 3), np.uint8) for c in clips}
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = HybridModel(model_config(cfg))
    losses: list[float] = []
    step = stages.optimizer_step  # type: ignore[attr-defined]

    def recording(opt: Any, loss: Any, module: Any, *, max_norm: float) -> None:
        losses.append(float(loss.detach()))
        step(opt, loss, module, max_norm=max_norm)

    stages.optimizer_step = recording  # type: ignore[attr-defined]
    bar = io.StringIO()
    t0 = time.time()
    with contextlib.redirect_stderr(bar):
        stages.train_cnn(stages.StageRun(cfg, model, clips, [], frames, work, RunState(work)))
    wall = time.time() - t0
    fps = re.findall(r"fps=([0-9.]+)", bar.getvalue())
    if not fps:
        raise SystemExit(f"no fps in the progress bar's output: {bar.getvalue()[-500:]!r}")
    # the thread count of the last step: the new bar names it, the old one ran on torch's
    threads = re.findall(r"thr=([0-9]+)", bar.getvalue())
    used = int(threads[-1]) if threads else torch.get_num_threads()
    print(json.dumps({"fps": float(fps[-1]), "losses": losses, "wall_s": wall, "threads": used}))


def _old_tree(ref: str, into: Path) -> Path:
    """The package at git ``ref``, unpacked under ``into``."""
    tree = into / "old"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "lusviewer"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _measure(tree: Path, row: str, precision: str, threads: int, steps: int, data: str, tmp: Path) -> dict[str, Any]:
    settings = dict(ROWS[row])
    work = Path(tempfile.mkdtemp(dir=tmp))
    cmd = [sys.executable, __file__, "--worker", "--tree", str(tree), "--settings", json.dumps(settings)]
    cmd += ["--precision", precision, "--threads", str(threads), "--steps", str(steps), "--work", str(work)]
    cmd += ["--cache", str(tmp / "cache"), "--data", data]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
    shutil.rmtree(work, ignore_errors=True)
    if done.returncode:
        raise SystemExit(f"{row} {precision} threads={threads} in {tree}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-ref", default="main")
    ap.add_argument("--cases", default=",".join(CASES), help=f"ROW:PRECISION:THREADS,... (ROW one of {list(ROWS)})")
    ap.add_argument("--threads", default="0", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=6, help="batches of the compact row")
    ap.add_argument("--hybrid-batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=str(DATA) if DATA.is_dir() else "")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--tree", "--settings", "--precision", "--work", "--cache"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        _worker(args)
        return
    for row in ("hybrid64", "hybrid128"):
        ROWS[row]["batch_size"] = args.hybrid_batch
    cases = []
    for spec in args.cases.split(","):
        row, precision, t = spec.split(":")
        if row not in ROWS or precision not in ("bf16", "fp32"):
            raise SystemExit(f"--cases {spec!r}: expected ROW:PRECISION:THREADS, ROW one of {list(ROWS)}")
        cases.append((row, precision, 0 if t == "default" else int(t)))
    with tempfile.TemporaryDirectory(prefix="bench_training-") as tmp_name:
        tmp = Path(tmp_name)
        trees = {"old": _old_tree(args.old_ref, tmp), "new": ROOT}
        print(f"old: {args.old_ref} ({_rev(args.old_ref)}), new: this checkout ({_rev('HEAD')}, {_dirty()})")
        print(f"data: {args.data or 'synthetic frames'}; start: {_load()}", flush=True)
        got: dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]] = {}
        for r in range(args.rounds):
            for case in cases:
                row, precision, t = case
                steps = {"compact64": args.steps, "hybrid64": args.steps // 2, "hybrid128": args.steps // 3}[row]
                steps = max(2, steps)
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for which in order:
                    res = _measure(trees[which], row, precision, t, steps, args.data, tmp)
                    got.setdefault(case, {"old": [], "new": []})[which].append(res)
                    print(
                        f"  round {r + 1} {row} {precision} threads={t or 'default'} {which}: "
                        f"{res['fps']:.1f} frames/s ({len(res['losses'])} steps, {res['wall_s']:.0f} s; {_load()})",
                        flush=True,
                    )
        print(f"\nend: {_load()}\n")
        _table(got)


def _table(got: dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]]) -> None:
    print("| variant | size | precision | threads | old frames/s | new frames/s | ratio (per round) |")
    print("|---|---|---|---|---|---|---|")
    for (row, precision, t), res in got.items():
        old = [r["fps"] for r in res["old"]]
        new = [r["fps"] for r in res["new"]]
        per = ", ".join(f"{n / o:.2f}" for o, n in zip(old, new, strict=True))
        name = {"compact": "compact (w 0.5)", "cnn": "hybrid CNN"}[ROWS[row]["variant"]]
        used = "/".join(sorted({str(r["threads"]) for r in res["old"]}))
        ended = "/".join(sorted({str(r["threads"]) for r in res["new"]}))
        label = f"old: default ({used}); new: timed (last step on {ended})" if not t else f"{t} (pinned)"
        print(
            f"| {name} | {ROWS[row]['input_size']} | {precision} | {label} | {statistics.median(old):.1f} | "
            f"{statistics.median(new):.1f} | **{statistics.median(new) / statistics.median(old):.2f}x** ({per}) |"
        )
    print("\nLosses of every step, old vs new (first round), same seed and frames:\n")
    for (row, precision, t), res in got.items():
        a, b = res["old"][0]["losses"], res["new"][0]["losses"]
        diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
        how = f"threads={t}" if t else f"threads old {res['old'][0]['threads']}, new {res['new'][0]['threads']}"
        print(f"- {row} {precision} {how}: old {_fmt(a)}; new {_fmt(b)}; largest difference {diff:.2e}")


def _fmt(losses: list[float]) -> str:
    return "[" + ", ".join(f"{v:.5f}" for v in losses) + "]"


def _rev(ref: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True)
    return done.stdout.strip() or ref


def _dirty() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "lusviewer"], capture_output=True, text=True
    )
    return "with uncommitted changes" if done.stdout.strip() else "clean"


if __name__ == "__main__":
    main()
