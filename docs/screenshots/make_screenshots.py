"""Screenshots of the real app on a real X server (Xvfb), at 1280x800.

    Xvfb :99 -screen 0 1280x800x24 &
    DISPLAY=:99 python docs/screenshots/make_screenshots.py CLIP [--model CARD]

Takes `import -window root` shots (ImageMagick) of the whole screen: just opened,
mid-scoring, scored, and scored with the error / Grad-CAM overlays on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent


def open_window(model: str | None) -> tuple[Any, Any]:
    """The app and its window, maximised on the X screen (1280x800 or 1024x600), no overlay on."""
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    from lusviewer.resources import default_model_path
    from lusviewer.ui.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    QCoreApplication.setOrganizationName("lusviewer-screenshots")
    w = MainWindow(model or str(default_model_path()), quiet=True)
    screen = app.primaryScreen().availableGeometry()
    w.setGeometry(0, 0, min(1280, screen.width()), min(800, screen.height()))
    w.showMaximized()
    w.overlay_mode.setCurrentIndex(0)  # start without an overlay, whatever was saved
    return app, w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("--model", default=None)
    ap.add_argument("--frame", type=int, default=None, help="frame to show at the end (default: the worst)")
    ap.add_argument("--only-scored", metavar="NAME", default=None, help="take only the scored shot, as NAME.png")
    args = ap.parse_args()

    from PySide6.QtCore import QTimer

    app, w = open_window(args.model)
    c = w.controller
    shots: list[str] = []

    def shot(name: str) -> None:
        app.processEvents()
        path = OUT / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True)
        shots.append(str(path))

    state = {"mid": False}

    def on_scores(_s: int, n: int) -> None:
        if args.only_scored:
            return
        if not state["mid"] and n >= len(c.scores) // 3:
            state["mid"] = True
            w.jump(n // 2)
            QTimer.singleShot(150, lambda: shot("viewer-mid-scoring"))

    # Overlays arrive from the worker: each shot waits for its overlay, then moves on.
    overlay_steps = [(2, "viewer-error-overlay"), (3, "viewer-gradcam")]

    def next_overlay() -> None:
        if not overlay_steps:
            w.close()
            return
        mode, _name = overlay_steps[0]
        w.overlay_mode.setCurrentIndex(mode)

    def overlay_arrived(_i: int, _rec: object, cam: object) -> None:
        if not overlay_steps:
            return
        mode, name = overlay_steps[0]
        if mode == 3 and cam is None:
            return  # the reconstruction came first; Grad-CAM follows
        overlay_steps.pop(0)
        QTimer.singleShot(300, lambda: (shot(name), next_overlay()))

    def finished(result: object) -> None:
        target = args.frame if args.frame is not None else w.summary.worst_frame  # the worst frame, as the button jumps
        w.jump(target)
        if args.only_scored:
            overlay_steps.clear()
            QTimer.singleShot(300, lambda: (shot(args.only_scored), w.close()))
            return
        c.overlay_ready.connect(overlay_arrived)
        QTimer.singleShot(300, lambda: (shot("viewer-scored"), next_overlay()))

    def opened() -> None:
        w.open_clip(args.clip)
        if not args.only_scored:
            QTimer.singleShot(100, lambda: shot("viewer-opened"))

    c.scores_updated.connect(on_scores)
    c.scoring_finished.connect(finished)
    c.model_ready.connect(lambda _st: QTimer.singleShot(200, opened))
    app.exec()
    print("\n".join(shots))


if __name__ == "__main__":
    main()
