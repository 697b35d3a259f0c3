"""One resolver for shipped files (sample clip, model), installed or bundled.

Looks, in order, in the PyInstaller bundle (``sys._MEIPASS``, where ``build.spec``
puts ``models/`` and ``resources/``), the package's own data (``lusviewer/_data/``:
a wheel or ``pip install .``, whose build copies the top-level ``models/`` and
``resources/`` there, see ``setup.py``), the source tree (the folder above the
package: a checkout or an editable install), and ``<prefix>/share/lusviewer``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MODEL_CARD = "lusviewer-compact.json"
SAMPLE_CLIP = "sample_clip.mp4"


_PACKAGE = Path(__file__).resolve().parent
#: Where a built (non-editable) install keeps the shipped files.
PACKAGE_DATA = _PACKAGE / "_data"
_SOURCE_TREE = _PACKAGE.parent


def _roots() -> list[Path]:
    roots = []
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        roots.append(Path(meipass))
    roots.append(PACKAGE_DATA)
    roots.append(_SOURCE_TREE)
    roots.append(Path(sys.prefix) / "share" / "lusviewer")
    return roots


def resource_path(*parts: str) -> Path:
    """The first existing ``<root>/<parts>``; if none exists, where it was expected
    (the source tree in a checkout, else the package's data), for the error message."""
    for root in _roots():
        p = root.joinpath(*parts)
        if p.exists():
            return p
    checkout = (_SOURCE_TREE / "pyproject.toml").is_file()
    return (_SOURCE_TREE if checkout else PACKAGE_DATA).joinpath(*parts)


def default_model_path() -> Path:
    """``$LUSVIEWER_MODEL`` if set, else the shipped model card."""
    env = os.environ.get("LUSVIEWER_MODEL")
    return Path(env) if env else resource_path("models", DEFAULT_MODEL_CARD)


def sample_clip_path() -> Path:
    return resource_path("resources", SAMPLE_CLIP)
