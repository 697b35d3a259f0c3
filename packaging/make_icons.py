"""Render resources/icons/lusviewer.svg to the PNG sizes of the hicolor theme, a
Windows .ico and a macOS .icns (Qt's SVG renderer and image writers; run offscreen).

    QT_QPA_PLATFORM=offscreen python packaging/make_icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"


def render(renderer: QSvgRenderer, size: int) -> QImage:
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(p)
    p.end()
    return img


def main() -> int:
    _app = QGuiApplication(sys.argv)
    renderer = QSvgRenderer(str(ICONS / "lusviewer.svg"))
    if not renderer.isValid():
        print("cannot read lusviewer.svg", file=sys.stderr)
        return 1
    for size in SIZES:
        out = ICONS / f"lusviewer-{size}.png"
        if not render(renderer, size).save(str(out)):
            print(f"cannot write {out}", file=sys.stderr)
            return 1
    # .ico holds one image per size; Qt writes the 256 px one (Windows scales it down well).
    ok = render(renderer, 256).save(str(ICONS / "lusviewer.ico")) and render(renderer, 512).save(
        str(ICONS / "lusviewer.icns")
    )
    print(f"wrote {len(SIZES)} PNGs, lusviewer.ico and lusviewer.icns to {ICONS}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
