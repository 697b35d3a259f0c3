"""lusviewer beside the paper's framework (Keras 3 / TensorFlow, CPU), in one interleaved run.

    python benchmarks/keras_side_by_side.py [--tf-python /work/venv-tf/bin/python]
        [--clips 2 | --clip PATH ...] [--batches 1,8,32] [--rounds 3] [--threads 2]
        [--keras-variants fp32,fp32-xla,bf16,bf16-xla] [--min-seconds 3] [--profile] [--out FILE]

Run in lusviewer's environment. The Keras rendition of the paper's CNN
(``benchmarks/keras/hybrid_keras.py``: the same layers and parameter count as
lusviewer's ``HybridCNN``, random weights) runs in a subprocess of the TensorFlow
virtual environment, which is never a dependency of lusviewer::

    python -m venv /work/venv-tf && /work/venv-tf/bin/pip install -r benchmarks/keras/requirements.txt

Both sides get the same frames: real COVID-BLUeS clips, decoded and resized once here
as the engine prepares them (uint8, 128 px) and handed to the server as a ``.npy``
file; each side converts a batch to float [0, 1] inside its timed loop, and both are
timed by the same loop (``benchmarks/keras/benchprotocol.py``). The same thread counts
(``--threads`` intra-op and inter-op, each side). Every round runs every case once,
Keras and lusviewer alternating, the order reversed every other round; the table gives
medians over the rounds and, as the ratio, the median of each round's ratio against
Keras fp32 at the same batch (the two measured next to each other).

Rows: Keras at ``--keras-variants`` (graph mode by ``tf.function``; ``-xla`` adds
``jit_compile=True``; ``bf16`` is Keras's ``mixed_bfloat16`` policy); lusviewer's CNN
alone (PyTorch eager, channels_last, fp32 and bf16 autocast); and lusviewer's engine
end to end (``ScoringEngine`` with its defaults: decode on its prefetch thread, resize,
CNN, LSTM, at its own precision and batch) on the clips the frames came from, its ratio
taken against Keras fp32 at the engine's batch (the CNN alone: a stricter bar).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KERAS_DIR = ROOT / "benchmarks" / "keras"
SERVER = KERAS_DIR / "hybrid_keras.py"
DATA = ROOT.parent / "shared" / "data"
DEFAULT_TF_PYTHON = "/work/venv-tf/bin/python"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(KERAS_DIR))

from benchprotocol import KERAS_VARIANTS, bench_request, recv, send, time_batches  # noqa: E402


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batches must be whole numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batches must be >= 1, got {text!r}")
    return values


def _variants(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in KERAS_VARIANTS]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"Keras variants must be some of {', '.join(KERAS_VARIANTS)}; got {text!r}")
    if "fp32" not in values:  # the reference of every ratio
        values.insert(0, "fp32")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tf-python", default=DEFAULT_TF_PYTHON, help="python of the TensorFlow venv (%(default)s)")
    ap.add_argument("--stub", action="store_true", help="a numpy stand-in for Keras (tests of the protocol; no TF)")
    ap.add_argument("--model", default=None, help="lusviewer model card (default: the shipped model)")
    ap.add_argument("--clips", type=int, default=2, help="real COVID-BLUeS clips from ../shared/data (%(default)s)")
    ap.add_argument("--clip", action="append", default=[], help="a clip to use instead (repeatable)")
    ap.add_argument("--batches", type=_batches, default=[1, 8, 32], help="model-alone batch sizes (1,8,32)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="intra-op and inter-op threads, each side (%(default)s)")
    ap.add_argument("--keras-variants", type=_variants, default=list(KERAS_VARIANTS), help=",".join(KERAS_VARIANTS))
    ap.add_argument("--min-seconds", type=float, default=3.0, help="at least this long per measurement")
    ap.add_argument("--min-frames", type=int, default=32, help="and at least this many frames")
    ap.add_argument("--no-engine", action="store_true", help="skip lusviewer's end-to-end rows")
    ap.add_argument("--no-labels", action="store_true", help="skip the frame-label comparison (one pass a variant)")
    ap.add_argument("--profile", action="store_true", help="then profile lusviewer's bf16 CNN at the largest batch")
    ap.add_argument("--out", default=None, help="also write the Markdown to this file")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.threads < 1 or args.clips < 1:
        ap.error("--rounds, --threads and --clips must be >= 1")
    return args


class KerasServerError(Exception):
    """The Keras server refused a request or exited; the message is one line."""


class KerasServer:
    """``hybrid_keras.py --serve`` in a subprocess of the TensorFlow venv's python."""

    def __init__(self, python: str, *, stub: bool = False, threads: int = 2, log: IO[str] | None = None) -> None:
        if not Path(python).is_file():
            raise KerasServerError(
                f"{python}: no TensorFlow venv there; make it with `python -m venv /work/venv-tf && "
                f"/work/venv-tf/bin/pip install -r benchmarks/keras/requirements.txt`, or pass --tf-python"
            )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)  # lusviewer's path means nothing in the TF venv
        env.pop("OMP_WAIT_POLICY", None)  # lusviewer's setting; Keras is run as it comes
        cmd = [python, str(SERVER), "--serve", *(["--stub"] if stub else [])]
        # The server's stderr (TensorFlow's logging): read back for a failure's last line.
        self.log = log if log is not None else tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close())
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1, env=env
        )

    def _log_tail(self) -> str:
        try:
            self.log.flush()
            self.log.seek(0)
            lines = [ln for ln in self.log.read().splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return (": " + lines[-1].strip()[:300]) if lines else ""

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            send(self.proc.stdin, req)
            reply = recv(self.proc.stdout)
        except (EOFError, BrokenPipeError):
            rc = self.proc.wait(timeout=30)
            raise KerasServerError(f"the Keras server exited (status {rc}){self._log_tail()}") from None
        if not reply.get("ok"):
            raise KerasServerError(f"the Keras server refused {req.get('cmd')!r}: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call({"cmd": "quit"})
                self.proc.wait(timeout=30)
            except (KerasServerError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Case:
    framework: str
    what: str
    precision: str
    batch: int
    run: Callable[[], tuple[int, float]]
    fps: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    ref: tuple[str, int] | None = None  # (Keras variant, batch) of the ratio's reference


def load_frames(clips: list[Path], engine: Any) -> np.ndarray:
    """Every frame of the clips as the engine's model sees it: uint8 (N, S, S, 3)."""
    from lusviewer.io import open_clip
    from lusviewer.model.preprocess import resize_frame

    size = engine.input_size
    out: list[np.ndarray] = []
    for clip in clips:
        sector = engine.clip_sector(str(clip))  # None for a card that resizes the whole frame
        with open_clip(clip) as reader:
            for frame in reader.iter_frames():
                out.append(resize_frame(frame, size) if sector is None else sector.apply(frame, size))
    return np.stack(out)


def real_clips(n: int) -> list[Path]:
    vids = sorted((DATA / "covid-blues" / "videos").glob("*.mp4"))
    step = max(1, len(vids) // n)
    return vids[::step][:n]


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{cpu}, {os.cpu_count()} cores; torch {torch.__version__} (CPU capability {capability})"


def load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def interleave(keras: list[Case], lusv: list[Case]) -> list[Case]:
    out: list[Case] = []
    for i in range(max(len(keras), len(lusv))):
        out += keras[i : i + 1] + lusv[i : i + 1]
    return out


def table(cases: list[Case], rounds: int) -> str:
    lines = [
        f"| framework | what | precision | batch | frames/s (median of {rounds}) | range | ratio vs Keras fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        ratio = f"{median(c.ratios):.2f}x" if c.ratios else "1.00x (reference)"
        if c.ref is not None and c.ratios and c.ref[1] != c.batch:
            ratio += f" (vs batch {c.ref[1]})"
        rng = f"{min(c.fps):.1f}-{max(c.fps):.1f}" if c.fps else ""
        lines.append(
            f"| {c.framework} | {c.what} | {c.precision} | {c.batch} | {median(c.fps):.1f} | {rng} | {ratio} |"
        )
    return "\n".join(lines)


def profile_cnn(model: Any, frames: np.ndarray, batch: int) -> str:
    """Top operators of lusviewer's CNN at ``batch``, bf16 autocast (where its time goes)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lusviewer.model.preprocess import to_model_input

    x = to_model_input(np.resize(frames, (batch, *frames.shape[1:])))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))


def compare_labels(
    server: KerasServer,
    variants: list[str],
    frames: np.ndarray,
    torch_run: Callable[[str], Callable[[np.ndarray], Any]],
    batch: int,
    tmp: Path,
) -> dict[str, str]:
    """Frame labels of every Keras variant and of lusviewer's bf16 against lusviewer fp32
    on the frames: the two renditions are the same network when fp32 agrees exactly."""
    import torch

    def torch_probs(precision: str) -> np.ndarray:
        run = torch_run(precision)
        out = [
            torch.softmax(run(frames[i : i + batch]).logits.float(), 1).numpy() for i in range(0, len(frames), batch)
        ]
        return np.concatenate(out)

    ref = torch_probs("fp32")
    found = {f"Keras {v}": _keras_probs(server, v, tmp) for v in variants}
    found["lusviewer bf16 autocast"] = torch_probs("bf16")
    return {
        name: f"{(p.argmax(1) == ref.argmax(1)).mean():.2%} of {len(ref)} frames, "
        f"max |probability difference| {np.abs(p - ref).max():.2g}"
        for name, p in found.items()
    }


def _keras_probs(server: KerasServer, variant: str, tmp: Path) -> np.ndarray:
    out = tmp / f"probs-{variant}.npy"
    server.call({"cmd": "predict", "variant": variant, "out": str(out)})
    return np.asarray(np.load(out), dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:  # already started (another benchmark imported first): say so, go on
        print(f"note: torch's inter-op pool was already started ({torch.get_num_interop_threads()} threads)")

    from lusviewer.inference import ScoringEngine
    from lusviewer.model import load_model
    from lusviewer.model.preprocess import to_model_input
    from lusviewer.resources import default_model_path

    clips = [Path(c) for c in args.clip] or real_clips(args.clips)
    if not clips:
        print(f"no clips: {DATA / 'covid-blues' / 'videos'} has none; pass --clip PATH")
        return 2
    model_path = args.model or str(default_model_path())
    t0 = time.perf_counter()
    engine = ScoringEngine(load_model(model_path))  # the engine's default path, as `lusviewer score`
    engine_init_s = time.perf_counter() - t0
    frames = load_frames(clips, engine)
    plain = load_model(model_path).model.cnn.eval()  # lusviewer's CNN in plain PyTorch (eager)
    plain.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def torch_run(precision: str) -> Callable[[np.ndarray], object]:
        def run(batch: np.ndarray) -> object:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                return plain(to_model_input(batch))

        return run

    header = [
        "## Seed framework side by side: run log",
        "",
        f"- machine: {machine()}; load average at start {load_avg()}",
        f"- frames: {len(frames)} of {len(clips)} clip(s) ({', '.join(c.name for c in clips)}), {frames.shape[1]} px",
        f"- threads: {args.threads} intra-op + {args.threads} inter-op, each side (lusviewer's OMP_WAIT_POLICY: "
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}); {args.rounds} rounds, "
        f">= {args.min_seconds:g} s and >= {args.min_frames} frames a measurement",
        f"- lusviewer engine: {engine.description}, batch {engine.batch_size} (built in {engine_init_s:.1f} s); "
        f"model {Path(model_path).name}",
    ]
    print("\n".join(header), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "frames.npy"
        np.save(npy, frames)
        weights = Path(tmp) / "weights.npz"  # lusviewer's CNN weights, for the Keras model too
        np.savez(weights, **{k: v.float().numpy() for k, v in plain.state_dict().items() if v.is_floating_point()})
        server = KerasServer(args.tf_python, stub=args.stub, threads=args.threads)
        try:
            t0 = time.perf_counter()
            setup = server.call(
                {
                    "cmd": "setup",
                    "frames": str(npy),
                    "threads": args.threads,
                    "variants": args.keras_variants,
                    "batches": args.batches,
                    "weights": str(weights),
                }
            )
            lines = [
                f"- Keras server ready in {time.perf_counter() - t0:.0f} s; versions {setup['versions']}; "
                f"parameters {setup['params']}; tracing/compiling per variant (s) "
                + ", ".join(f"{k} {v:.1f}" for k, v in setup["compile_s"].items()),
                f"- lusviewer HybridCNN parameters: {sum(p.numel() for p in plain.parameters()):,} "
                "(PyTorch counts BatchNorm's running statistics as buffers, not parameters); "
                f"{setup['ported']:,} values of its state ported into the Keras model",
            ]
            print("\n".join(lines), flush=True)
            header += lines
            agreement: dict[str, str] = {}
            if not args.no_labels:
                batch = max(args.batches)
                agreement = compare_labels(server, args.keras_variants, frames, torch_run, batch, Path(tmp))
            if agreement:
                lines = ["- the same frames' labels against lusviewer fp32 (PyTorch eager), with the same weights:"]
                lines += [f"  - {name}: {text}" for name, text in agreement.items()]
                print("\n".join(lines), flush=True)
                header += lines

            def keras_case(variant: str, batch: int) -> Case:
                def run() -> tuple[int, float]:
                    r = server.call(bench_request(variant, batch, args.min_frames, args.min_seconds))
                    return int(r["frames"]), float(r["seconds"])

                precision = ("bf16 (mixed_bfloat16)" if KERAS_VARIANTS[variant][0] else "fp32") + (
                    ", XLA" if KERAS_VARIANTS[variant][1] else ""
                )
                return Case("Keras 3 / TF", "CNN alone, tf.function", precision, batch, run)

            def torch_case(precision: str, batch: int) -> Case:
                fn = torch_run(precision)

                def run() -> tuple[int, float]:
                    return time_batches(fn, frames, batch, min_frames=args.min_frames, min_seconds=args.min_seconds)

                label = "bf16 autocast" if precision == "bf16" else "fp32"
                return Case("lusviewer", "CNN alone, PyTorch eager, channels_last", label, batch, run)

            def engine_run() -> tuple[int, float]:
                n, t = 0, time.perf_counter()
                for clip in clips:
                    n += len(engine.score_clip(str(clip)).scores)
                return n, time.perf_counter() - t

            per_batch: list[list[Case]] = []
            for b in args.batches:
                keras_cases = [keras_case(v, b) for v in args.keras_variants]
                for k in keras_cases:
                    k.ref = ("fp32", b)
                lusv_cases = [torch_case(p, b) for p in ("fp32", "bf16")]
                for c in lusv_cases:
                    c.ref = ("fp32", b)
                per_batch.append(interleave(keras_cases, lusv_cases))
            order = [c for group in per_batch for c in group]
            if not args.no_engine:
                ref_batch = engine.batch_size if engine.batch_size in args.batches else max(args.batches)
                e = Case(
                    "lusviewer",
                    "engine end to end (decode, CNN, LSTM)",
                    engine.precision,
                    engine.batch_size,
                    engine_run,
                )
                e.ref = ("fp32", ref_batch)
                # Beside the Keras fp32 case it is compared with.
                i = next(j for j, c in enumerate(order) if c.framework.startswith("Keras") and c.batch == ref_batch)
                order.insert(i + 1, e)
                engine.score_clip(str(clips[0]))  # warm-up, untimed
            refs = {(c.precision, c.batch): c for c in order if c.framework.startswith("Keras")}

            for r in range(args.rounds):
                this_round: dict[int, float] = {}
                for c in order if r % 2 == 0 else order[::-1]:
                    n, dt = c.run()
                    this_round[id(c)] = n / dt
                    c.fps.append(n / dt)
                    print(
                        f"  round {r + 1}: {c.framework}, {c.what}, {c.precision}, batch {c.batch}: "
                        f"{n / dt:.2f} frames/s",
                        flush=True,
                    )
                for c in order:
                    if c.ref is None or (c.framework.startswith("Keras") and c.precision == "fp32"):
                        continue
                    ref = refs[("fp32", c.ref[1])]
                    c.ratios.append(this_round[id(c)] / this_round[id(ref)])
        finally:
            server.close()

    display = sorted(order, key=lambda c: (c.what.startswith("engine"), c.batch, not c.framework.startswith("Keras")))
    md = table(display, args.rounds)
    footer = f"- load average at the end {load_avg()}"
    print("\n" + md + "\n\n" + footer)
    if args.profile:
        print(f"\nlusviewer CNN, bf16 autocast, batch {max(args.batches)}, top operators by self CPU time:\n")
        print(profile_cnn(plain, frames, max(args.batches)))
    if args.out:
        Path(args.out).write_text("\n".join(header) + "\n\n" + md + "\n\n" + footer + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KerasServerError as exc:
        print(f"keras_side_by_side: {exc}", file=sys.stderr)
        sys.exit(1)
