"""Responsiveness of the viewer. Prints a Markdown table for docs/performance.md.

    python benchmarks/bench_viewer.py [--clip CLIP] [--model CARD] [--platform offscreen|xcb]

1. Launch: wall time from starting a fresh process (``python -m lusviewer``) to the
   main window being shown and painted (goal: <= 3 s).
2. Seek: time from ``seek(i)`` to the frame painted, for 300 random frames of a real
   COVID-BLUeS clip (goal: p95 <= 16 ms).
3. Event-loop stalls while the full model scores that clip on the worker: the
   largest gap between ticks of a 5 ms GUI timer (goal: no stall > 50 ms).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "covid-blues" / "videos" / "patient_11_L1.mp4"

_CHILD_LAUNCH = """
import sys, time
t0 = float(sys.argv[1])
from PySide6.QtCore import QTimer, QCoreApplication
from PySide6.QtWidgets import QApplication
from lusviewer.ui.main_window import MainWindow
app = QApplication([])
QCoreApplication.setOrganizationName("lusviewer-bench")
w = MainWindow(sys.argv[2], quiet=True)
w.show()
def shown():
    w.repaint()
    print(f"{time.time() - t0:.3f}", flush=True)
    w.close()
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(DEFAULT_CLIP))
    ap.add_argument("--model", default=None)
    ap.add_argument("--platform", default=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    ap.add_argument("--launches", type=int, default=3)
    args = ap.parse_args()
    os.environ["QT_QPA_PLATFORM"] = args.platform
    from lusviewer.resources import default_model_path

    model = args.model or str(default_model_path())

    launches = []
    for _ in range(args.launches):
        t0 = time.time()
        out = subprocess.run(
            [sys.executable, "-c", _CHILD_LAUNCH, str(t0), model], capture_output=True, text=True, cwd=ROOT
        )
        launches.append(float(out.stdout.strip().splitlines()[-1]))

    from PySide6.QtCore import QCoreApplication, QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from lusviewer.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    QCoreApplication.setOrganizationName("lusviewer-bench")
    w = MainWindow(model, quiet=True)
    w.show()
    t = time.perf_counter()
    while w.controller.model_status is None and time.perf_counter() - t < 120:
        app.processEvents()
        time.sleep(0.005)

    # Event-loop stalls during scoring.
    gaps: list[float] = []
    timer = QElapsedTimer()
    tick = QTimer()
    tick.setInterval(5)

    def on_tick() -> None:
        if timer.isValid():
            gaps.append(timer.nsecsElapsed() / 1e6)
        timer.restart()

    tick.timeout.connect(on_tick)
    t_score = time.perf_counter()
    tick.start()
    w.open_clip(args.clip)
    # Scrub while it scores, as a user would.
    rng = np.random.default_rng(0)
    n = w.controller.info.frame_count if w.controller.info else 1
    while w.controller.result is None and time.perf_counter() - t_score < 600:
        app.processEvents()
        w.seek(int(rng.integers(0, n)))
        time.sleep(0.002)
    tick.stop()
    score_s = time.perf_counter() - t_score
    g = np.array(gaps[1:])

    # Seek latency, idle.
    lat = []
    for i in rng.integers(0, n, 300):
        t1 = time.perf_counter()
        w.controller.seek(int(i))
        w.frame_view.repaint()
        app.processEvents()
        lat.append((time.perf_counter() - t1) * 1000)
    lat_a = np.array(lat)
    w.close()
    w.deleteLater()
    app.processEvents()

    print(f"Platform: {args.platform}; clip: {Path(args.clip).name} ({n} frames); model: {model}")
    print()
    print("| measure | result | goal |")
    print("|---|---|---|")
    print(f"| launch to window shown (median of {len(launches)}) | {np.median(launches):.2f} s | <= 3 s |")
    print(
        f"| seek to frame painted, p50 / p95 / max | {np.percentile(lat_a, 50):.1f} / "
        f"{np.percentile(lat_a, 95):.1f} / {lat_a.max():.1f} ms | p95 <= 16 ms |"
    )
    print(
        f"| GUI timer gap while scoring + scrubbing, p99 / max | {np.percentile(g, 99):.1f} / {g.max():.1f} ms "
        f"({(g > 50).sum()} gaps > 50 ms of {len(g)}) | no stall > 50 ms |"
    )
    print(f"| clip scored in the viewer | {score_s:.1f} s ({n / score_s:.1f} frames/s) | |")


if __name__ == "__main__":
    main()
