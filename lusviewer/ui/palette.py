"""What the views share: the colour and the names of each severity score, and the
pyqtgraph options every plot and image in the viewer is drawn with."""

from __future__ import annotations

import pyqtgraph as pg

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
#: The timeline's probability curves p0-p3: Okabe-Ito hues (bluish green, orange, blue,
#: black), told apart with normal vision and with protanopia or deuteranopia (the score
#: colours' amber and orange are not: CIE76 distance 12 under deuteranopia).
PROB_COLOURS = ("#009E73", "#E69F00", "#0072B2", "#000000")
#: The reconstruction-error curve (dashed), reddish purple.
RECON_COLOUR = "#CC79A7"
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


def clip_score_colour(clip_score: int, confidence: str) -> str:
    """The colour of a clip score shown with its confidence: coloured only when confident."""
    if confidence == "withheld":
        return WITHHELD_COLOUR
    if confidence == "uncertain":
        return UNCERTAIN_COLOUR
    return SCORE_COLOURS[clip_score]
