"""What the views share: the colour and the names of each severity score, and the
pyqtgraph options every plot and image in the viewer is drawn with."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPen

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

#: One colour per severity score: green, amber, orange, red (colour-blind-safer hues).
SCORE_COLOURS = ("#2e9d4a", "#e3b505", "#ef7d1a", "#d62728")
SCORE_NAMES = (
    "0  A-lines, regular pleura",
    "1  indented pleura, B-lines",
    "2  broken pleura, small consolidations",
    "3  white lung",
)
SCORE_SHORT = ("0 normal", "1 B-lines", "2 consolidation", "3 white lung")
#: The timeline's probability curves p0-p3, told apart three ways: hue (Okabe-Ito orange and
#: bluish green, a dark blue, black: CIE76 distance at least 30 between any two with normal
#: vision and under simulated protanopia, deuteranopia and tritanopia), lightness ordered with
#: the score (p0 lightest, p3 darkest: L* 71, 58, 28, 0, for greyscale print), and line style
#: (PROB_DASHES). The previous p0 bluish green and p2 blue (L* 58 and 46, solid both) looked
#: alike on screen, under tritanopia (CIE76 17) and in grey.
PROB_COLOURS = ("#E69F00", "#009E73", "#1F3A93", "#000000")
#: Their dash patterns (Qt's, in pen widths; () solid): p0 solid, p1 dash-dot, p2 dash-dot-dot,
#: p3 solid (thinner, black). None is the plain dashes of the reconstruction error.
PROB_DASHES: tuple[tuple[float, ...], ...] = ((), (4, 1.5, 1, 1.5), (3, 1.2, 1, 1.2, 1, 1.2), ())
PROB_WIDTHS = (2.0, 2.0, 2.0, 1.5)
#: The reconstruction-error curve (long dashes), reddish purple.
RECON_COLOUR = "#CC79A7"
RECON_DASH = (5.0, 2.5)
#: The findings' curves (dotted), the Okabe-Ito hues the curves above leave: B-lines
#: vermillion, A-lines sky blue.
FINDING_COLOURS = {"b_lines": "#D55E00", "a_lines": "#56B4E9"}
FINDING_LABELS = {"a_lines": "A-lines", "b_lines": "B-lines"}
#: A clip score is drawn in its colour only when confident (report.aggregate.clip_confidence):
#: an uncertain one in a neutral dark grey, a withheld one ("No reliable score") in light grey.
UNCERTAIN_COLOUR = "#5a5a5a"
WITHHELD_COLOUR = "#888888"
#: A weak call (report.aggregate.low_confidence: the most probable score's probability below
#: 0.5) is a guess: the timeline draws its run in this grey, dashed, never in the score's
#: colour, as the chest diagram draws an uncertain zone (grey, dashed edge).
WEAK_COLOUR = UNCERTAIN_COLOUR
#: A count of guesses in the Clip tab: the swatch pale grey with a dashed edge (the diagram's
#: uncertain zone), not the score's colour.
GUESS_SWATCH = f"background: #ebebeb; border: 1px dashed {UNCERTAIN_COLOUR};"


def prob_pen(k: int) -> QPen:
    """The pen of the probability curve of score ``k`` (the timeline's curve and its legend)."""
    pen = QPen(QColor(PROB_COLOURS[k]), PROB_WIDTHS[k])
    pen.setCosmetic(True)  # as pg.mkPen's: the width in pixels, whatever the plot's scale
    if PROB_DASHES[k]:
        pen.setDashPattern(list(PROB_DASHES[k]))
    return pen


def recon_pen() -> QPen:
    """The pen of the reconstruction-error curve: long, even dashes."""
    pen = QPen(QColor(RECON_COLOUR), 1.5)
    pen.setCosmetic(True)
    pen.setDashPattern(list(RECON_DASH))
    return pen


def clip_score_colour(clip_score: int, confidence: str) -> str:
    """The colour of a clip score shown with its confidence: coloured only when confident."""
    if confidence == "withheld":
        return WITHHELD_COLOUR
    if confidence == "uncertain":
        return UNCERTAIN_COLOUR
    return SCORE_COLOURS[clip_score]
