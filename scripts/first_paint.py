"""How long the screen stays black after the viewer is launched, on a real X server.

    Xvfb :98 -screen 0 1280x800x24 &
    DISPLAY=:98 python scripts/first_paint.py [--runs 3] [-- lusviewer arguments]

Each run launches ``python -m lusviewer ARGS`` as a user would (a fresh process, cold
imports) and grabs the whole screen every 30 ms: prints the seconds from launch to the
first grab with anything lit, and to the first grab with half the screen lit (the
window painted). Pass a clip to include opening it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def lit_share(app: object) -> float:
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    img = app.primaryScreen().grabWindow(0).toImage().scaled(128, 80)
    return sum(img.pixelColor(x, y).lightness() > 40 for x in range(128) for y in range(80)) / (128 * 80)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("args", nargs="*", help="lusviewer's arguments (after --)")
    a = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    for _ in range(a.runs):
        t0 = time.perf_counter()
        p = subprocess.Popen(
            [sys.executable, "-m", "lusviewer", *a.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        first = painted = None
        while time.perf_counter() - t0 < 30 and painted is None:
            share, t = lit_share(app), time.perf_counter() - t0
            first = t if first is None and share > 0.01 else first
            painted = t if share >= 0.5 else None
            time.sleep(0.03)
        p.terminate()
        p.wait()
        print(
            f"anything lit {first if first is None else round(first, 2)} s, window painted "
            f"{painted if painted is None else round(painted, 2)} s after launch"
        )
        time.sleep(1)  # the screen is black again before the next run


if __name__ == "__main__":
    main()
