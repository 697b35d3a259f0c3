"""The window's informational dialogs: About, and the model card."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox, QWidget

from lusviewer import __version__

if TYPE_CHECKING:
    from lusviewer.ui.worker import ModelStatus

DISCLAIMER = "Research use only — not a medical device"


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


def show_model_card(parent: QWidget, st: ModelStatus | None, warn: Callable[[str, str], None]) -> None:
    """The loaded model's card (its JSON under *Show Details*); ``warn`` (title, text) when none is loaded."""
    if st is None:
        warn("Model card", "No model is loaded.")
        return
    box = QMessageBox(parent)
    box.setWindowTitle(f"Model card — {st.name}")
    box.setText(f"{st.name}\n{st.card_path}\n\n{DISCLAIMER}.")
    box.setDetailedText(json.dumps(st.card, indent=2))
    box.exec()
