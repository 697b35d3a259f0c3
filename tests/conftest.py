"""Shared fixtures: tiny random-init models, synthetic clips, the real-data folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from lusviewer.io.synthetic import synthetic_frames, write_video

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings

    from lusviewer.ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test (with the reason) where it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (needs ../shared/data beside the project)")
    return p


def make_tiny_model(folder: Path, variant: str = "cnn_lstm", seed: int = 0, **inference: object) -> Path:
    import torch

    from lusviewer.model import HybridModel, ModelCard, ModelConfig, parameter_counts, save_model

    torch.manual_seed(seed)
    cfg = ModelConfig.tiny(variant)
    model = HybridModel(cfg).eval()
    card = ModelCard(
        name=f"tiny-{variant}",
        version="test",
        config=cfg,
        weights_file="",
        inference={"lstm_window": 12, "lstm_burn_in": 4, **inference},
        training={"data": "none (random init, for tests)"},
        parameters=parameter_counts(model),
    )
    return save_model(model, card, folder / f"tiny-{variant}.json", dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-frame 96x96 mp4 at 20 fps."""
    path = tmp_path_factory.mktemp("clips") / "synthetic.mp4"
    return write_video(path, synthetic_frames(40, size=96, seed=1), fps=20.0)


def make_dicom(path: Path, frames: np.ndarray, photometric: str, **attrs: object) -> Path:
    """Write an uncompressed ultrasound DICOM (multi-frame when frames has > 1 frame)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    n = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.SamplesPerPixel = 3 if frames.ndim == 4 else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    if n > 1:
        ds.NumberOfFrames = n
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = frames.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def no_leaked_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a QThread or a lusviewer decoding thread running (as
    napari's suite does); the Qt test modules use it for every test."""
    import threading

    from PySide6.QtCore import QThread

    started: list[QThread] = []
    original = QThread.start

    def start(self: QThread, *args: object) -> None:
        started.append(self)
        original(self, *args)

    monkeypatch.setattr(QThread, "start", start)
    yield
    leaked = [t.objectName() for t in started if t.isRunning()]
    assert not leaked, f"QThreads left running: {leaked}"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("lusviewer")], "threads left running"


# ------------------------------------------------------------------ the viewer's window
#: ms: loading a model or scoring under a loaded CI machine
WINDOW_TIMEOUT = 60_000


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    """The window's settings in an INI file of the test's own (never the user's)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def shown_window(qtbot: Any, model: Path | str, settings: QSettings) -> MainWindow:
    """The viewer with ``model``, shown, once its worker has loaded the model; qtbot closes it."""
    from lusviewer.ui.main_window import MainWindow

    w = MainWindow(str(model), settings, quiet=True)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.controller.model_status is not None, timeout=WINDOW_TIMEOUT)
    return w


@pytest.fixture
def window(qtbot: Any, tiny_model: Path, settings: QSettings) -> Iterator[MainWindow]:
    """The viewer with the tiny model, shown and loaded; closed after the test, its worker
    thread stopped."""
    w = shown_window(qtbot, tiny_model, settings)
    yield w
    w.close()
    assert not w.controller.thread_running
