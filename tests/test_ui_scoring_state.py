"""The scoring state on its own (:class:`~lusviewer.ui.scoring_state.ScoringState`): the
phase of the clip's job and what the summary, the timeline and the status bar say about
it, driven through its slots against a stand-in for the controller: no model, no thread."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from lusviewer.ui.scoring_state import WAITING_FOR_MODEL, ScoringPhase, ScoringState
from lusviewer.ui.status_bar import StatusBar
from lusviewer.ui.summary_panel import SummaryPanel
from lusviewer.ui.timeline import ScoreTimeline


class StubController:
    """What the scoring state reads from the controller: a clip open, nothing scored."""

    def __init__(self) -> None:
        self.info = SimpleNamespace(path="/clips/a.mp4", frame_count=40, fps=20.0)
        self.model_status: object | None = None
        self.model_error: str | None = None
        self.running = False
        self.result: object | None = None
        self.n_scored = 0
        self.probs = np.zeros((0, 4), dtype=np.float32)
        self.scores = np.zeros(0, dtype=np.int64)
        self.recon_error = np.zeros(0, dtype=np.float32)

    @property
    def model_loading(self) -> bool:  # as Controller.model_loading
        return self.model_status is None and self.model_error is None

    @property
    def frame_count(self) -> int:
        return int(self.info.frame_count)

    def start_scoring(self) -> None:  # what Controller.start_scoring sets before scoring_started
        self.running = True


class StubExporter:
    def __init__(self) -> None:
        self.stopped: list[str] = []

    def scoring_stopped(self, why: str) -> None:
        self.stopped.append(why)


@pytest.fixture
def state(qtbot: Any) -> SimpleNamespace:
    summary, timeline, status = SummaryPanel(), ScoreTimeline(), StatusBar()
    for widget in (summary, timeline, status):
        qtbot.addWidget(widget)
    c, exporter = StubController(), StubExporter()
    warnings: list[tuple[str, str]] = []
    labels: list[None] = []
    presenter = ScoringState(
        c,  # type: ignore[arg-type]  # a stand-in
        summary=summary,
        timeline=timeline,
        status_bar=status,
        exporter=exporter,  # type: ignore[arg-type]  # a stand-in
        warn=lambda title, text: warnings.append((title, text)),
        frame_label=lambda: labels.append(None),
    )
    return SimpleNamespace(
        p=presenter, c=c, summary=summary, status=status, timeline=timeline, warnings=warnings, exporter=exporter
    )


def open_while_the_model_loads(s: SimpleNamespace) -> None:
    s.p.clip_opened()
    s.c.start_scoring()
    s.p.started(40)


def test_clip_opened_while_the_model_loads_waits_then_scores(state: SimpleNamespace) -> None:
    s = state
    open_while_the_model_loads(s)
    assert s.p.phase is ScoringPhase.WAITING_FOR_MODEL
    assert (s.summary.score.text(), s.summary.rule.text()) == ("Waiting…", WAITING_FOR_MODEL)
    assert s.status.rate_label.text() == "Waiting for the model…"
    s.c.model_status = object()
    s.p.model_ready()
    assert s.p.phase is ScoringPhase.SCORING
    assert (s.summary.score.text(), s.summary.rule.text()) == ("Scoring…", "")
    assert s.status.rate_label.text() == "Scoring…"
    assert s.warnings == []


def test_waiting_is_a_state_not_the_labels_text(state: SimpleNamespace) -> None:
    """The label's text is the user's (translated, reworded): the model's arrival still
    turns a waiting clip's "Waiting…" into "Scoring…"."""
    s = state
    open_while_the_model_loads(s)
    s.summary.rule.setText("En attente du modèle ; l'analyse commence dès qu'il est prêt.")
    s.c.model_status = object()
    s.p.model_ready()
    assert s.summary.score.text() == "Scoring…" and s.status.rate_label.text() == "Scoring…"


def test_model_ready_leaves_a_clip_that_was_not_waiting_alone(state: SimpleNamespace) -> None:
    """The model loads (again: another device) while a clip is being scored, or after its
    job was cancelled: nothing said about its scoring changes."""
    s = state
    s.c.model_status = object()
    s.p.clip_opened()
    s.c.start_scoring()
    s.p.started(40)
    assert s.p.phase is ScoringPhase.SCORING
    s.summary.rule.setText("Scoring… 8 of 40 frames so far; the clip score follows when all are scored.")
    s.status.rate_label.setText("8/40 frames · 20.0 frames/s · 2 s left")
    s.p.model_ready()
    assert s.summary.rule.text().startswith("Scoring… 8 of 40") and s.status.rate_label.text().startswith("8/40")
    s.c.model_status = None  # another device: the job is cancelled, the model reloads
    s.c.running = False
    s.p.cancelled()
    assert s.p.phase is ScoringPhase.IDLE and s.summary.score.text() == "Cancelled"
    s.c.model_status = object()
    s.p.model_ready()
    assert s.summary.score.text() == "Cancelled" and s.status.rate_label.text() == "Scoring cancelled"
    assert s.exporter.stopped == ["scoring was cancelled"]


def test_model_that_fails_while_a_clip_waits_says_why_once(state: SimpleNamespace) -> None:
    s = state
    open_while_the_model_loads(s)
    s.c.model_error = "models/missing.json: no such file"
    s.p.model_failed(s.c.model_error)
    assert s.status.model_label.text() == "No model loaded"
    assert (s.summary.score.text(), s.summary.rule.text()) == ("No model", "")
    [(title, text)] = s.warnings
    assert title == "Cannot load the model" and "models/missing.json: no such file" in text
    s.c.running = False  # the waiting job fails on the worker: no model
    s.p.failed("no model")
    assert s.p.phase is ScoringPhase.IDLE
    assert s.summary.score.text() == "No model" and s.status.rate_label.text() == "No model: not scored"
    assert len(s.warnings) == 1  # the model's dialog said it: no second one
    assert not s.timeline.partial


def test_status_bar_progress_is_the_timelines_frames(state: SimpleNamespace) -> None:
    """viewer-mid-scoring.png: the status bar read 96/100 while the timeline showed 64 frames
    (progress followed the worker's signal, the timeline a coalesced redraw). Both now come
    from the same redraw of the same frames."""
    s, c = state, state.c
    c.info.frame_count = 100
    c.start_scoring()
    s.p.started(100)
    probs = np.full((100, 4), 0.25, dtype=np.float32)
    probs[:, 3] = 0.4
    c.probs, c.scores, c.recon_error = probs[:64], np.full(64, 3, np.int64), np.zeros(64, np.float32)
    c.n_scored = 64
    s.p.scores_arrived(0, 64)
    s.p.redraw()
    s.p.progress(64, 100, 40.0)
    # 32 more frames arrive with the worker's progress; the redraw is still pending
    c.probs, c.scores, c.recon_error = probs[:96], np.full(96, 3, np.int64), np.zeros(96, np.float32)
    c.n_scored = 96
    s.p.scores_arrived(64, 96)
    s.p.progress(96, 100, 48.0)
    assert s.timeline.n_drawn == s.status.progress.value() == 64
    assert s.status.rate_label.text().startswith("64/100 frames")
    s.p.redraw()
    assert s.timeline.n_drawn == s.status.progress.value() == 96
    assert s.status.rate_label.text().startswith("96/100 frames · 48.0 frames/s")
    s.p.stop()
