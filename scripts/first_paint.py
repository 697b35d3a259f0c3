"""How long the screen stays black after the viewer is launched, on a real X server.

    Xvfb :99 -screen 0 1280x800x24 &
    DISPLAY=:99 python scripts/first_paint.py [--runs 5] [--screenshot first.png]
        [--compare OTHER_CHECKOUT] [-- lusviewer arguments]

Each run launches ``python -m lusviewer ARGS`` as a user would (a fresh process, cold
imports) and samples the screen every 20 ms (four strips across it): prints the
seconds from launch to the first sample with anything lit, and to the first with 40 %
of it lit (the window painted: its black frame view leaves about half unlit), then the
median of the runs. Pass a clip to include opening it.

``--screenshot``: the first grab with the window painted, as a PNG (what the user sees
first). ``--compare DIR``: the same runs, interleaved, of the checkout in DIR (for
example the previous commit, ``git archive HEAD~1 | tar -x -C DIR``): the launches
alternate, so a busy machine slows both alike. ``--cpu N``: the viewer runs on core N
alone, as on a machine whose other cores are busy (its GUI thread and its worker then
share one core). For steadier numbers on a shared machine, run it under ``nice -n -15``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def grab(app: Any) -> Any:
    """The whole X screen, as a QImage."""
    return app.primaryScreen().grabWindow(0).toImage()


def lit_share(image: Any) -> float:
    """The share of ``image``'s pixels that are not near black (grey level > 40)."""
    import numpy as np
    from PySide6.QtGui import QImage

    img = image.convertToFormat(QImage.Format.Format_Grayscale8)
    grey = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : img.width()]
    return float((grey > 40).mean())


def screen_lit(app: Any) -> float:
    """The lit share of four 4-pixel strips across the screen (a full grab takes ~30 ms of
    CPU, which the launched viewer would miss on a small machine)."""
    screen = app.primaryScreen()
    w, h = screen.geometry().width(), screen.geometry().height()
    return sum(lit_share(screen.grabWindow(0, 0, h * (2 * k + 1) // 8, w, 4).toImage()) for k in range(4)) / 4


def launch(
    app: Any, checkout: Path, args: list[str], screenshot: str | None, cpu: int | None = None
) -> tuple[float | None, float | None]:
    """One launch of the viewer in ``checkout``: seconds to anything lit, to the window painted."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-m", "lusviewer", *args],
        cwd=checkout,  # python -m puts the working directory first on sys.path: this checkout's package
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
    )
    first = painted = None
    try:
        while time.perf_counter() - t0 < 30 and painted is None:
            share, t = screen_lit(app), time.perf_counter() - t0
            first = t if first is None and share > 0.01 else first
            if share >= 0.4:  # the window lights about half the strips (its frame view is black)
                painted = t
                if screenshot:  # a few ms later: what the user sees first
                    grab(app).save(screenshot)
            time.sleep(0.02)
    finally:
        p.terminate()
        p.wait()
    return first, painted


def show(name: str, times: list[tuple[float | None, float | None]]) -> None:
    painted = [p for _, p in times if p is not None]
    median = f"{statistics.median(painted):.2f} s" if painted else "never"
    runs = ", ".join("never" if p is None else f"{p:.2f}" for _, p in times)
    print(f"{name}: window painted after launch, median {median} (runs: {runs})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--screenshot", default=None, help="save the first painted screen of the last run (PNG)")
    ap.add_argument("--compare", type=Path, default=None, help="another checkout, launched in alternation")
    ap.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="run the viewer on this one core (a small or busy machine: its GUI thread and its worker share a core)",
    )
    ap.add_argument("args", nargs="*", help="lusviewer's arguments (after --)")
    a = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    checkouts = {"this checkout": ROOT}
    if a.compare is not None:
        checkouts[f"{a.compare}"] = a.compare.resolve()
    times: dict[str, list[tuple[float | None, float | None]]] = {name: [] for name in checkouts}
    for run in range(a.runs):
        for name, checkout in checkouts.items():
            shot = a.screenshot if name == "this checkout" and run == a.runs - 1 else None
            first, painted = launch(app, checkout, a.args, shot, a.cpu)
            times[name].append((first, painted))
            print(
                f"{name}: anything lit {first if first is None else round(first, 2)} s, window painted "
                f"{painted if painted is None else round(painted, 2)} s after launch",
                flush=True,
            )
            time.sleep(1)  # the screen is black again before the next run
    for name in checkouts:
        show(name, times[name])


if __name__ == "__main__":
    main()
