"""The clip summary: the clip score with its rule, how sure the model is, frames per
score, a jump to the worst frame (the most severe finding) and, where it is another, to
the frame behind the clip score, and (for a model whose card shows them) the findings:
A-lines, B-lines."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from lusviewer.report.aggregate import LOW_CONFIDENCE, clip_score_text, low_confidence, persistence_frames
from lusviewer.ui.palette import (
    FINDING_LABELS,
    GUESS_SWATCH,
    SCORE_COLOURS,
    SCORE_NAMES,
    UNCERTAIN_COLOUR,
    WITHHELD_COLOUR,
    clip_score_colour,
)

#: A finding is "likely" at a clip mean probability of at least this, "unlikely" at most
#: ``1 - FINDING_LIKELY``, and "unsure" between: a probability near 0.5 is a guess and is
#: never worded as a finding.
FINDING_LIKELY = 0.7


def finding_word(p: float) -> str:
    return "likely" if p >= FINDING_LIKELY else "unlikely" if p <= 1 - FINDING_LIKELY else "unsure"


def findings_text(means: dict[str, float], auc: dict[str, float | None] | None = None) -> str:
    """One line for the findings a card shows: "B-lines: likely (p 0.81) · A-lines: unlikely
    (p 0.22)" from the clip's mean per-frame probabilities (B-lines first), with where they
    come from and their validation AUC where the card gives it; empty for none."""
    order = sorted(means, key=lambda k: k != "b_lines")
    parts = [f"{FINDING_LABELS.get(k, k)}: {finding_word(means[k])} (p {means[k]:.2f})" for k in order]
    if not parts:
        return ""
    text = " · ".join(parts)
    aucs = [(k, a) for k in order if (a := (auc or {}).get(k)) is not None]
    if aucs:  # named unless it is the only finding shown
        given = (
            f"{aucs[0][1]:.2f}"
            if len(order) == 1
            else ", ".join(f"{FINDING_LABELS.get(k, k)} {a:.2f}" for k, a in aucs)
        )
        text += f" (validation AUC {given})"
    return text


#: Where the findings come from: the findings line's tooltip (kept off the line, which must fit a 1024 px window).
FINDINGS_TOOLTIP = (
    "The clip's mean per-frame probability from the model's finding heads, trained on the experts' "
    "per-clip flags; 'likely' from p 0.70, 'unlikely' to p 0.30, 'unsure' between"
)


def frame_score_text(score: int, probs: np.ndarray) -> str:
    """One frame's score for the line under the frame: the score shown (on the timeline, in
    the CSV's ``score`` column) with its probability, the most probable score where it is
    another (the *expected* rule cuts a frame's mean severity), and "low confidence" by the
    rule of the timeline's grey dashes and the CSV's ``low_confidence_frames``
    (:func:`~lusviewer.report.aggregate.low_confidence`: the most probable score's
    probability below :data:`LOW_CONFIDENCE`), not by the shown score's probability."""
    row = np.asarray(probs, dtype=np.float64).reshape(-1)
    top = int(np.argmax(row))
    # three decimals where two would print the same p twice: "score 3 (p = 0.30; most
    # probable 2, p = 0.30)" read as a contradiction (patient_19_R1, frame 88)
    digits = 3 if top != score and f"{row[score]:.2f}" == f"{row[top]:.2f}" else 2
    text = f"score {score} (p = {row[score]:.{digits}f}"
    if top != score:
        text += f"; most probable {top}, p = {row[top]:.{digits}f}"
    weak = bool(low_confidence(row[None, :])[0])
    return text + ("), low confidence" if weak else ")")


def count_text(count: int, total: int, weak: int) -> str:
    """A row of the Clip tab's frames per score: how many, the share, and how many of them
    are weak calls (a guess)."""
    pct = 100.0 * count / total if total else 0.0
    text = f"{int(count)} frame{'' if int(count) == 1 else 's'} ({pct:.0f} %)"
    if count and weak >= count:
        return text + ", all weak"
    return text + (f", {int(weak)} weak" if weak else "")


def frames_disagree_text(clip_score: int, rule: str, counts: tuple[int, ...] | np.ndarray) -> str:
    """For the *expected* rule, which scores a clip by its mean severity and not by its
    frames: a sentence when the frames' most common score is not the clip score (the
    timeline and the counts would otherwise seem to contradict it); empty otherwise."""
    if not rule.startswith("expected") or not len(counts) or not int(np.sum(counts)):
        return ""
    common = int(np.argmax(counts))
    if common == clip_score:
        return ""
    return (
        f"The frames score {common} most often; the clip score comes from their mean severity, "
        "not from counting frames."
    )


#: The two frames the summary jumps to, in its buttons' tooltips.
WORST_TOOLTIP = (
    "The worst frame: the most severe finding, a frame of the highest frame score (confident calls "
    "first): the frame behind the clip score where it is one, else the middle of their longest run"
)
CLIP_FRAME_TOOLTIP = (
    "The frame behind the clip score (the CSV's worst_frame): of the frames that make the clip "
    "score, the one the model finds most severe"
)


def frames_text(worst: int, worst_score: int, worst_weak: bool, clip_frame: int, clip_frame_blank: bool = False) -> str:
    """The summary's sentence on its two frames: the worst (most severe) frame with its score,
    and the frame behind the clip score where it is another (``clip_frame_blank``: it shows
    nothing, as the black frames that open some clips: said, or its button leads to a black
    frame unexplained)."""
    text = f"Worst frame: {worst} (score {worst_score}{', a weak call' if worst_weak else ''})"
    if clip_frame == worst:  # also the frame behind the clip score (the button's tooltip says so)
        return text + "."
    return text + f"; the clip score's frame: {clip_frame}{' (a blank frame)' if clip_frame_blank else ''}."


class SummaryPanel(QWidget):
    """Clip score with its rule, how sure the model is, frames per score, and jumps to the
    worst frame (the most severe finding) and to the frame behind the clip score."""

    jump_to_worst = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # The panel's lines scroll where the tab is shorter than they are: at 1024x600 the
        # summary of a clip unlike the training clips (its warning, the model's output, the
        # rule, four rows, the findings) was squeezed into the tab, each row cut through
        # its letters ("white lung" without its descenders).
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # its lines wrap
        content = QWidget()
        self.scroll_area.setWidget(content)
        # the tab's own background shows through (setWidget turns the widget's fill on)
        content.setAutoFillBackground(False)
        self.scroll_area.viewport().setAutoFillBackground(False)
        outer.addWidget(self.scroll_area)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 4, 6, 4)
        self.title = QLabel("Clip score")
        self.score = QLabel("—")
        f = QFont()
        f.setPointSize(18)
        f.setBold(True)
        self.score.setFont(f)
        self.rule = QLabel("")
        self.rule.setWordWrap(True)
        self.rule.setStyleSheet("color: #555;")
        self.confidence = QLabel("")
        self.confidence.setWordWrap(True)
        grid = QGridLayout()
        self.count_labels: list[QLabel] = []
        self.count_names: list[QLabel] = []
        self.swatches: list[QLabel] = []
        for k, name in enumerate(SCORE_NAMES):
            swatch = QLabel()
            swatch.setFixedSize(14, 14)
            lab = QLabel(name)
            cnt = QLabel("")
            cnt.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(swatch, k, 0)
            grid.addWidget(lab, k, 1)
            grid.addWidget(cnt, k, 2)
            self.swatches.append(swatch)
            self.count_names.append(lab)
            self.count_labels.append(cnt)
        #: Rows drawn as guesses (grey swatch, dashed edge, grey text), not in the score's colour.
        self.guess_rows = [False] * len(SCORE_NAMES)
        #: Every row a guess: the clip score is uncertain or withheld, or scoring stopped early.
        self._all_guesses = False
        self._style_rows([False] * len(SCORE_NAMES))
        self.worst = QPushButton("Jump to worst frame")
        self.worst.setToolTip(WORST_TOOLTIP)
        self.worst.setEnabled(False)
        self._worst = 0
        self.worst.clicked.connect(lambda: self.jump_to_worst.emit(self._worst))
        # the frame behind the clip score, offered where it is not the worst frame
        self.clip_frame = QPushButton("Clip-score frame")
        self.clip_frame.setToolTip(CLIP_FRAME_TOOLTIP)
        self.clip_frame.hide()
        self._clip_frame = 0
        self.clip_frame.clicked.connect(lambda: self.jump_to_worst.emit(self._clip_frame))
        self._clip_score: int | None = None
        head = QGridLayout()
        head.setVerticalSpacing(2)
        head.addWidget(self.title, 0, 0)
        head.addWidget(self.score, 1, 0)
        head.addWidget(self.clip_frame, 0, 1, Qt.AlignmentFlag.AlignRight)
        head.addWidget(self.worst, 1, 1, Qt.AlignmentFlag.AlignRight)
        layout.addLayout(head)
        # Shown only when the clip's images are unlike the model's training clips.
        self.familiarity = QLabel("")
        self.familiarity.setWordWrap(True)
        self.familiarity.setStyleSheet(
            "color: #8a1c00; background: #fff1e0; border: 1px solid #e0a060; padding: 3px; font-weight: bold;"
        )
        self.familiarity.hide()
        layout.addWidget(self.familiarity)
        layout.addWidget(self.rule)
        layout.addWidget(self.confidence)
        layout.addLayout(grid)
        # Shown only for a model whose card lists findings as validated (inference.findings_shown).
        self.findings = QLabel("")
        self.findings.setWordWrap(True)
        self.findings.setToolTip(FINDINGS_TOOLTIP)
        self.findings.hide()
        layout.addWidget(self.findings)

    @property
    def worst_frame(self) -> int:
        """The frame "Jump to worst frame" goes to: the most severe finding."""
        return self._worst

    def clear(self, text: str = "—") -> None:
        self.score.setText(text)
        self.score.setStyleSheet("")
        self.rule.setText("")
        self.confidence.setText("")
        self._clip_score = None
        self.set_familiarity("")
        self.set_findings({})
        for c in self.count_labels:
            c.setText("")
        self._all_guesses = False
        self._style_rows([False] * len(self.swatches))
        self.worst.setEnabled(False)
        self.clip_frame.hide()

    def _style_rows(self, guess: list[bool]) -> None:
        """Each row in its score's colour, or (a guess) a pale grey swatch with a dashed edge
        and grey text, as the chest diagram draws an uncertain zone."""
        self.guess_rows = list(guess)
        tip = (
            f"Grey, dashed: weak calls (the most probable score's probability below {LOW_CONFIDENCE:g}) "
            "or an uncertain clip: a guess, not a finding"
        )
        for k, (swatch, name, cnt) in enumerate(zip(self.swatches, self.count_names, self.count_labels, strict=True)):
            if guess[k]:
                swatch.setStyleSheet(GUESS_SWATCH)
                for lab in (name, cnt):
                    lab.setStyleSheet(f"color: {UNCERTAIN_COLOUR};")
                    lab.setToolTip(tip)
            else:
                swatch.setStyleSheet(f"background: {SCORE_COLOURS[k]}; border: 1px solid #333;")
                for lab in (name, cnt):
                    lab.setStyleSheet("")
                    lab.setToolTip("")

    def set_counts(
        self, counts: np.ndarray | tuple[int, ...], total: int, weak: np.ndarray | tuple[int, ...] | None = None
    ) -> None:
        """Frames per score out of ``total``; ``weak``: of them, the weak calls per score
        (``np.bincount(scores[low_confidence(probs)])``). A row is drawn as a guess when all
        its frames are weak calls, or every row when the clip is (:meth:`set_summary` with an
        uncertain or withheld score, :meth:`set_failed`), or most frames are weak while scoring runs."""
        w = [int(x) for x in weak] if weak is not None else [0] * len(counts)
        w += [0] * (len(counts) - len(w))
        for lab, c, wk in zip(self.count_labels, counts, w, strict=False):
            lab.setText(count_text(int(c), total, wk))
        mostly_weak = sum(w) * 2 > total > 0
        all_guess = self._all_guesses or mostly_weak
        self._style_rows(
            [all_guess or (int(c) > 0 and wk >= int(c)) for c, wk in zip(counts, w, strict=False)]
            + [all_guess] * (len(self.swatches) - len(counts))
        )

    def set_progress(
        self, counts: np.ndarray | tuple[int, ...], scored: int, total: int, weak: np.ndarray | None = None
    ) -> None:
        """While scoring runs: frames per score so far, out of the frames scored so far (``weak``:
        the weak calls among them, per score)."""
        self.set_counts(counts, scored, weak)
        self.rule.setText(f"Scoring… {scored} of {total} frames so far; the clip score follows when all are scored.")

    def set_failed(self, message: str, scored: int, total: int) -> None:
        """Scoring failed: no clip score; say why, and how far it got (the timeline shows those frames, greyed)."""
        self.score.setText("Scoring failed")
        self.score.setStyleSheet("color: #888;")
        self._clip_score = None
        self.worst.setEnabled(False)
        self.clip_frame.hide()
        self._all_guesses = True  # partial: the counts so far are no finding either
        self._style_rows([True] * len(self.swatches))
        self.rule.setText(
            f"No clip score: scoring stopped after {scored} of {total} frames. {message}\n"
            "The timeline shows the frames scored before the failure, greyed: partial, not a finding."
        )

    def set_confidence(self, low: np.ndarray) -> None:
        """How sure the model is of its frame scores, from the per-frame mask of
        :func:`~lusviewer.report.aggregate.low_confidence`: the share of frames where
        the most probable score has a probability below :data:`LOW_CONFIDENCE` (the
        timeline's grey dashes, the CSV's ``low_confidence_frames``)."""
        n = len(low)
        self.confidence.setVisible(bool(n))  # hidden when empty: an empty line still takes its height
        if not n:
            self.confidence.setText("")
            return
        weak = int(np.count_nonzero(low))
        share = 100.0 * weak / n
        if weak * 2 > n:
            self.confidence.setText(
                f"⚠ Low confidence on {share:.0f} % of frames: no score reaches a probability of "
                f"{LOW_CONFIDENCE:g} (grey dashes on the timeline, grey counts below: a guess)."
            )
            self.confidence.setStyleSheet("color: #8a5a00; font-weight: bold;")
        else:
            self.confidence.setText(
                f"On {share:.0f} % of frames no score reaches a probability of {LOW_CONFIDENCE:g} "
                "(grey dashes on the timeline)."
            )
            self.confidence.setStyleSheet("color: #555;")

    def set_findings(self, means: dict[str, float], auc: dict[str, float | None] | None = None) -> None:
        """The clip's findings line (:func:`findings_text`); hidden for none. For a clip unlike
        the training clips (:meth:`set_familiarity` first) they are withheld, as its score is."""
        text = findings_text(means, auc)
        if text and self.familiarity.text():
            names = " and ".join(FINDING_LABELS.get(k, k) for k in sorted(means, key=lambda k: k != "b_lines"))
            text = f"{names} withheld: the clip is unlike the model's training clips (the CSV keeps them)."
        self.findings.setText(text)
        self.findings.setVisible(bool(text))

    def set_familiarity(self, warning: str) -> None:
        """Warn when the clip is unlike the model's training clips (``ClipResult.familiarity_warning``):
        the clip score is then withheld, not shown as a finding (the report keeps it, flagged)."""
        if warning:
            self.familiarity.setText(f"⚠ This clip looks {warning}. Clip score withheld.")
            self.familiarity.show()
            # How sure the model is of a score that is not shown says nothing more (the timeline
            # keeps its dashes); the line would push the counts out of the tab at 1280x800.
            self.confidence.setText("")
            self.confidence.hide()
            if self._clip_score is not None:
                self.score.setText(clip_score_text(self._clip_score, "withheld"))
                self.score.setStyleSheet(f"color: {WITHHELD_COLOUR};")
                self.rule.setText(
                    f"The model's output would be score {self._clip_score} (in the CSV report, marked "
                    "unfamiliar); do not read it as a finding."
                )
        else:
            self.familiarity.hide()
            self.familiarity.setText("")

    def set_summary(
        self,
        clip_score: int,
        rule: str,
        counts: tuple[int, ...],
        worst: int,
        total: int,
        fps: float = 0.0,
        confidence: str = "confident",
        weak: np.ndarray | tuple[int, ...] | None = None,
        severe: tuple[int, int, bool] | None = None,
        clip_frame_blank: bool = False,
    ) -> None:
        """The clip score as :func:`~lusviewer.report.aggregate.clip_score_text` words it
        for its ``confidence`` (:func:`~lusviewer.report.aggregate.clip_confidence`): in
        the score's colour only when confident; an uncertain score in neutral grey, and
        then its frame counts too (``weak``: the weak calls per score, :meth:`set_counts`).
        ``worst``: the frame behind the clip score (``ClipSummary.worst_frame``); ``severe``:
        the worst frame, the most severe finding (frame, its score, a weak call?), from
        :func:`~lusviewer.report.exam_report.most_severe_frame`; None: ``worst`` is both."""
        self._clip_score = clip_score
        self._all_guesses = confidence != "confident"
        self.score.setText(clip_score_text(clip_score, confidence))
        self.score.setStyleSheet(f"color: {clip_score_colour(clip_score, confidence)};")
        held = f" ({persistence_frames(total, fps) / fps:.2f} s)" if rule.startswith("persistent") and fps > 0 else ""
        frame, frame_score, frame_weak = severe if severe is not None else (worst, clip_score, False)
        self.rule.setText(
            f"Rule — {rule}{held}. {frames_text(frame, frame_score, frame_weak, worst, clip_frame_blank)}"
        )
        if confidence == "uncertain":
            self.rule.setText(
                f"{self.rule.text()} Uncertain: weak calls (probability below {LOW_CONFIDENCE:g}), "
                "a guess, not a finding."
            )
        if disagree := frames_disagree_text(clip_score, rule, counts):
            self.rule.setText(f"{self.rule.text()} {disagree}")
        self.set_counts(counts, total, weak)
        self._worst = frame
        self.worst.setEnabled(True)
        self._clip_frame = worst
        self.clip_frame.setVisible(worst != frame)
