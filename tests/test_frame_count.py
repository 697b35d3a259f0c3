"""The frame count of a clip whose header is wrong: what scoring decoded is the clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_dicom

from lusviewer.inference import ScoringEngine
from lusviewer.io import open_clip
from lusviewer.io.synthetic import synthetic_frames
from lusviewer.model import load_model


def rle_dicom(path: Path, n_frames: int, claimed: int) -> Path:
    """An RLE-compressed (encapsulated) DICOM of ``n_frames`` frames whose NumberOfFrames
    says ``claimed``: its reader cannot count the frames without decoding them."""
    import pydicom
    from pydicom.uid import RLELossless

    frames = np.stack([f[:, :, 0] for f in synthetic_frames(n_frames, size=32, seed=9)])
    ds = pydicom.dcmread(make_dicom(path, frames, "MONOCHROME2"))
    ds.compress(RLELossless)
    ds.NumberOfFrames = claimed
    ds.save_as(path)
    return path


def test_result_counts_the_frames_decoded_and_leaves_the_callers_reader(tiny_model: Path, tmp_path: Path) -> None:
    engine = ScoringEngine(load_model(tiny_model), device="cpu", precision="fp32")
    with open_clip(rle_dicom(tmp_path / "over.dcm", 12, claimed=20)) as reader:
        said = reader.info
        result = engine.score_clip(reader)
        assert len(result.scores) == result.info.frame_count == 12
        assert reader.info is said  # the caller's reader is not rewritten behind its back
