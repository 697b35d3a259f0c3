"""The decoded-frame cache shared by folds run side by side (scripts/gpu_session.sh)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lusviewer.training import data


def test_side_by_side_writers_of_one_clip_all_get_its_frames(
    tmp_path: Path, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several decoders of the same clip at once (folds side by side): every one gets the
    frames and one cache file is left, no temporary file (a shared temporary name made
    all but the first fail with 'No such file or directory')."""
    real = data.decode_clip

    def slow(path: str, size: int, crop: str = "none") -> np.ndarray:
        arr = real(path, size, crop)
        time.sleep(0.3)  # every writer decodes before any writes
        return arr

    real_replace = data.os.replace

    def slow_replace(src: str | Path, dst: str | Path) -> None:
        time.sleep(0.2)  # every writer has saved its temporary file before any renames it
        real_replace(src, dst)

    monkeypatch.setattr(data, "decode_clip", slow)
    monkeypatch.setattr(data.os, "replace", slow_replace)
    got: list[np.ndarray] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            got.append(data.cached_frames(str(synthetic_clip), 32, tmp_path / "cache"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(got) == 4
    assert all(np.array_equal(g, got[0]) for g in got)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [next((tmp_path / "cache").glob("*.npy")).name]
    assert np.array_equal(data.cached_frames(str(synthetic_clip), 32, tmp_path / "cache"), got[0])
