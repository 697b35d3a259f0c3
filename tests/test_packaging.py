"""The installer's inputs, cheaply (the full .deb build and install test is
packaging/build_deb.sh + packaging/test_deb.sh; docs/packaging.md says why CI does
not run them on every change)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_dicom

from lusviewer.io.clip import is_dicom_file

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(PACKAGING / "lusviewer.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_opens_clips_with_the_app() -> None:
    entry = _desktop_entry()
    assert entry["Exec"] == "lusviewer %f" and entry["Icon"] == "lusviewer" and entry["Terminal"] == "false"
    mimes = set(entry["MimeType"].rstrip(";").split(";"))
    assert {"video/mp4", "video/x-msvideo", "video/quicktime", "video/mpeg", "image/gif", "application/dicom"} <= mimes
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.skip("desktop-file-validate not installed (apt-get install desktop-file-utils)")
    run = subprocess.run([validate, str(PACKAGING / "lusviewer.desktop")], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr


def test_dicom_mime_magic_matches_the_reader(tmp_path: Path) -> None:
    """The MIME definition's magic (what the desktop uses for 'Open with') and the
    reader's DICOM sniffing agree on an extension-less DICOM file."""
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    mime = ET.parse(PACKAGING / "lusviewer-mime.xml").getroot().find("m:mime-type", ns)
    assert mime is not None and mime.get("type") == "application/dicom"
    match = mime.find("m:magic/m:match", ns)
    assert match is not None
    offset, value = int(match.get("offset", "-1")), match.get("value", "").encode()
    path = make_dicom(tmp_path / "IM0001", np.zeros((2, 16, 16), np.uint8), "MONOCHROME2")
    assert path.read_bytes()[offset : offset + len(value)] == value
    assert is_dicom_file(path)


@pytest.mark.parametrize("size", [16, 22, 24, 32, 48, 64, 128, 256, 512])
def test_icons_at_every_size(size: int) -> None:
    img = cv2.imread(str(ROOT / "resources" / "icons" / f"lusviewer-{size}.png"), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (size, size, 4)
    assert img[..., 3].min() == 0 and img[..., 3].max() == 255  # rounded corners: transparent outside


def test_runtime_hook_lets_torchvision_import_without_its_ops() -> None:
    """packaging/pyi_rth_torchvision_ops.py: a fake kernel for a torchvision op that
    does not exist is skipped; any other registration goes through unchanged."""
    code = f"""
exec(open({str(PACKAGING / "pyi_rth_torchvision_ops.py")!r}).read())
import torch
fn = lambda x: x
assert torch.library.register_fake("torchvision::no_such_op")(fn) is fn
assert torch.library.register_fake("torchvision::no_such_op", fn) is fn
torch.library.define("lvtest::double", "(Tensor x) -> Tensor")
torch.library.register_fake("lvtest::double")(lambda x: torch.empty_like(x))
try:
    torch.library.register_fake("lvtest::no_such_op")(fn)
except RuntimeError:
    print("other namespaces still fail")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "other namespaces still fail" in run.stdout


def test_build_spec_bundles_the_model_and_the_sample() -> None:
    spec = (ROOT / "build.spec").read_text()
    for rel in (
        "models/lusviewer-hybrid.json",
        "models/lusviewer-hybrid.safetensors",
        "resources/sample_clip.mp4",
        "packaging/pyi_rth_torchvision_ops.py",
        "packaging/launcher.py",
    ):
        assert Path(rel).name in spec and (ROOT / rel).is_file()
    for name in ("_C_stable", "image_stable", '"triton"', '"pytest"', '"tensorboard"', '"tkinter"'):
        assert name in spec
