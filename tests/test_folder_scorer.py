"""The folder scorer (:mod:`lusviewer.inference.folder`) on the CPU: frames of several
clips batched together, decoded by spawned processes, give each clip the engine's
result; a bad clip is named and the others carried on; no decoding process outlives a
run, however it ends; the frames waiting between decoding and the CNN stay bounded."""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, SHARED_DATA, make_tiny_model, shared_data

from lusviewer.inference import Cancelled, ScoringEngine, sequence_logits
from lusviewer.inference.folder import ClipOutcome, FolderScorer, window_logits
from lusviewer.io import ClipError
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.model import HybridModel, ModelCard, ModelConfig, load_model, parameter_counts, save_model
from lusviewer.model.hybrid import SequenceHead

SAMPLE = ROOT / "resources" / "sample_clip.mp4"
CHUNK, BATCH, QUEUE_CHUNKS = 8, 16, 2
LONG = 300  # frames of the long clip: far more than may wait between decoding and the CNN


def _engine(card: Path, batch_size: int = BATCH) -> ScoringEngine:
    return ScoringEngine(load_model(card), device="cpu", precision="fp32", batch_size=batch_size)


def _real_clips(n: int) -> list[Path]:
    return sorted((SHARED_DATA / "covid-blues" / "videos").glob("*.mp4"))[:n]


def _corrupt_folder(folder: Path) -> Path:
    """A clip of 20 frame images whose 11th cannot be decoded: it fails part-way."""
    folder.mkdir()
    for i, f in enumerate(synthetic_frames(20, size=64, seed=4)):
        if i == 10:
            (folder / f"frame_{i:03d}.png").write_bytes(b"not a png")
        else:
            cv2.imwrite(str(folder / f"frame_{i:03d}.png"), f[..., ::-1])
    return folder


def _no_children(pids: list[int]) -> None:
    assert pids, "the run started no decoding process"
    assert multiprocessing.active_children() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, synthetic_clip: Path) -> dict[str, Any]:
    """One folder run over good and bad clips (real ones where ../shared is present)."""
    d = tmp_path_factory.mktemp("folder")
    card = make_tiny_model(d)
    long_clip = write_video(d / "long.mp4", synthetic_frames(LONG, size=64, seed=2), fps=25.0)
    bad = d / "bad.mp4"
    bad.write_bytes(b"this is no video")
    clips = [
        str(SAMPLE),
        str(bad),
        str(synthetic_clip),
        str(_corrupt_folder(d / "corrupt_frames")),
        *map(str, _real_clips(3)),
        str(long_clip),
        str(d / "missing.mp4"),
    ]
    engine = _engine(card)
    scorer = FolderScorer(engine, workers=2, chunk_frames=CHUNK, queue_chunks=QUEUE_CHUNKS)
    outcomes = list(scorer.score(clips))
    return {"card": card, "engine": engine, "clips": clips, "outcomes": outcomes, "stats": scorer.stats}


def _same_as_engine(engine: ScoringEngine, outcome: ClipOutcome) -> None:
    assert outcome.result is not None, outcome.error
    got = outcome.result
    want = engine.score_clip(outcome.path)
    assert len(got.scores) == len(want.scores) == want.info.frame_count
    np.testing.assert_array_equal(got.scores, want.scores)  # frame i is frame i
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-5)
    np.testing.assert_allclose(got.recon_error, want.recon_error, atol=1e-5)
    assert got.summary == want.summary
    assert got.info == want.info and got.clip == want.clip
    assert (got.sector is None) == (want.sector is None)
    if want.sector is not None:
        assert got.sector is not None and got.sector.box == want.sector.box
    if want.findings is None:
        assert got.findings is None
    else:
        assert got.findings is not None
        np.testing.assert_allclose(got.findings, want.findings, atol=1e-5)
        assert got.finding_names == want.finding_names


def test_outcomes_come_in_the_order_given(run: dict[str, Any]) -> None:
    assert [o.path for o in run["outcomes"]] == run["clips"]
    assert [o.index for o in run["outcomes"]] == list(range(len(run["clips"])))


def test_sample_synthetic_and_long_clips_as_the_engine_scores_them(run: dict[str, Any]) -> None:
    by_path = {o.path: o for o in run["outcomes"]}
    for clip in (SAMPLE, run["clips"][2], run["clips"][-2]):
        _same_as_engine(run["engine"], by_path[str(clip)])
    assert len(by_path[run["clips"][-2]].result.scores) == LONG  # type: ignore[union-attr]


def test_real_clips_as_the_engine_scores_them(run: dict[str, Any]) -> None:
    shared_data("covid-blues", "videos")
    real = {str(c) for c in _real_clips(3)}
    outcomes = [o for o in run["outcomes"] if o.path in real]
    assert len(outcomes) == 3
    for o in outcomes:
        _same_as_engine(run["engine"], o)


def test_bad_clips_are_named_in_one_line_and_never_scored_in_part(run: dict[str, Any]) -> None:
    by_path = {o.path: o for o in run["outcomes"]}
    bad, corrupt, missing = run["clips"][1], run["clips"][3], run["clips"][-1]
    for path in (bad, corrupt, missing):
        o = by_path[path]
        assert o.result is None and o.error is not None
        assert "\n" not in o.error
    assert by_path[bad].error.startswith(f"{bad}: ")  # type: ignore[union-attr]
    assert by_path[missing].error == f"{missing}: file not found"
    # the frame folder fails at its 11th image, after ten frames went through the CNN:
    # named by that image, as the engine names it, and no part of the clip is a result
    assert "frame_010.png: image could not be decoded" in by_path[corrupt].error  # type: ignore[operator]
    with pytest.raises(ClipError, match=r"frame_010\.png: image could not be decoded"):
        run["engine"].score_clip(corrupt)
    scored = [o for o in run["outcomes"] if o.result is not None]
    assert len(scored) == len(run["clips"]) - 3
    assert run["stats"].frames >= sum(len(o.result.scores) for o in scored)  # type: ignore[union-attr]


def test_frames_waiting_for_the_cnn_stay_bounded(run: dict[str, Any]) -> None:
    """Frames come back in chunks: at most one chunk waits outside the batches, plus the
    batch being filled, two handed over and one in the CNN (a clip sent whole: 300)."""
    stats = run["stats"]
    assert 0 < stats.peak_frames_in_flight <= CHUNK + 4 * BATCH < LONG
    assert stats.batches * BATCH == stats.frames + stats.padded_frames  # one batch shape, the last padded
    assert stats.capture == "eager"


def test_no_decoding_process_outlives_a_run(run: dict[str, Any]) -> None:
    _no_children(run["stats"].worker_pids)


def test_sector_card_with_findings_as_the_engine(tmp_path: Path) -> None:
    torch.manual_seed(5)
    cfg = ModelConfig(**{**ModelConfig.tiny("cnn_lstm").__dict__, "aux_heads": ("a_lines", "b_lines")})
    model = HybridModel(cfg).eval()
    card = ModelCard(
        name="tiny-sector-findings",
        version="test",
        config=cfg,
        weights_file="",
        preprocessing={"crop": "sector"},
        inference={
            "lstm_window": 12,
            "lstm_burn_in": 4,
            "findings_shown": ["b_lines"],
            # a card's fitted clip rule (not rounding): the folder scorer must cut where the engine cuts
            "clip_rule": {"rule": "expected", "thresholds": [0.01, 0.02, 0.03]},
        },
        parameters=parameter_counts(model),
    )
    path = save_model(model, card, tmp_path / "sector.json", dtype=torch.float32)
    fan = []
    for f in synthetic_frames(45, size=96, seed=7):  # a fan on the left, still text on the right
        frame = np.zeros((96, 128, 3), np.uint8)
        frame[:, :96] = f
        cv2.putText(frame, "5cm", (98, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
        fan.append(frame)
    clip = write_video(tmp_path / "fan.mp4", iter(fan), fps=20.0)
    engine = _engine(path, batch_size=7)
    scorer = FolderScorer(engine, workers=2, chunk_frames=5)
    outcomes = list(scorer.score([str(clip), str(SAMPLE)]))
    for o in outcomes:
        _same_as_engine(engine, o)
    assert outcomes[0].result is not None and outcomes[0].result.sector is not None
    assert outcomes[0].result.sector.found
    assert all(
        o.result is not None and o.result.summary.rule.endswith("(fitted in cross-validation)") for o in outcomes
    )
    _no_children(scorer.stats.worker_pids)


@pytest.mark.parametrize("burn_in", [0, 4])
def test_windows_of_many_clips_at_once_are_the_streamers(burn_in: int) -> None:
    torch.manual_seed(0)
    head = SequenceHead(ModelConfig.tiny("cnn_lstm")).eval()
    feats = [torch.randn(n, ModelConfig.tiny("cnn_lstm").feature_dim) for n in (1, 7, 8, 12, 30, 41)]
    with torch.inference_mode():
        got = window_logits(head, feats, window=12, burn_in=burn_in, max_windows=3, device=torch.device("cpu"))
        want = [sequence_logits(head, f, window=12, burn_in=burn_in) for f in feats]
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def _slow_clips(tmp_path: Path, n: int = 4) -> list[str]:
    frames = (synthetic_frames(120, size=64, seed=i) for i in range(n))
    return [str(write_video(tmp_path / f"c{i}.mp4", f, fps=25.0)) for i, f in enumerate(frames)]


def test_leaving_early_stops_every_decoding_process(tmp_path: Path, tiny_model: Path) -> None:
    scorer = FolderScorer(_engine(tiny_model), workers=2, chunk_frames=4, queue_chunks=1)
    results = scorer.score(_slow_clips(tmp_path))
    first = next(results)
    assert first.result is not None
    results.close()  # as `lusviewer score` does when the report cannot be written
    _no_children(scorer.stats.worker_pids)


def test_cancel_stops_every_decoding_process(tmp_path: Path, tiny_model: Path) -> None:
    cancel = threading.Event()
    scorer = FolderScorer(_engine(tiny_model), workers=2, chunk_frames=4, queue_chunks=1)
    got: list[ClipOutcome] = []
    with pytest.raises(Cancelled):
        for outcome in scorer.score(_slow_clips(tmp_path), cancel=cancel):
            got.append(outcome)
            cancel.set()
    assert len(got) == 1
    _no_children(scorer.stats.worker_pids)


def test_a_failing_model_stops_every_decoding_process(tmp_path: Path, tiny_model: Path) -> None:
    engine = _engine(tiny_model)
    calls = 0
    forward = engine.model.cnn.forward

    def broken(x: torch.Tensor) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("out of memory (simulated)")
        return forward(x)

    engine.model.cnn.forward = broken  # type: ignore[method-assign]
    scorer = FolderScorer(engine, workers=2, chunk_frames=4, queue_chunks=1)
    with pytest.raises(RuntimeError, match="simulated"):
        list(scorer.score(_slow_clips(tmp_path)))
    _no_children(scorer.stats.worker_pids)


def test_score_uses_it_on_cuda_or_when_asked_only() -> None:
    from lusviewer.cli.score import _batch_clips

    cpu = argparse.Namespace(device=torch.device("cpu"))
    cuda = argparse.Namespace(device=torch.device("cuda"))

    def asked(v: bool | None) -> argparse.Namespace:
        return argparse.Namespace(batch_clips=v)

    two = ["a.mp4", "b.mp4"]
    assert not _batch_clips(asked(None), cpu, two)  # type: ignore[arg-type]  # the CPU default: clip by clip
    assert _batch_clips(asked(True), cpu, two)  # type: ignore[arg-type]
    assert _batch_clips(asked(None), cuda, two)  # type: ignore[arg-type]
    assert not _batch_clips(asked(None), cuda, two[:1])  # type: ignore[arg-type]
    assert not _batch_clips(asked(False), cuda, two)  # type: ignore[arg-type]


def _rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def test_score_batch_clips_writes_the_same_report(tmp_path: Path, tiny_model: Path, synthetic_clip: Path) -> None:
    from lusviewer.cli import run as cli

    folder = tmp_path / "in"
    folder.mkdir()
    for src in (SAMPLE, synthetic_clip):
        (folder / src.name).symlink_to(src)
    (folder / "broken.mp4").write_bytes(b"no video")
    rows = {}
    for name, extra in (("old", []), ("new", ["--batch-clips", "--decode-workers", "2"])):
        out = tmp_path / f"{name}.csv"
        common = ["-q", "--model", str(tiny_model), "--precision", "fp32"]
        rc = cli(["score", str(folder), "-o", str(out), *common, *extra])
        assert rc == 1  # the broken clip is named; the others are in the report
        rows[name] = [_rows(p) for p in (out, tmp_path / f"{name}_clips.csv")]
    assert rows["new"] == rows["old"]
    assert len(rows["new"][1]) == 3  # header + two clips


def test_score_goes_on_clip_by_clip_when_scoring_together_fails(
    tmp_path: Path,
    tiny_model: Path,
    synthetic_clip: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lusviewer.cli import run as cli
    from lusviewer.inference import folder

    original = folder.FolderScorer.score

    def dies_after_one(self: FolderScorer, clips: list[str], **kw: Any) -> Any:
        outcomes = original(self, clips, **kw)
        yield next(outcomes)
        outcomes.close()
        raise RuntimeError("a decode process ended unexpectedly (simulated)")

    monkeypatch.setattr(folder.FolderScorer, "score", dies_after_one)
    copy = tmp_path / "sample-copy.mp4"  # a third clip (the same path twice is now scored once)
    copy.write_bytes(SAMPLE.read_bytes())
    clips = [str(SAMPLE), str(synthetic_clip), str(copy)]
    rows = {}
    for name, extra in (("old", []), ("new", ["--batch-clips", "--decode-workers", "1"])):
        out = tmp_path / f"{name}.csv"
        assert (
            cli(["score", *clips, "-o", str(out), "-q", "--model", str(tiny_model), "--precision", "fp32", *extra]) == 0
        )
        rows[name] = _rows(out), _rows(tmp_path / f"{name}_clips.csv")
    assert rows["new"] == rows["old"] and len(rows["new"][1]) == 4
    said = capsys.readouterr().err
    assert "scoring the clips together stopped (RuntimeError: a decode process ended unexpectedly (simulated))" in said
    assert "the 2 clips left are scored one by one" in said
