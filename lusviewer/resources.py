"""One resolver for shipped files (sample clip, model), installed or bundled.

Looks, in order, in the PyInstaller bundle (``sys._MEIPASS``), the source tree
(the folder above the package: an editable install or a checkout), and
``<prefix>/share/lusviewer``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MODEL_CARD = "lusviewer-hybrid.json"
SAMPLE_CLIP = "sample_clip.mp4"


def _roots() -> list[Path]:
    roots = []
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        roots.append(Path(meipass))
    roots.append(Path(__file__).resolve().parent.parent)
    roots.append(Path(sys.prefix) / "share" / "lusviewer")
    return roots


def resource_path(*parts: str) -> Path:
    """The first existing ``<root>/<parts>``; the source-tree path if none exists."""
    for root in _roots():
        p = root.joinpath(*parts)
        if p.exists():
            return p
    return _roots()[-2].joinpath(*parts)


def default_model_path() -> Path:
    """``$LUSVIEWER_MODEL`` if set, else the shipped model card."""
    env = os.environ.get("LUSVIEWER_MODEL")
    return Path(env) if env else resource_path("models", DEFAULT_MODEL_CARD)


def sample_clip_path() -> Path:
    return resource_path("resources", SAMPLE_CLIP)
