"""A clip's frames as the model sees them, written once (:func:`model_frames`) and used by
the scoring engine, the folder scorer's decode workers, training's frame cache and the
Grad-CAM script: the four give the very same frame i, on clips shorter than, exactly
and longer than the SECTOR_FRAMES the sector is found on; and only those first frames
are ever held."""

from __future__ import annotations

import importlib.util
import queue
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch

from lusviewer.inference import ScoringEngine
from lusviewer.inference.folder_decode import _END, _FRAMES, _START, _Collect, _decode_clip
from lusviewer.io import ClipError, open_clip
from lusviewer.io.synthetic import synthetic_frames
from lusviewer.model import HybridModel, ModelCard, ModelConfig, load_model, parameter_counts, save_model
from lusviewer.model.preprocess import SECTOR_FRAMES, Sector, detect_sector, model_frames, resize_frame
from lusviewer.training.data import decode_clip

SIZE = 32  # ModelConfig.tiny's input size


def _gradcam_script() -> ModuleType:
    path = Path(__file__).parents[1] / "scripts" / "gradcam_corners.py"
    spec = importlib.util.spec_from_file_location("gradcam_corners", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fan_clip(folder: Path, n: int) -> Path:
    """``n`` 72x96 PNG frames (lossless: what is read is what was drawn): a moving
    speckled fan on the left 72 columns, still device text at the top right."""
    folder.mkdir(parents=True)
    for i, f in enumerate(synthetic_frames(n, size=72, seed=n)):
        frame = np.zeros((72, 96, 3), np.uint8)
        frame[:, :72] = f
        cv2.putText(frame, "5cm", (74, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("model_frames")
    return {n: _fan_clip(d / f"fan{n}", n) for n in (SECTOR_FRAMES - 12, SECTOR_FRAMES, SECTOR_FRAMES + 13)}


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScoringEngine]:
    d = tmp_path_factory.mktemp("model_frames_cards")
    out = {}
    for crop in ("none", "sector"):
        torch.manual_seed(0)
        cfg = ModelConfig.tiny("cnn")
        model = HybridModel(cfg).eval()
        card = ModelCard(
            name=f"tiny-{crop}",
            version="test",
            config=cfg,
            weights_file="",
            preprocessing={"crop": crop},
            parameters=parameter_counts(model),
        )
        path = save_model(model, card, d / f"tiny-{crop}.json", dtype=torch.float32)
        # batches of 7: they cut across the 32 first frames and end part-way
        out[crop] = ScoringEngine(load_model(path), device="cpu", precision="fp32", batch_size=7, runtime="torch")
    return out


def _by_engine(engine: ScoringEngine, clip: Path) -> tuple[np.ndarray, Sector | None]:
    found: list[Sector] = []
    with open_clip(clip) as reader:
        batches = list(engine._batches(reader, None, found))
    return np.concatenate(batches), found[0] if found else None


def _by_folder_worker(clip: Path, crop: str) -> tuple[np.ndarray, Sector | None]:
    out: queue.Queue[tuple[object, ...]] = queue.Queue()
    assert _decode_clip(0, str(clip), out, threading.Event(), crop, SIZE, 5, 0, [0], _Collect())
    items = []
    while not out.empty():
        items.append(out.get())
    assert items[0][0] == _START and items[-1][0] == _END
    assert all(item[0] == _FRAMES for item in items[1:-1])
    sector = items[0][2]
    assert sector is None or isinstance(sector, Sector)
    return np.concatenate([item[2] for item in items[1:-1]]), sector  # type: ignore[misc]


def _by_hand(clip: Path, crop: str) -> np.ndarray:
    """The reference: every frame decoded, the sector found on the first SECTOR_FRAMES."""
    with open_clip(clip) as reader:
        frames = list(reader.iter_frames())
    if crop == "none":
        return np.stack([resize_frame(f, SIZE) for f in frames])
    sector = detect_sector(frames[:SECTOR_FRAMES])
    return np.stack([sector.apply(f, SIZE) for f in frames])


@pytest.mark.parametrize("crop", ["none", "sector"])
@pytest.mark.parametrize("n", [SECTOR_FRAMES - 12, SECTOR_FRAMES, SECTOR_FRAMES + 13])
def test_the_four_paths_give_the_same_frame_i(
    n: int, crop: str, clips: dict[int, Path], engines: dict[str, ScoringEngine]
) -> None:
    clip = clips[n]
    want = _by_hand(clip, crop)
    assert want.shape == (n, SIZE, SIZE, 3)
    # frames one apart differ: a frame out of place would show
    assert all(not np.array_equal(want[i], want[i + 1]) for i in range(n - 1))
    engine, engine_sector = _by_engine(engines[crop], clip)
    folder, folder_sector = _by_folder_worker(clip, crop)
    cached = decode_clip(str(clip), SIZE, crop)
    for got in (engine, folder, cached):
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    # the Grad-CAM script: the middle frame, through the sector it finds, as grad_cam crops it
    frame, cam_sector, m = _gradcam_script().middle_frame(str(clip), crop, SIZE)
    assert m == 0
    small = resize_frame(frame, SIZE) if cam_sector is None else cam_sector.apply(frame, SIZE)
    assert np.array_equal(small, want[n // 2])
    sectors = [engine_sector, folder_sector, cam_sector]
    if crop == "none":
        assert sectors == [None, None, None]
    else:
        assert all(s is not None and s.found for s in sectors)
        assert len({s.box for s in sectors if s is not None}) == 1
        assert all(s is not None and np.array_equal(s.mask, engine_sector.mask) for s in sectors)  # type: ignore[union-attr]


class _Source:
    """Raw 40x48 frames made on demand (frame i from seed i), counting how many have been
    taken and keeping only weak references to them: which are still alive."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = 0
        self.refs: list[weakref.ref[np.ndarray]] = []

    @staticmethod
    def frame(i: int) -> np.ndarray:
        f = np.zeros((40, 48, 3), np.uint8)
        f[4:36, 4:36] = np.random.default_rng(i).integers(20, 255, (32, 32, 1), dtype=np.uint8)
        return f

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n):
            f = self.frame(i)
            self.taken += 1
            self.refs.append(weakref.ref(f))
            yield f

    def alive(self) -> int:
        return sum(r() is not None for r in self.refs)


@pytest.mark.parametrize("crop", ["none", "sector"])
def test_only_the_first_frames_are_held(crop: str) -> None:
    n = 3 * SECTOR_FRAMES + 5
    source = _Source(n)
    sector, frames = model_frames(source, 16, crop)
    head = SECTOR_FRAMES if crop == "sector" else 0
    assert source.taken == head  # the sector's frames are read at once, the rest as asked for
    assert (sector is not None) == (crop == "sector")
    if sector is not None:
        want_sector = detect_sector([_Source.frame(i) for i in range(SECTOR_FRAMES)])
        assert sector.found and sector.box == want_sector.box and np.array_equal(sector.mask, want_sector.mask)
    most_alive = 0
    for i, small in frames:
        assert source.taken == max(head, i + 1)  # never a frame ahead of the one yielded, past the head
        alive = source.alive()
        most_alive = max(most_alive, alive)
        # the head not yet yielded, and the frame just yielded; past the head, one frame
        assert alive <= max(head - i, 1)
        want = _Source.frame(i)
        assert np.array_equal(small, resize_frame(want, 16) if sector is None else sector.apply(want, 16))
    assert i == n - 1 and source.taken == n
    assert most_alive == max(head, 1)


def test_a_clip_without_frames_has_no_sector() -> None:
    for crop in ("none", "sector"):
        sector, frames = model_frames(iter(()), 16, crop)
        assert sector is None and list(frames) == []
    with pytest.raises(ValueError, match="unknown crop 'fan'"):
        model_frames(iter(()), 16, "fan")


@pytest.mark.parametrize(("odd", "match"), [(3, "first frames differ in size"), (40, "frame 40 is 64x48")])
def test_frames_no_one_sector_fits_raise_the_callers_error(odd: int, match: str) -> None:
    def frames() -> Iterator[np.ndarray]:
        for i in range(50):
            yield np.zeros((48, 64, 3), np.uint8) if i == odd else _Source.frame(i)

    with pytest.raises(ClipError, match=rf"clip\.avi: .*{match}"):
        _, out = model_frames(frames(), 16, "sector", error=lambda reason: ClipError("clip.avi", reason))
        list(out)
    with pytest.raises(ValueError, match=match):  # the default
        list(model_frames(frames(), 16, "sector")[1])
    # whole frames resized: any size goes
    assert len(list(model_frames(frames(), 16, "none")[1])) == 50
