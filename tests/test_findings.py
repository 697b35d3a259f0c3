"""Findings (A-lines, B-lines) from a model's auxiliary heads: computed in the scoring
pass, frame i's for frame i (also where the LSTM's emission lags), shown and reported
only for a card that lists them as validated (``inference.findings_shown``)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lusviewer.inference import ScoredFrames, ScoringEngine
from lusviewer.io import open_clip
from lusviewer.model import HybridModel, ModelCard, ModelConfig, load_model, parameter_counts, save_model
from lusviewer.model.hybrid import AUX_FINDINGS
from lusviewer.model.preprocess import resize_frame, to_model_input
from lusviewer.model.weights import ModelError
from lusviewer.report import CLIP_COLUMNS, FRAME_COLUMNS, write_report
from lusviewer.report.csv_report import KNOWN_FINDINGS

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "lusviewer-compact.json"
BOTH = ["a_lines", "b_lines"]
AUC = {"b_lines": {"auc": 0.76, "ci": [0.70, 0.82], "note": "5-fold CV, held-out patients"}}


def findings_model(
    folder: Path, variant: str = "compact", shown: list[str] | None = None, metrics: dict[str, Any] | None = None
) -> Path:
    """A tiny random-init model with both finding heads; its card shows ``shown`` (None: the key absent)."""
    torch.manual_seed(3)
    cfg = ModelConfig(**{**ModelConfig.tiny(variant).__dict__, "aux_heads": ("a_lines", "b_lines")})
    model = HybridModel(cfg).eval()
    inference: dict[str, Any] = {"lstm_window": 12, "lstm_burn_in": 4}
    if shown is not None:
        inference["findings_shown"] = shown
    card = ModelCard(
        name=f"tiny-{variant}-findings",
        version="test",
        config=cfg,
        weights_file="",
        inference=inference,
        training={"data": "none (random init, for tests)"},
        metrics=metrics or {},
        parameters=parameter_counts(model),
    )
    folder.mkdir(parents=True, exist_ok=True)
    return save_model(model, card, folder / f"tiny-{variant}-{'-'.join(shown or ['none'])}.json", dtype=torch.float32)


def reference_findings(engine: ScoringEngine, clip: Path) -> np.ndarray:
    """sigmoid of the CNN's auxiliary logits, frame by frame, one frame at a time (T, 2)."""
    out = []
    with open_clip(str(clip)) as reader, torch.inference_mode():
        for frame in reader.iter_frames():
            x = to_model_input(resize_frame(frame, engine.input_size)[None], engine.device)
            aux = engine.model.cnn(x).aux
            assert aux is not None
            out.append(torch.sigmoid(aux.float()).numpy()[0])
    return np.stack(out)


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames or []), list(r)


@pytest.mark.parametrize("variant", ["compact", "cnn_lstm"])
def test_findings_are_the_sigmoid_of_the_heads_frame_for_frame(
    variant: str, tmp_path: Path, synthetic_clip: Path
) -> None:
    card = findings_model(tmp_path, variant, shown=["b_lines", "a_lines"], metrics={"findings": AUC})
    engine = ScoringEngine(load_model(card), device="cpu", precision="fp32", batch_size=7)
    chunks: list[ScoredFrames] = []
    result = engine.score_clip(str(synthetic_clip), on_frames=chunks.append)
    assert result.finding_names == ("b_lines", "a_lines")  # the card's order
    assert result.finding_auc == (0.76, None)
    assert result.findings is not None and result.findings.shape == (40, 2) and result.findings.dtype == np.float32
    ref = reference_findings(engine, synthetic_clip)[:, [1, 0]]  # heads (a, b) -> shown (b, a)
    np.testing.assert_allclose(result.findings, ref, atol=1e-5)
    # streamed as they become final, with the very frames they belong to
    assert all(c.findings is not None and len(c.findings) == len(c.scores) for c in chunks)
    np.testing.assert_array_equal(
        np.concatenate([c.findings for c in chunks if c.findings is not None]), result.findings
    )
    if variant == "cnn_lstm":  # the LSTM emits later than the CNN scores: the lag is real here
        assert chunks[0].start == 0 and len(chunks[0].scores) != 7
    assert result.finding_means == pytest.approx({"b_lines": ref[:, 0].mean(), "a_lines": ref[:, 1].mean()}, abs=1e-6)
    # the findings leave the scores as they were: the same weights without heads shown
    plain = ScoringEngine(
        load_model(findings_model(tmp_path / "plain", variant)), device="cpu", precision="fp32", batch_size=7
    ).score_clip(str(synthetic_clip))
    np.testing.assert_array_equal(plain.probs, result.probs)
    np.testing.assert_array_equal(plain.recon_error, result.recon_error)


def test_temperature_does_not_touch_the_findings(tmp_path: Path, synthetic_clip: Path) -> None:
    path = findings_model(tmp_path, shown=BOTH)
    hot = load_model(path)
    hot.card.inference["temperature"] = 3.0  # in memory: the engine reads the card it is given
    a = ScoringEngine(load_model(path), device="cpu", precision="fp32").score_clip(str(synthetic_clip))
    b = ScoringEngine(hot, device="cpu", precision="fp32").score_clip(str(synthetic_clip))
    assert a.findings is not None and b.findings is not None
    np.testing.assert_array_equal(a.findings, b.findings)
    assert not np.allclose(a.probs, b.probs)


def test_reports_fill_the_finding_columns_only_for_findings_shown(tmp_path: Path, synthetic_clip: Path) -> None:
    assert FRAME_COLUMNS[-2:] == CLIP_COLUMNS[-2:] == ("p_a_lines", "p_b_lines")
    assert KNOWN_FINDINGS == AUX_FINDINGS  # the report's copy (it imports no torch) stays the model's
    results = {}
    for shown in (BOTH, ["b_lines"], None, []):
        card = findings_model(tmp_path / str(shown), shown=shown)
        results[str(shown)] = ScoringEngine(load_model(card), device="cpu", precision="fp32").score_clip(
            str(synthetic_clip)
        )
    both, only_b = results[str(BOTH)], results[str(["b_lines"])]
    for key in (str(None), str([])):
        r = results[key]
        assert r.findings is None and r.finding_names == () and r.finding_means == {}
    assert only_b.finding_names == ("b_lines",) and only_b.findings is not None and only_b.findings.shape == (40, 1)
    np.testing.assert_array_equal(only_b.findings[:, 0], both.findings[:, 1])  # type: ignore[index]
    frames_csv, clips_csv = write_report(tmp_path / "r.csv", list(results.values()))
    fcols, frows = read(frames_csv)
    ccols, crows = read(clips_csv)
    assert tuple(fcols) == FRAME_COLUMNS and tuple(ccols) == CLIP_COLUMNS
    assert [(r["p_a_lines"], r["p_b_lines"]) for r in crows[1:]] == [("", f"{only_b.finding_means['b_lines']:.3f}")] + [
        ("", "")
    ] * 2
    assert crows[0]["p_a_lines"] == f"{both.finding_means['a_lines']:.3f}" != ""
    assert crows[0]["p_b_lines"] == f"{both.finding_means['b_lines']:.3f}"
    assert [float(r["p_b_lines"]) for r in frows[:40]] == pytest.approx(both.findings[:, 1].tolist(), abs=1e-6)  # type: ignore[index]
    assert [r["p_a_lines"] for r in frows[40:80]] == [""] * 40 and all(r["p_b_lines"] for r in frows[40:80])
    assert {(r["p_a_lines"], r["p_b_lines"]) for r in frows[80:]} == {("", "")}


def test_check_card_refuses_findings_the_model_has_no_head_for(tmp_path: Path) -> None:
    path = findings_model(tmp_path, shown=BOTH)
    for bad in (["c_lines"], ["b_lines", "b_lines"], "b_lines"):
        data = json.loads(path.read_text())
        data["inference"]["findings_shown"] = bad
        path.write_text(json.dumps(data))
        with pytest.raises(ModelError) as err:
            load_model(path)
        msg = str(err.value)
        assert "\n" not in msg and "inference.findings_shown" in msg and str(path) in msg
    with pytest.raises(ModelError, match=r"inference\.findings_shown"):  # no heads at all: nothing to show
        cfg = ModelConfig.tiny("compact")
        save_model(
            HybridModel(cfg),
            ModelCard("x", "1", cfg, "", inference={"findings_shown": ["b_lines"]}),
            tmp_path / "noheads.json",
        )


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped model is absent")
def test_shipped_model_shows_only_the_finding_its_cross_validation_supports(tmp_path: Path) -> None:
    """The shipped card shows A-lines (held-out AUC interval above 0.5) and not B-lines
    (interval includes 0.5): the A-line column is filled, the B-line column stays empty."""
    from lusviewer.io.synthetic import synthetic_frames, write_video

    card = json.loads(SHIPPED.read_text())
    assert card["inference"]["findings_shown"] == ["a_lines"]
    assert card["metrics"]["findings"]["a_lines"]["ci"][0] > 0.5
    assert card["metrics"]["findings"]["b_lines"]["ci"][0] <= 0.5
    clip = write_video(tmp_path / "s.avi", synthetic_frames(6, size=64, seed=2), fps=10.0, fourcc="MJPG")
    result = ScoringEngine(load_model(SHIPPED), device="cpu", precision="fp32", batch_size=6).score_clip(str(clip))
    assert result.finding_names == ("a_lines",) and result.findings is not None and result.findings.shape == (6, 1)
    frames_csv, clips_csv = write_report(tmp_path / "r.csv", [result])
    for path, old in ((frames_csv, FRAME_COLUMNS[:-2]), (clips_csv, CLIP_COLUMNS[:-2])):
        lines = path.read_text().splitlines()
        assert lines[0] == ",".join(old) + ",p_a_lines,p_b_lines"
        for line in lines[1:]:
            *_, a, b = line.split(",")
            assert 0 <= float(a) <= 1 and b == ""


# ------------------------------------------------------------------------ viewer


def test_summary_line_words_the_findings() -> None:
    from lusviewer.ui.summary_panel import findings_text

    assert findings_text({"a_lines": 0.22, "b_lines": 0.81}) == "B-lines: likely (p 0.81) · A-lines: unlikely (p 0.22)"
    assert findings_text({"b_lines": 0.5}, {"b_lines": 0.76}) == ("B-lines: unsure (p 0.50) (validation AUC 0.76)")
    assert findings_text({"a_lines": 0.7, "b_lines": 0.49}, {"b_lines": 0.76, "a_lines": None}).endswith(
        "A-lines: likely (p 0.70) (validation AUC B-lines 0.76)"
    )
    assert findings_text({"b_lines": 0.69}).startswith("B-lines: unsure")  # a guess is not a finding
    assert findings_text({"b_lines": 0.31}).startswith("B-lines: unsure")
    assert findings_text({"b_lines": 0.3}).startswith("B-lines: unlikely")
    assert findings_text({}) == ""


def test_summary_says_when_the_expected_rule_and_the_frames_disagree(qtbot: Any) -> None:
    """The expected rule cuts the clip's mean severity: a clip can score 1 with every frame
    scored 3 (seen with the shipped model on patient_17_R3). The Clip tab must say why, or
    its score, its counts and its timeline contradict each other."""
    from lusviewer.ui.summary_panel import SummaryPanel

    panel = SummaryPanel()
    qtbot.addWidget(panel)
    rule = "expected: the frames' mean severity 1.59, cut at 1.46/1.63/1.72 (fitted in cross-validation)"
    panel.set_summary(1, rule, (0, 0, 0, 100), 98, 100, 25.0, "uncertain")
    assert "The frames score 3 most often" in panel.rule.text() and "not from counting frames" in panel.rule.text()
    assert "a guess, not a finding" in panel.rule.text()
    panel.set_summary(1, rule, (0, 48, 13, 0), 32, 61, 25.0, "uncertain")  # frames agree: nothing added
    assert "most often" not in panel.rule.text()
    persistent = "persistent: highest score held >= 5 consecutive frames"
    panel.set_summary(3, persistent, (90, 0, 0, 10), 95, 100, 25.0)  # worst finding held: no note
    assert "most often" not in panel.rule.text()


def test_summary_withholds_the_findings_of_an_unfamiliar_clip(qtbot: Any) -> None:
    from lusviewer.ui.summary_panel import SummaryPanel

    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.set_findings({"b_lines": 0.8})
    assert panel.findings.text().startswith("B-lines: likely (p 0.80)") and not panel.findings.isHidden()
    panel.set_confidence(np.ones(10, dtype=bool))
    assert "Low confidence" in panel.confidence.text()
    panel.set_familiarity("unlike the model's training clips (...)")
    assert panel.confidence.text() == "" and panel.familiarity.text().endswith("Clip score withheld.")
    assert panel.confidence.isHidden()  # an empty line would still take its height
    panel.set_findings({"b_lines": 0.8})
    assert panel.findings.text().startswith("B-lines withheld")
    panel.set_findings({"a_lines": 0.4})  # the shipped card shows A-lines only: B-lines are not named
    assert panel.findings.text().startswith("A-lines withheld") and "B-lines" not in panel.findings.text()
    panel.set_findings({"a_lines": 0.4, "b_lines": 0.8})
    assert panel.findings.text().startswith("B-lines and A-lines withheld")
    panel.clear()
    assert panel.findings.isHidden() and panel.findings.text() == ""
    panel.set_confidence(np.zeros(10, dtype=bool))  # the next clip: shown again
    assert not panel.confidence.isHidden() and "On 0 % of frames" in panel.confidence.text()


def test_timeline_check_box_and_trace_only_with_findings(qtbot: Any) -> None:
    from lusviewer.ui.timeline import RECON_LABEL, ScoreTimeline

    t = ScoreTimeline()
    qtbot.addWidget(t)
    t.reset(30)
    assert t.findings_toggle.isHidden()
    values = np.linspace(0, 1, 60, dtype=np.float32).reshape(30, 2)
    t.set_findings(("b_lines", "a_lines"), values)
    assert not t.findings_toggle.isHidden()
    assert t.findings_toggle.text() == "Findings (B-lines, A-lines)"
    x, y = t.finding_curves["b_lines"].getData()
    np.testing.assert_allclose(y, values[:, 0], atol=1e-6)
    np.testing.assert_array_equal(x, np.arange(30))
    np.testing.assert_allclose(t.finding_curves["a_lines"].getData()[1], values[:, 1], atol=1e-6)
    assert t.legend_labels()[-2:] == ["p(B-lines)", "p(A-lines)"]
    t.findings_toggle.setChecked(False)
    assert not t.finding_curves["b_lines"].isVisible()
    t.findings_toggle.setChecked(True)
    t.set_findings(("b_lines",), values[:, 1:])  # one finding shown: one curve, one legend entry
    assert t.findings_toggle.text() == "Findings (B-lines)"  # the check box names only what is shown
    t.set_findings(("a_lines", "b_lines"), values)
    t.set_findings(("a_lines",), values[:, :1])  # the shipped card's case: A-lines shown, B-lines not
    assert t.findings_toggle.text() == "Findings (A-lines)" and "B-lines" not in t.findings_toggle.toolTip()
    t.set_findings(("b_lines",), values[:, 1:])
    assert t.finding_curves["a_lines"].getData()[1] is None or not len(t.finding_curves["a_lines"].getData()[1])
    assert t.legend_labels()[-1] == "p(B-lines)" and len(t.legend_labels()) == 6
    t.reset(30)  # another clip: gone
    assert t.findings_toggle.isHidden() and t.legend_labels() == ["p0", "p1", "p2", "p3", RECON_LABEL]


def test_model_card_page_lists_the_findings() -> None:
    from lusviewer.ui.dialogs import model_card_html

    page = model_card_html("m", "m.json", {"metrics": {"findings": AUC}, "inference": {"findings_shown": ["b_lines"]}})
    assert "B-lines" in page and "0.76 (0.70–0.82)" in page and "Shown by the viewer and in the CSV: B-lines" in page
    assert "Not shown" in model_card_html("m", "m.json", {"metrics": {"findings": AUC}, "inference": {}})
    assert "Findings" not in model_card_html("m", "m.json", {"metrics": {}, "inference": {}})
    checks = {"clip_rule_check": "by prevalence on 574 clips", "calibration_check": "ECE 0.11 -> 0.02"}
    page = model_card_html("m", "m.json", {"metrics": {}, "inference": checks})
    # each note named: the shipped card's read as fragments ("by prevalence on ...") without
    assert "<b>Clip score thresholds</b>: by prevalence on 574 clips" in page
    assert "<b>Calibration</b>: ECE 0.11 -&gt; 0.02" in page


@pytest.fixture(params=[BOTH, None], ids=["shown", "not-shown"])
def findings_window(request: pytest.FixtureRequest, qtbot: Any, tmp_path: Path) -> Iterator[Any]:
    from PySide6.QtCore import QSettings

    from lusviewer.ui.main_window import MainWindow

    card = findings_model(tmp_path / "m", shown=request.param, metrics={"findings": AUC})
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(str(card), settings, quiet=True)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.controller.model_status is not None, timeout=60_000)
    yield w
    w.close()


@pytest.mark.usefixtures("no_leaked_threads")
def test_viewer_shows_the_findings_only_for_a_card_that_lists_them(
    qtbot: Any, findings_window: Any, synthetic_clip: Path
) -> None:
    w = findings_window
    assert w.timeline.findings_toggle.isHidden() and w.summary.findings.isHidden()
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.controller.result is not None, timeout=60_000)
    r = w.controller.result
    if r.findings is None:  # the same heads, a card that does not list them: nothing anywhere
        assert w.timeline.findings_toggle.isHidden() and w.summary.findings.isHidden()
        assert len(w.timeline.legend_labels()) == 5
        return
    assert w.timeline.findings_toggle.isVisible()
    np.testing.assert_allclose(w.timeline.finding_curves["b_lines"].getData()[1], r.findings[:, 1], atol=1e-6)
    from lusviewer.ui.summary_panel import finding_word

    text = w.summary.findings.text()
    assert w.summary.findings.isVisible() and text.startswith(
        f"B-lines: {finding_word(r.finding_means['b_lines'])} (p {r.finding_means['b_lines']:.2f})"
    )
    assert "validation AUC B-lines 0.76" in text
