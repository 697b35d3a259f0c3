"""The window's dialogs: warnings that fit the screen, About, and the model card page."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from lusviewer import __version__

if TYPE_CHECKING:
    from lusviewer.ui.worker import ModelStatus

DISCLAIMER = "Research use only — not a medical device"

#: A warning's text is wrapped to this width (pixels); longer words (paths) are elided in the middle.
WARNING_WIDTH = 460

_PATHISH = re.compile(r"\S*[/\\]\S*")


def elide_paths(text: str, metrics: QFontMetrics, width: int = WARNING_WIDTH) -> str:
    """``text`` with every path-like word wider than ``width`` elided in the middle
    (its start and its file name stay)."""

    def shorten(m: re.Match[str]) -> str:
        word = m.group(0)
        if metrics.horizontalAdvance(word) <= width:
            return word
        return metrics.elidedText(word, Qt.TextElideMode.ElideMiddle, width)

    return _PATHISH.sub(shorten, text)


def warning_box(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    """One warning, wrapped to :data:`WARNING_WIDTH`, long paths elided in the middle,
    the whole text under *Show Details* when anything was shortened."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, "", QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    short = elide_paths(text, box.fontMetrics())
    first, _, rest = short.partition("\n\n")
    box.setText(first)
    if rest:
        box.setInformativeText(rest)
    if short != text:
        box.setDetailedText(text)
    box.setStyleSheet(f"QLabel {{ min-width: {WARNING_WIDTH // 2}px; max-width: {WARNING_WIDTH}px; }}")
    return box


def show_about(parent: QWidget, st: ModelStatus | None) -> None:
    model = "no model loaded"
    if st is not None:
        tr = st.card.get("training", {})
        data = tr.get("data", "?") if isinstance(tr, dict) else "?"
        lic = tr.get("data_licence", "?") if isinstance(tr, dict) else "?"
        model = f"{st.name} on {st.device}<br>Trained on: {data} ({lic})"
    QMessageBox.about(
        parent,
        "About LUS Viewer",
        f"<b>LUS Viewer</b> {__version__}<br>Lung-ultrasound severity scoring (0–3, ICLUS / Soldati).<br>"
        f"<br><b>{DISCLAIMER}.</b> Scores must not be used to diagnose, treat or triage patients.<br>"
        f"<br>Model: {model}",
    )


def _e(value: object) -> str:
    return html.escape(str(value))


def _metric_rows(name: str, m: object) -> str:
    if not isinstance(m, dict) or "accuracy" not in m:
        return ""
    cells = "".join(
        f"<td align='right'>{float(m[k]):.2f}</td>" if isinstance(m.get(k), int | float) else "<td>—</td>"
        for k in ("accuracy", "macro_f1", "within_one", "qwk")
    )
    n = m.get("n")
    return f"<tr><td>{_e(name)}</td><td align='right'>{int(n) if isinstance(n, int | float) else '?'}</td>{cells}</tr>"


FINDING_NAMES = {"a_lines": "A-lines", "b_lines": "B-lines"}


def _findings_html(metrics: dict[object, object], inference: object) -> str:
    """The findings' validation (``metrics.findings``) and whether the viewer shows them
    (``inference.findings_shown``); empty where the card has neither."""
    block = metrics.get("findings")
    shown = inference.get("findings_shown") if isinstance(inference, dict) else None
    shown = [str(n) for n in shown] if isinstance(shown, list) else []
    if not isinstance(block, dict) and not shown:
        return ""
    rows = []
    for name, m in (block or {}).items() if isinstance(block, dict) else ():
        if not isinstance(m, dict):
            continue
        auc = m.get("auc")
        ci = m.get("ci")
        auc_text = f"{float(auc):.2f}" if isinstance(auc, int | float) else "—"
        if isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, int | float) for v in ci):
            auc_text += f" ({float(ci[0]):.2f}–{float(ci[1]):.2f})"
        rows.append(
            f"<tr><td>{_e(FINDING_NAMES.get(str(name), name))}</td><td align='right'>{_e(auc_text)}</td>"
            f"<td>{'yes' if name in shown else 'no'}</td><td>{_e(m.get('note', ''))}</td></tr>"
        )
    text = "<p><b>Findings</b> (A-lines, B-lines: heads trained on the experts' per-clip flags). " + (
        f"Shown by the viewer and in the CSV: {_e(', '.join(FINDING_NAMES.get(n, n) for n in shown))}.</p>"
        if shown
        else "Not shown: the card lists none as validated.</p>"
    )
    if rows:
        text += (
            "<table border='1' cellspacing='0' cellpadding='3'><tr><th>finding</th><th>clip AUC (95 % CI)</th>"
            "<th>shown</th><th>note</th></tr>" + "".join(rows) + "</table>"
        )
    return text


#: The card's notes on how its inference settings were fitted or checked, each named: the
#: notes are written as continuations ("by prevalence on 574 ... predictions") and read as
#: fragments without a name.
_CHECK_LABELS = (
    ("clip_rule_check", "Clip score thresholds"),
    ("calibration_check", "Calibration"),
    ("recon_error_check", "Familiarity limit"),
    ("bf16_check", "bf16 against fp32"),
    ("findings_check", "Findings shown"),
)


#: The repeated cross-validation's clip metrics a card may carry (``metrics.repeated_cv``), as shown.
_CV_ROWS = (
    ("qwk", "κ (quadratic)"),
    ("mae", "mean absolute error"),
    ("exact", "exact agreement"),
    ("within_one", "within one score"),
    ("auc_ge1", "AUC, score ≥ 1"),
    ("auc_ge2", "AUC, score ≥ 2"),
    ("auc_ge3", "AUC, score ≥ 3"),
    ("lus_total_spearman", "patients' LUS totals, Spearman"),
)


def _repeated_cv_html(cv: object) -> str:
    """The recipe's repeated cross-validation (``metrics.repeated_cv``): each clip metric with
    its 95 % interval; empty where the card has none."""
    if not isinstance(cv, dict):
        return ""
    rows = []
    for key, label in _CV_ROWS:
        v = cv.get(key)
        if isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v):
            rows.append(f"<tr><td>{label}</td><td>{v[0]:.3f}</td><td>{v[1]:.3f} to {v[2]:.3f}</td></tr>")
    if not rows:
        return ""
    head = "<p><b>Cross-validated on patients the models never saw</b>"
    what = f": <i>{_e(cv['what'])}</i>" if "what" in cv else ""
    return (
        f"{head}{what}</p><table border='1' cellspacing='0' cellpadding='3'>"
        "<tr><th>clips</th><th>estimate</th><th>95 % interval</th></tr>" + "".join(rows) + "</table>"
    )


def model_card_html(name: str, card_path: str, card: dict[str, object], warnings: Sequence[str] = ()) -> str:
    """The model card as a page: what the model is, its data and licence, its validation
    numbers with their caveats, what it is for, and the loader's warnings."""
    parts = [f"<h2>{_e(name)}</h2>", f"<p style='color:#a00'><b>{_e(DISCLAIMER)}.</b></p>"]
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        parts.append(f"<h3 style='color:#8a1c00'>⚠ Warnings when it loaded</h3><ul>{items}</ul>")
    notes = card.get("notes")
    parts.append("<h3>Intended use</h3>")
    parts.append(
        "<p>Research demonstration of lung-ultrasound severity scoring (0–3, ICLUS / Soldati): "
        "scores must not be used to diagnose, treat or triage patients.</p>"
    )
    if notes:
        parts.append(f"<p>{_e(notes)}</p>")
    tr = card.get("training")
    if isinstance(tr, dict):
        parts.append("<h3>Training data</h3><table cellspacing='4'>")
        for key, label in (
            ("data", "Data"),
            ("data_licence", "Data licence"),
            ("model_licence", "Model licence"),
            ("labels", "Labels"),
            ("citation", "Citation"),
        ):
            if key in tr:
                parts.append(f"<tr><td valign='top'><b>{label}</b></td><td>{_e(tr[key])}</td></tr>")
        split = tr.get("split")
        if isinstance(split, dict) and "kind" in split:
            parts.append(f"<tr><td valign='top'><b>Split</b></td><td>{_e(split['kind'])}</td></tr>")
        parts.append("</table>")
    metrics = card.get("metrics")
    if isinstance(metrics, dict):
        parts.append("<h3>Validation</h3>")
        if "note" in metrics:
            parts.append(f"<p><i>Caveat: {_e(metrics['note'])}</i></p>")
        rows = []
        for key in ("cnn_lstm", "cnn"):
            m = metrics.get(key)
            if isinstance(m, dict):
                rows += [_metric_rows(f"{key} {level}", m.get(level)) for level in ("frame", "clip")]
        base = metrics.get("baselines")
        if isinstance(base, dict):
            rows += [_metric_rows("majority score, frames", base.get("majority_frame"))]
            rows += [_metric_rows("majority score, clips", base.get("majority_clip"))]
        rows = [r for r in rows if r]
        if rows:
            parts.append(
                "<table border='1' cellspacing='0' cellpadding='3'><tr><th>model, level</th><th>n</th>"
                "<th>accuracy</th><th>macro-F1</th><th>within one</th><th>κ (quadratic)</th></tr>"
                + "".join(rows)
                + "</table>"
            )
        parts.append(_repeated_cv_html(metrics.get("repeated_cv")))
        parts.append(_findings_html(metrics, card.get("inference")))
        for key in ("crossval", "crossval_64px"):
            cv = metrics.get(key)
            if isinstance(cv, dict) and "note" in cv:
                parts.append(f"<p><b>{_e(cv.get('title', key))}</b>: <i>{_e(cv['note'])}</i></p>")
    inf = card.get("inference")
    if isinstance(inf, dict):
        checks = [f"<li><b>{label}</b>: {_e(inf[k])}</li>" for k, label in _CHECK_LABELS if k in inf]
        if checks:
            parts.append(f"<h3>Checks at inference</h3><ul>{''.join(checks)}</ul>")
    parts.append(f"<p style='color:#555'>Card: {_e(card_path)}</p>")
    return "".join(parts)


class ModelCardDialog(QDialog):
    """The model card page, with the card's JSON behind *Show JSON*."""

    def __init__(self, parent: QWidget | None, st: ModelStatus, warnings: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Model card — {st.name}")
        self.resize(720, 560)
        layout = QVBoxLayout(self)
        self.page = QTextBrowser()
        self.page.setOpenExternalLinks(False)
        self.page.setHtml(model_card_html(st.name, st.card_path, st.card, warnings))
        self.json = QPlainTextEdit(json.dumps(st.card, indent=2))
        self.json.setReadOnly(True)
        self.json.setVisible(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.json_button = QPushButton("Show JSON")
        self.json_button.setCheckable(True)
        self.json_button.toggled.connect(self._toggle_json)
        buttons.addButton(self.json_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(self.page, 3)
        layout.addWidget(self.json, 2)
        layout.addWidget(buttons)

    def _toggle_json(self, on: bool) -> None:
        self.json.setVisible(on)
        self.json_button.setText("Hide JSON" if on else "Show JSON")


def show_model_card(
    parent: QWidget, st: ModelStatus | None, warn: Callable[[str, str], None], warnings: Sequence[str] = ()
) -> ModelCardDialog | None:
    """The loaded model's card as a page (its JSON behind *Show JSON*), shown without blocking;
    ``warn`` (title, text) when none is loaded."""
    if st is None:
        warn("Model card", "No model is loaded.")
        return None
    dialog = ModelCardDialog(parent, st, warnings)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog
