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
        "models/lusviewer-compact.json",
        "models/lusviewer-compact.safetensors",
        "resources/sample_clip.mp4",
        "packaging/pyi_rth_torchvision_ops.py",
        "packaging/launcher.py",
    ):
        assert Path(rel).name in spec and (ROOT / rel).is_file()
    for name in ("_C_stable", "image_stable", '"triton"', '"pytest"', '"tensorboard"', '"tkinter"'):
        assert name in spec


def test_resource_resolver_finds_bundle_wheel_and_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One resolver, three layouts: the PyInstaller bundle (sys._MEIPASS/models), a built
    install (lusviewer/_data/models), a checkout or editable install (models/ beside the package)."""
    from lusviewer import resources

    def layout(name: str) -> Path:
        root = tmp_path / name
        (root / "models").mkdir(parents=True)
        (root / "models" / resources.DEFAULT_MODEL_CARD).write_text("{}")
        (root / "resources").mkdir()
        (root / "resources" / resources.SAMPLE_CLIP).write_bytes(b"")
        return root

    bundle, data, checkout = layout("bundle"), layout("site-packages/lusviewer/_data"), layout("checkout")
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.delenv("LUSVIEWER_MODEL", raising=False)
    monkeypatch.setattr(resources, "PACKAGE_DATA", tmp_path / "checkout" / "lusviewer" / "_data")  # none in a checkout
    monkeypatch.setattr(resources, "_SOURCE_TREE", checkout)
    assert resources.default_model_path() == checkout / "models" / resources.DEFAULT_MODEL_CARD
    monkeypatch.setattr(resources, "PACKAGE_DATA", data)
    monkeypatch.setattr(resources, "_SOURCE_TREE", tmp_path / "site-packages")  # a wheel: no models/ beside
    assert resources.default_model_path() == data / "models" / resources.DEFAULT_MODEL_CARD
    assert resources.sample_clip_path() == data / "resources" / resources.SAMPLE_CLIP
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    assert resources.default_model_path() == bundle / "models" / resources.DEFAULT_MODEL_CARD
    monkeypatch.delattr(sys, "_MEIPASS")
    monkeypatch.setattr(resources, "PACKAGE_DATA", tmp_path / "nothing")  # nothing anywhere: named where expected
    assert resources.resource_path("models", "x.json") == tmp_path / "nothing" / "models" / "x.json"


def test_setup_ships_what_the_resolver_and_build_spec_need() -> None:
    """The wheel's build hook (setup.py) and build.spec carry the same shipped files."""
    text = (ROOT / "setup.py").read_text()
    assert "setup(cmdclass=" in text
    manifest = (ROOT / "MANIFEST.in").read_text()
    for rel in ("models/lusviewer-compact.json", "models/lusviewer-compact.safetensors", "resources/sample_clip.mp4"):
        assert Path(rel).name in text and rel in manifest and (ROOT / rel).is_file()


@pytest.mark.slow
def test_wheel_installs_a_self_contained_lusviewer(tmp_path: Path) -> None:
    """`pip wheel .` then install it into a fresh venv apart from the checkout (run from
    elsewhere, so the checkout is not importable): `lusviewer --self-test` finds the
    shipped model and sample clip inside the installed package and passes. (The venv sees
    the system's site-packages for torch & co.; the wheel's lusviewer shadows any other.)"""
    import os
    import time

    src = tmp_path / "src"  # a copy: the in-tree build writes build/ and *.egg-info
    src.mkdir()
    for rel in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(ROOT / rel, src / rel)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_data")
    for rel in ("lusviewer", "resources"):
        shutil.copytree(ROOT / rel, src / rel, ignore=ignore)
    (src / "models").mkdir()
    for f in (ROOT / "models").glob("lusviewer-compact.*"):
        os.symlink(f, src / "models" / f.name)  # 108 MB: linked, not copied (the build reads through it)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUSVIEWER_MODEL", "PIP_REQUIRE_VIRTUALENV")}
    t0 = time.perf_counter()

    def run(*cmd: str | Path, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
        assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-2000:])
        return out

    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ".", cwd=src)
    (wheel,) = dist.glob("lusviewer-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("models/lusviewer-compact.json", "models/lusviewer-compact.safetensors", "resources/sample_clip.mp4"):
        assert f"lusviewer/_data/{rel}" in names
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        py,
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        "--force-reinstall",
        wheel,
    )
    built_s = time.perf_counter() - t0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(
        py, "-c", "import lusviewer.resources as r; print(r.__file__); print(r.default_model_path())", cwd=elsewhere
    )
    module, model = where.stdout.split("\n")[:2]
    assert module.startswith(str(venv)) and model.startswith(str(venv)), where.stdout
    shutil.rmtree(src)  # nothing of the checkout's copy is needed any more
    out = run(bindir / "lusviewer", "--self-test", cwd=elsewhere)
    assert out.stdout.startswith("lusviewer self-test ok:"), out.stdout
    print(f"wheel built and installed in {built_s:.0f} s; self-test done at {time.perf_counter() - t0:.0f} s")
