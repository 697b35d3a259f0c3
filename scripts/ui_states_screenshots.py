"""Screenshots of the viewer's honest states on a real X server (Xvfb): a scoring
failure (partial timeline, no stale progress), an incomplete clip's notice, and the
model card page. The screen's size is the X server's (take 1280x800 and 1024x600).

    Xvfb :98 -screen 0 1280x800x24 &
    DISPLAY=:98 python scripts/ui_states_screenshots.py CLIP --suffix 1280 [--model CARD]

The failure is made as a clip whose frames stop decoding would make it: the engine
raises ClipError after its first batch. The incomplete clip is CLIP re-encoded as a
.mov whose file ends inside its last frame (tests/corpus.py's helpers).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"


def cut_clip(clip: str, folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import faststart, last_sample_size, write_cv2

    from lusviewer.io import open_clip

    with open_clip(clip) as r:
        frames = list(r.iter_frames())
    src = write_cv2(folder / "src.mov", "mp4v", frames, fps=r.info.fps)
    assert src is not None
    data = faststart(src.read_bytes())
    path = folder / "incomplete.mov"
    path.write_bytes(data[: len(data) - last_sample_size(data) + 3])
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("--model", default=None)
    ap.add_argument("--suffix", default="")
    args = ap.parse_args()
    from PySide6.QtCore import QCoreApplication, QTimer
    from PySide6.QtWidgets import QApplication

    from lusviewer.io import ClipError
    from lusviewer.resources import default_model_path
    from lusviewer.ui.dialogs import ModelCardDialog, show_model_card
    from lusviewer.ui.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    QCoreApplication.setOrganizationName("lusviewer-screenshots")
    screen = app.primaryScreen().geometry()
    w = MainWindow(args.model or str(default_model_path()), quiet=True)
    w.setGeometry(screen)
    w.showMaximized()
    w.overlay_mode.setCurrentIndex(0)
    c = w.controller
    tmp = Path(tempfile.mkdtemp())
    incomplete = cut_clip(args.clip, tmp)
    suffix = f"-{args.suffix}" if args.suffix else ""

    def shot(name: str) -> None:
        app.processEvents()
        path = OUT / f"{name}{suffix}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True)
        print(path)

    steps: list[Any] = []

    def step() -> None:
        if steps:
            QTimer.singleShot(400, steps.pop(0))
        else:
            w.close()

    def fail_next_clip() -> None:
        engine = c._worker._engine
        real = engine.score_clip

        def score_clip(path: str, *, on_frames: Any, **kw: Any) -> Any:
            def frames(chunk: Any) -> None:
                on_frames(chunk)
                raise ClipError(path, f"frame {chunk.start + len(chunk.scores)} could not be decoded (truncated?)")

            engine.score_clip = real  # once
            return real(path, on_frames=frames, **kw)

        engine.score_clip = score_clip

    def failed() -> None:
        fail_next_clip()
        c.scoring_failed.connect(lambda _m: step())
        w.open_clip(args.clip)

    def incomplete_clip() -> None:
        c.scoring_finished.connect(lambda _r: step())
        w.open_clip(str(incomplete))

    def card() -> None:
        dialog = show_model_card(w, c.model_status, w._warn, c.model_warnings)
        assert isinstance(dialog, ModelCardDialog)
        QTimer.singleShot(400, lambda: (shot("viewer-model-card"), dialog.close(), step()))

    steps += [
        failed,
        lambda: (shot("viewer-failed"), step()),
        incomplete_clip,
        lambda: (shot("viewer-incomplete"), step()),
        card,
    ]
    c.model_ready.connect(lambda _st: step())
    app.exec()


if __name__ == "__main__":
    main()
