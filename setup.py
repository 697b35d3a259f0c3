"""Build hook: the wheel carries the shipped model and sample clip as package data.

They live at the top of the source tree (``models/``, ``resources/``), where the
checkout, the editable install and the PyInstaller bundle (``build.spec``) find them;
a wheel has no such place, so the build copies them into ``lusviewer/_data/`` inside
the wheel, where :mod:`lusviewer.resources` looks first. Everything else about the
build is in ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Top-level folder -> the files (globs) of it that a working install needs.
SHIPPED = {
    "models": ["lusviewer-compact.json", "lusviewer-compact.safetensors"],
    "resources": ["sample_clip.mp4", "icons/*.png", "icons/*.svg"],
}
DATA_DIR = "lusviewer/_data"


def shipped_files() -> list[Path]:
    """The files, relative to the source tree; a missing one fails the build (a wheel
    without its model would install a lusviewer that cannot score)."""
    files = []
    for folder, patterns in SHIPPED.items():
        for pattern in patterns:
            found = sorted((ROOT / folder).glob(pattern))
            if not found:
                raise FileNotFoundError(f"{folder}/{pattern}: missing from the source tree; the wheel needs it")
            files += [f.relative_to(ROOT) for f in found]
    return files


class BuildWithShippedData(build_py):
    """``build_py`` that also copies :data:`SHIPPED` to ``lusviewer/_data/`` (not for
    editable installs, which read the source tree)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for rel in shipped_files():
            target = Path(self.build_lib) / DATA_DIR / rel
            self.mkpath(str(target.parent))
            self.copy_file(str(ROOT / rel), str(target))


setup(cmdclass={"build_py": BuildWithShippedData})
