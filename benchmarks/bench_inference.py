"""Speed and memory of the scoring engine. Prints Markdown tables for docs/performance.md.

    python benchmarks/bench_inference.py [--model models/lusviewer-hybrid.json]
        [--sections model,decode,engine,memory] [--clips N] [--device cpu|cuda] [--data DIR]

Sections:
  model   frames/s of the model alone (CNN + windowed LSTM), fp32 vs bf16, batch 1/8/32
  decode  decode + resize frames/s on real clips (../shared/data), one thread
  engine  end to end (decode + model + LSTM) on real COVID-BLUeS clips, fp32 vs bf16
  memory  peak RSS of `lusviewer score` on synthetic clips of growing length, and of
          reading a long 1080p clip; each run in its own process
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
        engine = ScoringEngine(loaded, device=device, precision=precision, batch_size=32)
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
    if "memory" in sections:
        bench_memory(args.model, [int(x) for x in args.lengths.split(",")])
    print(f"\n(peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
