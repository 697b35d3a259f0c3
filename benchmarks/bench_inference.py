"""Speed and memory of the scoring engine. Prints Markdown tables for docs/performance.md.

    python benchmarks/bench_inference.py [--model models/lusviewer-hybrid.json]
        [--sections model,decode,engine,memory] [--clips N] [--device cpu|cuda] [--data DIR]

Sections:
  model   frames/s of the model alone (CNN + windowed LSTM), fp32 vs bf16, batch 1/8/32
  decode  decode + resize frames/s on real clips (../shared/data), one thread
  engine  end to end (decode + model + LSTM) on real COVID-BLUeS clips, fp32 vs bf16
  memory  peak RSS of `lusviewer score` on synthetic clips of growing length, and of
          reading a long 1080p clip; each run in its own process
  paths   the CNN's candidate runtimes side by side, interleaved, on the same real frames
          (model alone, batch 8 and 32) and end to end (old path vs the new default vs fp32,
          clip by clip): frames/s, ratio to the old path, label agreement with fp32,
          clip scores equal. Not run by default (add it to --sections); --jit and
          --compile add TorchScript freeze and torch.compile (slow to prepare)
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from lusviewer.inference import ScoringEngine  # noqa: E402
from lusviewer.inference.engine import cpu_supports_bf16  # noqa: E402
from lusviewer.inference.sequence import SequenceStreamer  # noqa: E402
from lusviewer.io import open_clip  # noqa: E402
from lusviewer.io.synthetic import synthetic_frames, write_video  # noqa: E402
from lusviewer.model import load_model  # noqa: E402
from lusviewer.model.preprocess import resize_frame, to_model_input  # noqa: E402
from lusviewer.resources import default_model_path  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"(CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads), {gpu}"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(model_path: str, n_frames: int, device: str) -> None:
    dev = torch.device(device)
    loaded = load_model(model_path)
    model = loaded.model.eval().to(dev)
    model.cnn.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    size = loaded.card.config.input_size
    print(f"\n### Model alone (CNN + windowed LSTM), synthetic {size} px input, {dev.type}\n")
    print("| precision | batch | frames/s |")
    print("|---|---|---|")
    batches = (1, 8, 32) if dev.type == "cpu" else (1, 8, 32, 128)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (max(batches), size, size, 3), dtype=np.uint8)
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and dev.type == "cpu" and not cpu_supports_bf16():
            continue
        for batch in batches:
            ctx = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
            assert model.sequence is not None
            streamer = SequenceStreamer(model.sequence)
            with torch.inference_mode(), ctx:
                for _ in range(3):  # warm-up (CUDA: kernel selection)
                    model.cnn(to_model_input(frames[:batch], dev))
                _sync(dev)
                n = 0
                t0 = time.perf_counter()
                while n < max(n_frames, 4 * batch):
                    out = model.cnn(to_model_input(frames[:batch], dev))
                    with torch.autocast(dev.type, enabled=False):
                        streamer.push(out.features.float())
                    n += batch
                _sync(dev)
                dt = time.perf_counter() - t0
            print(f"| {precision} | {batch} | {n / dt:.1f} |", flush=True)


def real_clips(n: int) -> list[Path]:
    vids = sorted((DATA / "covid-blues" / "videos").glob("*.mp4"))
    if not vids:
        print("(no ../shared/data: real-clip sections skipped)")
        return []
    step = max(1, len(vids) // n)
    return vids[::step][:n]


def bench_decode(n: int) -> None:
    print("\n### Decode + resize to 128 px, one thread\n")
    print("| set | clips | frames | frames/s |")
    print("|---|---|---|---|")
    sets = {
        "COVID-BLUeS (350x350 h264)": real_clips(n),
        "POCUS unscored (mixed containers, up to 864 px)": sorted((DATA / "pocus-unscored" / "videos").glob("*")),
    }
    for name, clips in sets.items():
        if not clips:
            continue
        t0, frames = time.perf_counter(), 0
        for c in clips:
            with open_clip(c) as r:
                for f in r.iter_frames():
                    resize_frame(f, 128)
                    frames += 1
        print(f"| {name} | {len(clips)} | {frames} | {frames / (time.perf_counter() - t0):.0f} |", flush=True)


def bench_engine(model_path: str, n: int, device: str) -> None:
    clips = real_clips(n)
    if not clips:
        return
    loaded = load_model(model_path)
    print(f"\n### End to end on real COVID-BLUeS clips (decode + CNN + LSTM), batch 32, {device}\n")
    print("| precision | clips | frames | frames/s |")
    print("|---|---|---|---|")
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and device == "cpu" and not cpu_supports_bf16():
            continue
        engine = ScoringEngine(loaded, device=device, precision=precision, batch_size=32, runtime="torch")
        engine.score_clip(str(clips[0]))  # warm-up
        t0, frames = time.perf_counter(), 0
        for c in clips:
            frames += len(engine.score_clip(str(c)).scores)
        print(f"| {precision} | {len(clips)} | {frames} | {frames / (time.perf_counter() - t0):.1f} |", flush=True)


# Peak RSS from /proc/self/status (VmHWM): ru_maxrss would carry the parent's peak
# across fork + exec on Linux, and this parent has a model loaded.
_PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"

_CHILD_SCORE = f"""
import sys
from lusviewer.cli import run
rc = run(["score", sys.argv[1], "-o", sys.argv[2], "-q", "--model", sys.argv[3]])
print({_PEAK})
sys.exit(rc)
"""

_CHILD_READ = f"""
import sys
from lusviewer.io import open_clip
with open_clip(sys.argv[1]) as c:
    n = sum(1 for _ in c.iter_frames())
    c.frame(n // 2)
print(n, {_PEAK})
"""


def bench_memory(model_path: str, lengths: list[int]) -> None:
    print("\n### Peak memory (RSS) against clip length, full model, one process per run\n")
    print("| run | frames | frame size | peak RSS (MiB) | wall (s) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in lengths:
            clip = write_video(Path(tmp) / f"long_{n}.mp4", synthetic_frames(n, size=480, seed=n), fps=25.0)
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", _CHILD_SCORE, str(clip), str(Path(tmp) / "r.csv"), model_path],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            rss = int(out.stdout.split()[-1]) / 1024
            print(f"| `lusviewer score` | {n} | 480x480 | {rss:.0f} | {time.perf_counter() - t0:.0f} |", flush=True)
            clip.unlink()
        n = 600
        clip = write_video(Path(tmp) / "long_1080.mp4", synthetic_frames(n, size=1080, seed=1), fps=25.0)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _CHILD_READ, str(clip)], capture_output=True, text=True, cwd=ROOT)
        frames, rss_kb = out.stdout.split()
        decoded_gib = int(frames) * 1080 * 1080 * 3 / 2**30
        print(
            f"| read every frame + one seek | {frames} | 1080x1080 | {int(rss_kb) / 1024:.0f} "
            f"(the decoded clip would be {decoded_gib:.1f} GiB) | {time.perf_counter() - t0:.0f} |"
        )


def _load_frames(n: int, size: int) -> np.ndarray:
    """``n`` real frames at the model's input size, from clips spread over the set."""
    out: list[np.ndarray] = []
    for c in real_clips(8):
        with open_clip(c) as r:
            for f in r.iter_frames():
                out.append(resize_frame(f, size))
                if len(out) % 16 == 0:
                    break
        if len(out) >= n:
            break
    return np.stack(out[:n])


def _path_candidates(cnn: torch.nn.Module, card: object, extra: set[str]) -> dict[str, object]:
    """name -> f(x float32 NCHW) -> logits (float32), for each CNN runtime available."""
    import copy

    from lusviewer.inference.runtime import OpenVINORunner, openvino_available
    from lusviewer.model.fuse import fold_batchnorm

    cands: dict[str, object] = {}

    def eager(m: torch.nn.Module, bf16: bool) -> object:
        def f(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return m(x).logits.float()  # type: ignore[no-any-return]

        return f

    cands["torch fp32 (reference)"] = eager(cnn, False)
    cands["torch bf16 autocast (old default)"] = eager(cnn, True)
    folded, n_folded = fold_batchnorm(cnn)
    folded = folded.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    cands[f"torch bf16 autocast, {n_folded} BN folded"] = eager(folded, True)
    pure = copy.deepcopy(folded).to(torch.bfloat16)

    def bf16_weights(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return pure(x.to(torch.bfloat16)).logits.float()  # type: ignore[no-any-return]

    cands["torch bf16 weights, BN folded"] = bf16_weights
    if "jit" in extra:
        t0 = time.perf_counter()
        traced = torch.jit.trace(_Logits(pure).eval(), torch.rand(8, 3, 128, 128, dtype=torch.bfloat16))
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        cands[f"TorchScript freeze bf16 (prep {time.perf_counter() - t0:.0f} s)"] = lambda x: frozen(
            x.to(torch.bfloat16)
        ).float()
    if "compile" in extra:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(folded)
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            compiled(torch.rand(32, 3, 128, 128).contiguous(memory_format=torch.channels_last))
        cands[f"torch.compile inductor bf16 (compile {time.perf_counter() - t0:.0f} s)"] = eager(compiled, True)
    try:
        import onnxruntime as ort  # noqa: F401

        have_ort = True
    except ImportError:
        have_ort = False
    if have_ort:
        cands["ONNX Runtime fp32"] = _onnxruntime(folded)
    if openvino_available():
        for prec in ("fp32", "bf16"):
            t0 = time.perf_counter()
            r = OpenVINORunner(cnn, card.config, weights_sha256=card.sha256, precision=prec)  # type: ignore[attr-defined]
            how = "converted" if r.converted else "cached"
            cands[f"OpenVINO {prec} ({how}, load {time.perf_counter() - t0:.0f} s)"] = lambda x, r=r: r(x).logits
    return cands


class _Logits(torch.nn.Module):
    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x).logits  # type: ignore[no-any-return]


def _onnxruntime(folded: torch.nn.Module) -> object:
    import warnings

    import onnxruntime as ort

    path = Path(tempfile.mkdtemp()) / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(folded.float()).eval(),
            (torch.rand(2, 3, 128, 128),),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {0: "n"}},
            dynamo=False,
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"x": np.ascontiguousarray(x.numpy())})[0])


def bench_paths(model_path: str, n_clips: int, n_frames: int, rounds: int, extra: set[str]) -> None:
    """The CNN's runtimes side by side, interleaved in rounds on the same frames and clips."""
    loaded = load_model(model_path)
    cnn = loaded.model.cnn.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    size = loaded.card.config.input_size
    frames = _load_frames(max(n_frames, 32), size)
    cands = _path_candidates(cnn, loaded.card, extra)
    with torch.inference_mode():
        ref = torch.cat(
            [cands["torch fp32 (reference)"](to_model_input(frames[i : i + 32])) for i in range(0, len(frames), 32)]
        )  # type: ignore[operator]
    agree: dict[str, float] = {}
    speed: dict[tuple[str, int], list[float]] = {}
    for name, f in cands.items():
        with torch.inference_mode():
            lo = torch.cat([f(to_model_input(frames[i : i + 32])) for i in range(0, len(frames), 32)])  # type: ignore[operator]
        agree[name] = float((lo.argmax(1) == ref.argmax(1)).float().mean())
    print(f"\n### CNN alone, {len(frames)} real {size} px frames, {rounds} interleaved rounds (load {_load()})\n")
    for _ in range(rounds):
        for batch in (8, 32):
            x = to_model_input(frames[:batch])
            for name, f in cands.items():
                with torch.inference_mode():
                    f(x)  # type: ignore[operator]
                    t0, n = time.perf_counter(), 0
                    while n < n_frames:
                        f(x)  # type: ignore[operator]
                        n += batch
                speed.setdefault((name, batch), []).append(n / (time.perf_counter() - t0))
    old = "torch bf16 autocast (old default)"
    print("| path | batch | frames/s (median of rounds) | vs old default | frame labels = fp32 |")
    print("|---|---|---|---|---|")
    for batch in (8, 32):
        base = float(np.median(speed[(old, batch)]))
        for name in cands:
            v = float(np.median(speed[(name, batch)]))
            print(f"| {name} | {batch} | {v:.1f} | {v / base:.2f}x | {agree[name] * 100:.1f} % |")
    bench_paths_engine(loaded, n_clips, rounds)


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_paths_engine(loaded: object, n_clips: int, rounds: int) -> None:
    clips = real_clips(n_clips)
    if not clips:
        return
    engines = {
        "old default (PyTorch, bf16 autocast)": ScoringEngine(loaded, device="cpu", runtime="torch"),  # type: ignore[arg-type]
        "new default (auto)": ScoringEngine(loaded, device="cpu", runtime="auto"),  # type: ignore[arg-type]
    }
    fp32 = ScoringEngine(loaded, device="cpu", precision="fp32", runtime="torch")  # type: ignore[arg-type]
    new = engines["new default (auto)"]
    print(
        f"\n### End to end, {len(clips)} real COVID-BLUeS clips, batch 32, interleaved clip by clip (load {_load()})\n"
    )
    print(f"new default runs: {new.description}")
    times = {k: 0.0 for k in engines}
    frames = 0
    same = clip_same = 0
    for c in clips:
        ref = fp32.score_clip(str(c))
        frames += len(ref.scores) * rounds
        for _ in range(rounds):
            for name, eng in engines.items():
                t0 = time.perf_counter()
                res = eng.score_clip(str(c))
                times[name] += time.perf_counter() - t0
        same += int((res.scores == ref.scores).sum())
        clip_same += int(res.summary.clip_score == ref.summary.clip_score)
    n = frames // rounds
    print("| path | frames/s | vs old default |")
    print("|---|---|---|")
    base = frames / times["old default (PyTorch, bf16 autocast)"]
    for name in engines:
        v = frames / times[name]
        print(f"| {name} | {v:.1f} | {v / base:.2f}x |")
    print(
        f"\nnew default vs PyTorch fp32: frame labels equal on {same}/{n} frames ({same / n * 100:.2f} %), "
        f"clip scores equal on {clip_same}/{len(clips)} clips (load now {_load()})"
    )


def main() -> None:
    global DATA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument("--sections", default="model,decode,engine,memory")
    ap.add_argument("--clips", type=int, default=12, help="real clips for the decode/engine sections")
    ap.add_argument("--frames", type=int, default=96, help="frames per model measurement")
    ap.add_argument("--lengths", default="250,1000,4000", help="clip lengths for the memory section")
    ap.add_argument("--device", default="cpu", help="model and engine sections: cpu or cuda[:N]")
    ap.add_argument("--data", default=str(DATA), help="folder holding covid-blues/ and pocus-unscored/")
    ap.add_argument("--rounds", type=int, default=2, help="paths section: interleaved rounds")
    ap.add_argument("--jit", action="store_true", help="paths section: add TorchScript freeze (slow to prepare)")
    ap.add_argument("--compile", action="store_true", help="paths section: add torch.compile (slow to compile)")
    args = ap.parse_args()
    DATA = Path(args.data)
    sections = set(args.sections.split(","))
    print(f"Machine: {machine()}")
    print(f"Model: {args.model}")
    if "model" in sections:
        bench_model(args.model, args.frames, args.device)
    if "decode" in sections:
        bench_decode(args.clips)
    if "engine" in sections:
        bench_engine(args.model, args.clips, args.device)
    if "paths" in sections:
        extra = {k for k in ("jit", "compile") if getattr(args, k)}
        bench_paths(args.model, args.clips, args.frames, args.rounds, extra)
    if "memory" in sections:
        bench_memory(args.model, [int(x) for x in args.lengths.split(",")])
    print(f"\n(peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
