"""What an ICU clinician's walk through the viewer with the shipped model and real clips
(COVID-BLUeS, POCUS) found wrong or unclear, checked here (offscreen, tiny models)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")


def test_one_frame_is_counted_in_the_singular() -> None:
    """The Clip tab read "1 frames (1 %), all weak" (patient_19_L3, a POCUS .mov)."""
    from lusviewer.ui.summary_panel import count_text

    assert count_text(1, 101, 1) == "1 frame (1 %), all weak"
    assert count_text(0, 101, 0) == "0 frames (0 %)"
    assert count_text(2, 101, 1) == "2 frames (2 %), 1 weak"
