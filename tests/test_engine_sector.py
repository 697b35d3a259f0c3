"""The engine, Grad-CAM and the viewer's overlays for a card that crops to the ultrasound
sector (``input.crop: sector``) and for a calibration temperature (``inference.temperature``);
cards with neither keep the whole-frame behaviour exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from lusviewer.inference import ScoredFrames, ScoringEngine
from lusviewer.inference.saliency import grad_cam
from lusviewer.inference.sequence import sequence_logits
from lusviewer.io import open_clip
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.model import HybridModel, ModelCard, ModelConfig, ModelError, load_model, parameter_counts, save_model
from lusviewer.model.hybrid import CNNOutput
from lusviewer.model.preprocess import SECTOR_FRAMES, Sector, detect_sector, resize_frame, to_model_input


def _tiny(folder: Path, variant: str = "cnn", crop: str | None = None, **inference: object) -> Path:
    """A tiny random model (seed 0: the same weights whatever the card says)."""
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(variant)
    model = HybridModel(cfg).eval()
    name = f"tiny-{variant}-{crop or 'whole'}-{len(list(folder.glob('*.json')))}"
    card = ModelCard(
        name=name,
        version="test",
        config=cfg,
        weights_file="",
        preprocessing={} if crop is None else {"crop": crop},
        inference={"lstm_window": 12, "lstm_burn_in": 4, **inference},
        parameters=parameter_counts(model),
    )
    return save_model(model, card, folder / f"{name}.json", dtype=torch.float32)


def _engine(card: Path, batch_size: int = 7) -> ScoringEngine:
    # PyTorch: these tests compare with the model run by hand, bit for bit (the OpenVINO
    # path is compared with this one in test_fast_path.py).
    return ScoringEngine(load_model(card), device="cpu", precision="fp32", batch_size=batch_size, runtime="torch")


def _fan_frames(n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """96x128 frames: a speckled fan (moving) on the left 96 columns, still white device
    text at the top right: the sector is the fan, its square box 96 px."""
    for f in synthetic_frames(n, size=96, seed=seed):
        frame = np.zeros((96, 128, 3), np.uint8)
        frame[:, :96] = f
        cv2.putText(frame, "5cm", (98, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
        yield frame


def _decoded(path: Path) -> list[np.ndarray]:
    with open_clip(path) as r:
        return list(r.iter_frames())


def _cnn_by_hand(engine: ScoringEngine, small: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame probabilities and reconstruction errors of the CNN on model inputs."""
    with torch.inference_mode():
        x = to_model_input(np.stack(small))
        out = engine.model.cnn(x)
        assert out.reconstruction is not None
        err = (out.reconstruction - x).abs().mean((1, 2, 3))
    return torch.softmax(out.logits, 1).numpy(), err.numpy()


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sector_cards")
    return {
        "whole": _tiny(d),
        "sector": _tiny(d, crop="sector"),
        "none": _tiny(d, crop="none"),
        "lstm-sector": _tiny(d, "cnn_lstm", crop="sector"),
    }


@pytest.fixture(scope="module")
def fan_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """45 frames: more than SECTOR_FRAMES, not a multiple of the batch size."""
    return write_video(tmp_path_factory.mktemp("fan") / "fan.avi", _fan_frames(45), fourcc="MJPG")


def test_sector_card_scores_each_frame_cropped_to_the_sector(cards: dict[str, Path], fan_clip: Path) -> None:
    engine = _engine(cards["sector"])
    result = engine.score_clip(str(fan_clip))
    frames = _decoded(fan_clip)
    assert len(frames) == 45 > SECTOR_FRAMES
    sector = detect_sector(frames[:SECTOR_FRAMES])
    assert sector.found and not sector.mask[:14, 96:].any()  # the fan, not the text
    assert result.sector is not None and result.sector.box == sector.box
    assert np.array_equal(result.sector.mask, sector.mask)
    probs, err = _cnn_by_hand(engine, [sector.apply(f, engine.input_size) for f in frames])
    # frame i scored is frame i: every frame's own numbers (frames one apart differ by
    # more than ten times the tolerance)
    assert np.abs(np.diff(probs, axis=0)).max(1).min() > 1e-5 and np.abs(np.diff(err)).min() > 1e-5
    np.testing.assert_allclose(result.probs, probs, atol=1e-6)
    np.testing.assert_allclose(result.recon_error, err, atol=1e-6)  # on the masked input
    # the crop changed what the model saw
    whole = _engine(cards["whole"]).score_clip(str(fan_clip))
    assert whole.sector is None and np.abs(whole.probs - result.probs).max() > 1e-4


def test_sector_of_the_lstm_card_streams_the_same_frames(cards: dict[str, Path], fan_clip: Path) -> None:
    engine = _engine(cards["lstm-sector"], batch_size=5)
    chunks: list[ScoredFrames] = []
    result = engine.score_clip(str(fan_clip), on_frames=chunks.append)
    frames = _decoded(fan_clip)
    sector = detect_sector(frames[:SECTOR_FRAMES])
    with torch.inference_mode():
        out = engine.model.cnn(to_model_input(np.stack([sector.apply(f, engine.input_size) for f in frames])))
        assert engine.model.sequence is not None
        logits = sequence_logits(engine.model.sequence, out.features, window=12, burn_in=4)
    np.testing.assert_allclose(result.probs, torch.softmax(logits, 1).numpy(), atol=1e-5)
    assert np.array_equal(np.concatenate([c.probs for c in chunks]), result.probs)
    assert len(chunks) > 1 and all(c.sector is result.sector for c in chunks)  # known from the first batch on


def test_a_clip_shorter_than_the_sector_frames(cards: dict[str, Path], tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.avi", _fan_frames(10, seed=3), fourcc="MJPG")
    engine = _engine(cards["sector"], batch_size=4)
    result = engine.score_clip(str(path))
    frames = _decoded(path)
    sector = detect_sector(frames)
    assert len(result.scores) == 10 and sector.found
    assert result.sector is not None and result.sector.box == sector.box
    np.testing.assert_allclose(result.probs, _cnn_by_hand(engine, [sector.apply(f, 32) for f in frames])[0], atol=1e-5)
    again = engine.clip_sector(str(path))  # as the viewer's overlays ask for it before the result
    assert again is not None and again.box == sector.box and np.array_equal(again.mask, sector.mask)


def test_a_still_clip_without_a_sector_is_scored_whole(cards: dict[str, Path], tmp_path: Path) -> None:
    frame = np.zeros((96, 128, 3), np.uint8)
    cv2.putText(frame, "NO IMAGE", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    frame[40:60, 30:90] = 6  # dim, still
    path = write_video(tmp_path / "still.avi", [frame] * 12, fourcc="MJPG")
    result = _engine(cards["sector"]).score_clip(str(path))
    assert result.sector is not None and not result.sector.found
    whole = _engine(cards["whole"]).score_clip(str(path))
    assert np.array_equal(result.probs, whole.probs)  # the whole frame, resized: the very same numbers


def test_sector_is_found_before_the_rest_of_the_clip_is_read(
    cards: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_video(tmp_path / "long.avi", _fan_frames(200, seed=4), fourcc="MJPG")
    engine = _engine(cards["sector"], batch_size=4)
    read = [0]
    at_first_batch: list[int] = []
    with open_clip(path) as reader:
        original = reader.iter_frames

        def counting(start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
            for f in original(start, stop):
                read[0] += 1
                yield f

        monkeypatch.setattr(reader, "iter_frames", counting)
        result = engine.score_clip(reader, on_frames=lambda c: at_first_batch.append(read[0]))
    assert len(result.scores) == 200
    # the sector's frames, then a batch or so ahead (the prefetch queue): never the whole clip
    assert at_first_batch[0] <= SECTOR_FRAMES + 4 * 4


@pytest.mark.parametrize("variant", ["cnn", "cnn_lstm"])
def test_temperature_softens_and_keeps_the_scores(variant: str, tmp_path: Path, synthetic_clip: Path) -> None:
    absent = _engine(_tiny(tmp_path, variant)).score_clip(str(synthetic_clip))
    one = _engine(_tiny(tmp_path, variant, temperature=1.0)).score_clip(str(synthetic_clip))
    two = _engine(_tiny(tmp_path, variant, temperature=2.0)).score_clip(str(synthetic_clip))
    assert np.array_equal(absent.probs, one.probs)  # T absent is T = 1, exactly
    assert np.array_equal(two.scores, one.scores)
    # softmax(z / 2) is the normalised square root of softmax(z)
    root = np.sqrt(one.probs.astype(np.float64))
    np.testing.assert_allclose(two.probs, root / root.sum(1, keepdims=True), atol=1e-5)
    assert np.all(two.probs.max(1) < one.probs.max(1))


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), float("inf"), "2", True, None])
def test_impossible_temperature_is_refused_naming_the_field(value: object, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"inference\.temperature = .* finite number above 0"):
        _tiny(tmp_path, temperature=value)


def test_unknown_crop_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"input\.crop = 'square' is impossible"):
        _tiny(tmp_path, crop="square")


def test_temperature_is_bound_and_its_check_note_is_not(tmp_path: Path) -> None:
    card_path = _tiny(tmp_path, crop="sector", temperature=1.7, calibration_check="ECE 0.12 -> 0.03 on 16 clips")
    data = json.loads(card_path.read_text())
    assert data["input"]["crop"] == "sector"
    data["inference"]["calibration_check"] = "edited by hand"
    card_path.write_text(json.dumps(data))
    loaded = load_model(card_path)
    assert loaded.card.temperature == 1.7 and loaded.card.crop == "sector"
    data["inference"]["temperature"] = 1.0
    card_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"changed: inference\.temperature"):
        load_model(card_path)


def test_whole_frame_cards_are_scored_as_before(cards: dict[str, Path], synthetic_clip: Path) -> None:
    """No ``crop`` (or ``crop: none``) and no temperature: the resized whole frame, the plain softmax."""
    frames = _decoded(synthetic_clip)
    for key in ("whole", "none"):
        engine = _engine(cards[key], batch_size=len(frames))
        result = engine.score_clip(str(synthetic_clip))
        assert result.sector is None and engine.clip_sector(str(synthetic_clip)) is None
        probs, err = _cnn_by_hand(engine, [resize_frame(f, engine.input_size) for f in frames])
        assert np.array_equal(result.probs, probs.astype(np.float32))  # one batch, as here: bit for bit
        assert np.array_equal(result.recon_error, err.astype(np.float32))


def test_an_older_card_is_scored_as_before(tmp_path: Path) -> None:
    """A card from before the sector crop, calibration and fitted clip rules (as the previous
    shipped model's): whole frames, softmax of the raw logits, bit for bit."""
    from conftest import make_tiny_model

    loaded = load_model(make_tiny_model(tmp_path))
    assert loaded.card.crop == "none" and loaded.card.temperature == 1.0 and loaded.card.clip_rule is None
    path = write_video(tmp_path / "s.avi", synthetic_frames(20, size=96, seed=2), fourcc="MJPG")
    engine = ScoringEngine(loaded, device="cpu", precision="fp32", batch_size=32, runtime="torch")  # bit for bit
    assert engine.rule == "persistent"
    result = engine.score_clip(str(path))
    assert result.sector is None
    frames = _decoded(path)
    size = loaded.card.config.input_size
    with torch.inference_mode():
        out = engine.model.cnn(to_model_input(np.stack([resize_frame(f, size) for f in frames])))
        assert engine.model.sequence is not None
        logits = sequence_logits(engine.model.sequence, out.features.float(), window=12, burn_in=4)
    assert np.array_equal(result.probs, torch.softmax(logits.float(), 1).numpy())
    assert np.array_equal(result.scores, result.probs.argmax(1))


def test_reconstruction_maps_back_onto_the_sector(cards: dict[str, Path], fan_clip: Path) -> None:
    engine = _engine(cards["sector"])
    frames = _decoded(fan_clip)
    sector = detect_sector(frames[:SECTOR_FRAMES])
    rec = engine.reconstruct(frames[5], sector)
    assert rec is not None and rec.shape == frames[5].shape and rec.dtype == np.uint8
    assert np.array_equal(rec[~sector.mask], frames[5][~sector.mask])  # outside: the frame itself
    assert np.abs(rec[sector.mask].astype(int) - frames[5][sector.mask]).mean() > 1  # inside: the model's
    # no sector found: the same as the whole-frame path
    whole = Sector.whole(*frames[5].shape[:2])
    assert np.array_equal(engine.reconstruct(frames[5], whole), engine.reconstruct(frames[5]))  # type: ignore[arg-type]


def test_grad_cam_is_taken_on_the_sector_and_zero_outside(cards: dict[str, Path], fan_clip: Path) -> None:
    engine = _engine(cards["sector"])
    frames = _decoded(fan_clip)
    sector = detect_sector(frames[:SECTOR_FRAMES])
    cam, cls = grad_cam(engine.model.cnn, frames[7], sector=sector)
    assert cam.shape == frames[7].shape[:2] and cam.dtype == np.float32
    assert cam[~sector.mask].max() == 0 and cam.max() > 0
    small = sector.apply(frames[7], 32)
    with torch.inference_mode():
        assert cls == int(engine.model.cnn(to_model_input(small[None])).logits.argmax())  # what the model saw
    # no sector found: the old whole-frame map
    whole = Sector.whole(*frames[7].shape[:2])
    assert np.array_equal(
        grad_cam(engine.model.cnn, frames[7], sector=whole)[0], grad_cam(engine.model.cnn, frames[7])[0]
    )


class _Compact(nn.Module):
    """A CNN that names its own Grad-CAM layer (as the compact variant does)."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = ModelConfig.tiny("cnn")
        self.cam_layer = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> CNNOutput:
        f = torch.relu(self.cam_layer(x)).mean((2, 3))
        return CNNOutput(self.fc(f), f, None)


def test_grad_cam_uses_the_cnn_s_own_layer() -> None:
    torch.manual_seed(0)
    cnn = _Compact()
    frame = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    cam, cls = grad_cam(cnn, frame, target=2)
    assert cam.shape == (40, 50) and cls == 2
    # by hand, at cam_layer
    act = cnn.cam_layer(to_model_input(resize_frame(frame, 32)[None]))
    act.retain_grad()
    cnn.fc(torch.relu(act).mean((2, 3)))[0, 2].backward()
    assert act.grad is not None
    by_hand = torch.relu((act.grad.mean((2, 3))[:, :, None, None] * act).sum(1))[0].detach().numpy()
    by_hand = cv2.resize(by_hand / by_hand.max(), (50, 40), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(cam, np.clip(by_hand, 0, 1), atol=1e-5)
    del cnn.cam_layer
    with pytest.raises(ValueError, match="no layer to take Grad-CAM at"):
        grad_cam(cnn, frame)


def test_viewer_overlays_use_the_clip_s_sector(cards: dict[str, Path], fan_clip: Path, qtbot: object) -> None:
    """The worker's overlay of a frame lines up with it: cropped to the clip's sector
    before the clip is scored (found on its first frames), while it is scored (the
    engine's, not found again) and after (the result's)."""
    from lusviewer.ui.worker import InferenceWorker

    worker = InferenceWorker()
    got: list[tuple[int, object, object]] = []
    failed: list[str] = []
    worker.overlay_ready.connect(lambda req, index, rec, cam: got.append((index, rec, cam)))
    worker.overlay_failed.connect(lambda req, msg: failed.append(msg))
    worker.load_model(str(cards["sector"]), "cpu")
    frames = _decoded(fan_clip)
    sector = detect_sector(frames[:SECTOR_FRAMES])
    worker.overlay(1, 3, frames[3], True, str(fan_clip))  # not scored yet
    assert not failed and len(got) == 1
    _, rec, cam = got[0]
    assert isinstance(rec, np.ndarray) and isinstance(cam, np.ndarray)
    assert np.array_equal(rec[~sector.mask], frames[3][~sector.mask]) and cam[~sector.mask].max() == 0
    done: list[object] = []
    worker.job_finished.connect(lambda job, result: done.append(result))
    import threading

    def not_again(clip: object) -> None:
        raise AssertionError("the sector was found again")

    worker._sector = None
    assert worker._engine is not None
    worker._engine.clip_sector = not_again  # type: ignore[assignment,method-assign]
    worker._pending = (2, 3, frames[3], True, str(fan_clip))  # waiting: served between the batches
    worker.score(1, str(fan_clip), threading.Event())
    assert len(done) == 1 and not failed and len(got) == 2
    worker.overlay(3, 3, frames[3], True, str(fan_clip))
    for _, rec_now, cam_now in got[1:]:
        assert np.array_equal(rec_now, rec) and np.array_equal(cam_now, cam)  # type: ignore[arg-type]


@pytest.mark.parametrize(("odd", "match"), [(3, "first frames differ in size"), (40, "frame 40 is 64x48")])
def test_a_frame_of_another_size_is_a_clip_error(
    odd: int, match: str, cards: dict[str, Path], fan_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lusviewer.io import ClipError

    with open_clip(fan_clip) as reader:
        original = reader.iter_frames

        def frames(start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
            for i, f in enumerate(original(start, stop)):
                yield np.zeros((48, 64, 3), np.uint8) if i == odd else f

        monkeypatch.setattr(reader, "iter_frames", frames)
        with pytest.raises(ClipError, match=rf"fan\.avi: .*{match}"):
            _engine(cards["sector"]).score_clip(reader)
