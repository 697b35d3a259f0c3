"""Screenshot of the Exam tab after scoring one patient's clips, on a real X server.

    Xvfb :99 -screen 0 1280x800x24 &
    DISPLAY=:99 python docs/screenshots/make_exam_screenshot.py CLIP [CLIP ...] [--model CARD]

Opens the clips one after the other (each is scored in turn), then shows the Exam
tab with the last clip on screen and takes `import -window root` (ImageMagick).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    from make_screenshots import open_window  # beside this script
    from PySide6.QtCore import QTimer

    app, w = open_window(args.model)
    c = w.controller
    queue = list(args.clips)

    def next_clip() -> None:
        if queue:
            w.open_clip(queue.pop(0))
            return
        w.side_tabs.setCurrentWidget(w.exam_panel)
        w.jump(c.result.summary.worst_frame if c.result is not None else 0)  # type: ignore[attr-defined]
        QTimer.singleShot(400, finish)

    def finish() -> None:
        app.processEvents()
        path = OUT / "viewer-exam.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True)
        print(path)
        c.exam_exported = True  # nothing to ask on close: this is a screenshot
        w.close()
        app.quit()

    c.exam_changed.connect(lambda: QTimer.singleShot(100, next_clip))
    c.model_ready.connect(lambda _st: next_clip())
    app.exec()


if __name__ == "__main__":
    main()
