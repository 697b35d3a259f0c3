"""Honest states in the viewer (issue 17 items 2, 5, 6; issue 16 item 4, viewer side):
a failed run leaves no stale progress, dialogs and messages fit, the timeline hides no
curve, and an incomplete clip says so. pytest-qt, offscreen, tiny random-init model."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from corpus import faststart, index_frames, last_sample_size, write_cv2
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor

from lusviewer.io import ClipError
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.ui.main_window import MainWindow

TIMEOUT = 60_000
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@pytest.fixture
def warnings_shown(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every warning dialog the windows show (title, text), in order."""
    shown: list[tuple[str, str]] = []

    def warn(self: MainWindow, title: str, text: str) -> None:
        shown.append((title, text))

    monkeypatch.setattr(MainWindow, "_warn", warn)
    return shown


@pytest.fixture
def window(window: MainWindow, warnings_shown: list) -> MainWindow:  # type: ignore[type-arg]
    """conftest's window, its warning dialogs recorded in ``warnings_shown``."""
    return window


def fail_after_first_batch(w: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's engine fails the next clip after its first batch, as a clip whose
    frames stop decoding mid-way does."""
    engine = w.controller._worker._engine
    assert engine is not None
    real = engine.score_clip

    def score_clip(path: str, *, on_frames: Any, **kw: Any) -> Any:
        def frames(chunk: Any) -> None:
            on_frames(chunk)
            raise ClipError(path, f"frame {chunk.start + len(chunk.scores)} could not be decoded (truncated?)")

        return real(path, on_frames=frames, **kw)

    monkeypatch.setattr(engine, "score_clip", score_clip)


# ------------------------------------------------------------------ 17.2 failure
def test_failed_scoring_leaves_no_stale_state(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings_shown: list
) -> None:
    clip = write_video(tmp_path / "c.avi", synthetic_frames(300, size=64, seed=3), fps=25.0, fourcc="MJPG")
    fail_after_first_batch(window, monkeypatch)
    c = window.controller
    assert window.open_clip(str(clip))
    report = tmp_path / "r.csv"
    window.request_export(str(report))  # while scoring runs: "export when it finishes?" (yes)
    qtbot.waitUntil(lambda: c.failure is not None, timeout=TIMEOUT)
    qtbot.wait(300)  # a coalesced redraw still due must not bring the progress back
    n, total = c.n_scored, c.frame_count
    assert 0 < n < total == 300
    # The summary says it failed and why; no "Scoring… so far" is left.
    assert window.summary.score.text() == "Scoring failed"
    rule = window.summary.rule.text()
    assert "Scoring…" not in rule and f"after {n} of {total} frames" in rule and "could not be decoded" in rule
    assert not window.summary.worst.isEnabled()
    # The timeline keeps the scored frames, marked partial: greyed, the rest shaded, a label.
    tl = window.timeline
    assert tl.partial and f"partial: {n} of {total} frames" in tl.score_plot.titleLabel.text.lower()
    assert all(item.opts["pen"].color() == QColor("#9a9a9a") for item in tl.score_levels)
    assert tl.unscored.isVisible() and tl.unscored.getRegion() == pytest.approx((n - 0.5, total - 0.5))
    assert "not scored (scoring failed)" in (window.seek(total - 1) or window.frame_label.text())
    # The promised export is not silently dropped: the user is told, nothing is written.
    said = dict(warnings_shown)
    assert sorted(said) == ["Report not written", "Scoring failed"] and len(warnings_shown) == 2
    assert str(report) in said["Report not written"] and not report.exists()
    assert window.exporter.pending is None
    # Scoring again clears the partial mark.
    monkeypatch.undo()
    monkeypatch.setattr(MainWindow, "_warn", lambda self, title, text: warnings_shown.append((title, text)))
    c.start_scoring()
    assert not tl.partial and "partial" not in tl.score_plot.titleLabel.text
    qtbot.waitUntil(lambda: c.result is not None, timeout=TIMEOUT)
    assert window.summary.score.text().startswith(("Score", "No reliable"))


def test_cancelled_scoring_marks_the_timeline_partial(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "c.avi", synthetic_frames(1500, size=64, seed=4), fps=25.0, fourcc="MJPG")
    c = window.controller
    window.open_clip(str(clip))
    qtbot.waitUntil(lambda: c.n_scored > 0, timeout=TIMEOUT)
    c.cancel_all()
    qtbot.wait(300)
    assert window.summary.score.text() == "Cancelled" and "Scoring…" not in window.summary.rule.text()
    assert window.timeline.partial and "cancelled" in window.timeline.score_plot.titleLabel.text


# -------------------------------------------------------------- 17.5 dialogs
def test_model_that_cannot_load_gives_one_dialog(  # type: ignore[no-untyped-def]
    qtbot, settings: QSettings, tmp_path: Path, synthetic_clip: Path, warnings_shown: list
) -> None:
    """As ``lusviewer view CLIP`` with a broken model: the clip opens before the model fails."""
    w = MainWindow(str(tmp_path / "deep" / ("folder-" * 12) / "missing-model.json"), settings, quiet=True)
    qtbot.addWidget(w)
    w.show()
    assert w.open_clip(str(synthetic_clip))
    qtbot.waitUntil(lambda: w.model_label.text() == "No model loaded", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not w.controller.running, timeout=TIMEOUT)
    qtbot.wait(200)
    assert [t for t, _ in warnings_shown] == ["Cannot load the model"]
    assert w.summary.score.text() == "No model"
    w.close()


def test_warning_box_wraps_and_elides_the_path_in_the_middle(qtbot) -> None:  # type: ignore[no-untyped-def]
    from lusviewer.ui.dialogs import WARNING_WIDTH, warning_box

    path = "/home/clinician/exams/2026/ward-7/" + "very-long-folder-name/" * 8 + "model-card.json"
    text = f"The viewer shows clips but cannot score them.\n\n{path}: the model card is missing"
    box = warning_box(None, "Cannot load the model", text)
    qtbot.addWidget(box)
    shown = box.text() + "\n" + box.informativeText()
    assert path not in shown and "…" in shown
    assert shown.split("…")[0].endswith(path[:10]) or path[:10] in shown  # the start of the path stays
    assert "model-card.json" in shown  # and its file name
    assert box.detailedText() == text
    fm = box.fontMetrics()
    assert all(fm.horizontalAdvance(word) <= WARNING_WIDTH for word in shown.split())


def test_model_card_is_a_page_with_the_loaders_warnings(
    qtbot, tiny_model: Path, tmp_path: Path, settings: QSettings
) -> None:  # type: ignore[no-untyped-def]
    """Help › Model card: name, data, licence, validation numbers with their caveats,
    intended use and the loader's warnings as a page; the JSON behind a button."""
    from safetensors.torch import load_file, save_file

    from lusviewer.ui.dialogs import ModelCardDialog, model_card_html

    # Weights saved before the card's settings were bound: the loader warns.
    card = json.loads(tiny_model.read_text())
    folder = tmp_path / "m"
    folder.mkdir()
    weights = tiny_model.parent / card["weights_file"]
    save_file(load_file(str(weights)), str(folder / card["weights_file"]))  # no metadata
    from lusviewer.model.weights import sha256_file

    card["sha256"] = sha256_file(folder / card["weights_file"])
    (folder / tiny_model.name).write_text(json.dumps(card))
    w = MainWindow(str(folder / tiny_model.name), settings, quiet=True)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.controller.model_status is not None, timeout=TIMEOUT)
    assert any("not bound" in m for m in w.controller.model_warnings)
    help_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Help")
    next(a for a in help_menu.actions() if a.text() == "&Model card").trigger()
    dialogs = list(w.findChildren(ModelCardDialog))
    assert len(dialogs) == 1
    page = dialogs[0].page.toPlainText()
    assert "Intended use" in page and "not bound" in page and "{" not in page
    assert not dialogs[0].json.isVisible()
    dialogs[0].json_button.click()
    assert dialogs[0].json.isVisible() and json.loads(dialogs[0].json.toPlainText())["name"] == card["name"]
    dialogs[0].close()
    w.close()

    # The shipped card: its data, licence, validation numbers and their caveat are on the page.
    shipped = json.loads((REPO / "models" / "lusviewer-compact.json").read_text())
    html = model_card_html("lusviewer-compact 2.0.0", "card.json", shipped)
    assert ModelCardDialog  # the page renders in a QTextBrowser: its plain text is what a reader sees
    from PySide6.QtWidgets import QTextBrowser

    tb = QTextBrowser()
    qtbot.addWidget(tb)
    tb.setHtml(html)
    text = tb.toPlainText()
    for needle in (
        shipped["training"]["data"],
        shipped["training"]["data_licence"],
        "no validation split",
        f"{shipped['metrics']['repeated_cv']['qwk'][0]:.3f}",
        f"{shipped['metrics']['repeated_cv']['qwk'][1]:.3f} to {shipped['metrics']['repeated_cv']['qwk'][2]:.3f}",
        "A-lines",
        "by prevalence",
        "Intended use",
    ):
        assert needle in text, needle


def test_wrote_message_fits_the_status_bar(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    path = "/home/clinician/exports/" + "a-long-folder/" * 12 + "clip_report.csv"
    width = window.width()
    window.notify(f"Wrote {path} and clip_report_clips.csv", 8000)
    qtbot.wait(50)
    label = window.status_bar.message_label
    assert label.toolTip() == f"Wrote {path} and clip_report_clips.csv"
    assert label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width()
    assert "…" in label.text() and label.text().startswith("Wrote /home") and label.text().endswith("clips.csv")
    assert window.width() == width


# -------------------------------------------------------------- 17.6 timeline
def test_legend_hides_no_curve(qtbot) -> None:  # type: ignore[no-untyped-def]
    from lusviewer.ui.timeline import ScoreTimeline

    tl = ScoreTimeline()
    qtbot.addWidget(tl)
    tl.resize(640, 320)
    tl.show()
    n = 200
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), n).astype(np.float32)
    tl.reset(n)
    tl.update_scores(probs.argmax(1), probs, rng.random(n).astype(np.float32), n)
    qtbot.wait(50)
    plot = tl.prob_plot.vb.sceneBoundingRect()
    legend = tl.prob_plot.legend or tl.legend  # inside the plot (addLegend) or beside it
    assert not legend.sceneBoundingRect().intersects(plot)
    assert tl.prob_plot.vb.viewRange()[1][1] >= 1.0  # the curves' maximum, 1, is inside the plot


def _lab(hex_colour: str, sim: np.ndarray) -> np.ndarray:
    c = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    x = xyz @ np.clip(sim @ linear, 0, 1) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(x > 0.008856, np.cbrt(x), 7.787 * x + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_probability_colours_are_told_apart_also_when_colour_blind() -> None:
    """CIE76 distance between any two of p0-p3 at least 30, with normal vision and under
    simulated protanopia and deuteranopia (Viénot, Brettel & Mollon 1999, linear RGB) and
    tritanopia (Machado, Oliveira & Fernandes 2009, severity 1): the old p0 bluish green
    and p2 blue were 17 apart under tritanopia."""
    from lusviewer.ui.palette import PROB_COLOURS

    vision = {
        "normal": np.eye(3),
        "protanopia": np.array([[0.1523, 1.0526, -0.2049], [0.1145, 0.7863, 0.0992], [-0.0039, -0.0481, 1.0520]]),
        "deuteranopia": np.array([[0.3673, 0.8606, -0.2280], [0.2801, 0.6725, 0.0474], [-0.0118, 0.0429, 0.9689]]),
        "tritanopia": np.array([[1.2555, -0.0767, -0.1788], [-0.0784, 0.9308, 0.1476], [0.0047, 0.6914, 0.3039]]),
    }
    for name, sim in vision.items():
        for a, b in itertools.combinations(range(len(PROB_COLOURS)), 2):
            d = float(np.linalg.norm(_lab(PROB_COLOURS[a], sim) - _lab(PROB_COLOURS[b], sim)))
            assert d >= 30, f"p{a} and p{b} {d:.1f} apart under {name}"


def test_probability_curves_are_told_apart_in_grey_and_from_the_reconstruction_error(qtbot) -> None:  # type: ignore[no-untyped-def]
    """In greyscale print: p0-p3 are ordered in lightness (p0 lightest, at least 12 L* apart
    from one step to the next), and two curves of the same dash pattern are at least 50 L*
    apart; no probability curve has the reconstruction error's dashes. Checked on the
    timeline's own pens, the ones its legend draws."""
    from lusviewer.ui.timeline import ScoreTimeline

    tl = ScoreTimeline()
    qtbot.addWidget(tl)
    pens = [curve.opts["pen"] for curve in tl.prob_curves]

    def pattern(pen) -> tuple[float, ...]:  # type: ignore[no-untyped-def]
        return tuple(pen.dashPattern()) if pen.style() != Qt.PenStyle.SolidLine else ()

    grey = [float(_lab(pen.color().name(), np.eye(3))[0]) for pen in pens]
    assert all(a - b >= 12 for a, b in itertools.pairwise(grey)), grey
    for a, b in itertools.combinations(range(4), 2):
        if pattern(pens[a]) == pattern(pens[b]):
            assert abs(grey[a] - grey[b]) >= 50, f"p{a} and p{b}: same line, L* {grey[a]:.0f} and {grey[b]:.0f}"
    recon = pattern(tl.recon_curve.opts["pen"])
    assert recon and all(pattern(pen) != recon for pen in pens)


def test_reconstruction_overlay_has_a_legend(qtbot) -> None:  # type: ignore[no-untyped-def]
    from lusviewer.ui.frame_view import FrameView

    fv = FrameView()
    qtbot.addWidget(fv)
    frame = np.zeros((32, 32, 3), np.uint8)
    fv.set_frame(frame)
    fv.show_reconstruction(frame)
    assert fv.legend.isVisible() and "reconstruction" in fv.legend.axis.labelText


# ------------------------------------------------------- issue 16.4 viewer side
def _cut_last_frame(tmp_path: Path, n: int = 30) -> Path:
    """A .mov whose header lists n frames and whose file ends 3 bytes into the last one."""
    src = write_cv2(tmp_path / "src.mov", "mp4v", index_frames(n))
    if src is None:
        pytest.skip("this OpenCV cannot write mp4v")
    data = faststart(src.read_bytes())
    path = tmp_path / "cut.mov"
    path.write_bytes(data[: len(data) - last_sample_size(data) + 3])
    return path


def test_incomplete_clip_gets_a_notice_after_opening_and_after_scoring(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    clip = _cut_last_frame(tmp_path)
    assert window.open_clip(str(clip))
    notice = window.clip_notice
    assert notice.isVisible()
    assert "Incomplete clip: 29 of the 30 frames in its header could be decoded" in notice.text()
    # the reader's own warning (lusviewer.io logger) reaches the user too
    assert "Reader:" in notice.text() and "incomplete" in window.status_bar.message_label.toolTip()
    qtbot.waitUntil(lambda: window.controller.result is not None, timeout=TIMEOUT)
    assert notice.isVisible() and "scored on those" in notice.text()
    assert notice.text().count("Incomplete clip:") == 1
    # another, complete clip: the notice goes
    other = write_video(tmp_path / "ok.avi", synthetic_frames(10, size=64, seed=2), fps=25.0, fourcc="MJPG")
    assert window.open_clip(str(other))
    assert not notice.isVisible()


def test_reader_warning_about_the_open_clip_reaches_the_user(qtbot, window: MainWindow, synthetic_clip: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_clip(str(synthetic_clip))
    logging.getLogger("lusviewer.io.clip").warning("%s: the header says 12000 fps; using 25", synthetic_clip)
    logging.getLogger("lusviewer.io.clip").warning("%s: about another clip", "/x/other.mp4")
    qtbot.wait(50)
    text = window.clip_notice.text()
    assert window.clip_notice.isVisible() and "12000 fps" in text and "another clip" not in text
