"""Screenshot of the Exam tab after scoring one patient's clips, on a real X server.

    Xvfb :99 -screen 0 1280x800x24 &
    DISPLAY=:99 python docs/screenshots/make_exam_screenshot.py CLIP [CLIP ...] [--model CARD] \
        [--yours 0,1,...] [--zones 6] [--out viewer-exam.png] [--seconds]

Opens the clips one after the other (each is scored in turn), enters ``--yours`` (a
clinician's own zone scores, in clip order) in the *Yours* column, then shows the Exam
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
    ap.add_argument("--yours", default=None, help="the clinician's zone scores, comma-separated, in clip order")
    ap.add_argument("--zones", type=int, default=None, choices=[6, 14], help="the exam's protocol")
    ap.add_argument("--out", default="viewer-exam.png", help="file name in docs/screenshots")
    ap.add_argument("--seconds", action="store_true", help="the timeline's axis in seconds")
    args = ap.parse_args()

    from make_screenshots import open_window  # beside this script
    from PySide6.QtCore import QTimer

    app, w = open_window(args.model)
    c = w.controller
    w.exam_panel.protocol.setCurrentIndex(w.exam_panel.protocol.findData(args.zones))
    w.act_seconds.setChecked(args.seconds)
    queue = list(args.clips)

    def next_clip() -> None:
        if queue:
            w.open_clip(queue.pop(0))
            return
        c.exam_changed.disconnect(on_exam_changed)
        for row, score in enumerate(args.yours.split(",") if args.yours else []):
            w.exam_panel.clinician_box(row).setCurrentIndex(int(score) + 1)
        w.side_tabs.setCurrentWidget(w.exam_panel)
        w.summary.worst.click()  # "Jump to worst frame": the most severe finding
        QTimer.singleShot(400, finish)

    def finish() -> None:
        app.processEvents()
        path = OUT / args.out
        subprocess.run(["import", "-window", "root", str(path)], check=True)
        print(path)
        c.exam_exported = True  # nothing to ask on close: this is a screenshot
        w.close()
        app.quit()

    def on_exam_changed() -> None:
        QTimer.singleShot(100, next_clip)

    c.exam_changed.connect(on_exam_changed)
    c.model_ready.connect(lambda _st: next_clip())
    app.exec()


if __name__ == "__main__":
    main()
