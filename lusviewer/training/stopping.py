"""How a training stage ended, in ``state.json`` (``stopped_by``) and in one line.

A stage ends by its epoch cap, by early stopping (no better validation score for a
while), or by its wall-clock budget. The last means that the run trained less than its
recipe says: on a busy machine some folds of a cross-validation can be cut short while
others are not, which a comparison of recipes must know (``crossval-report`` warns).
No torch here: the report reads this without loading a model library.
"""

from __future__ import annotations

#: How a stage is named in messages.
STAGE_WORDS = {
    "cnn": "stage 1 (CNN)",
    "lstm": "stage 2 (LSTM)",
    "e2e": "stage 3 (end to end)",
    "pretrain": "pretraining",
}

EPOCHS, BUDGET, EARLY = "epochs", "budget", "early"


def stop_reason(epoch: int, cap: int, *, out_of_time: bool) -> str:
    """``epochs`` where the cap was reached, else ``budget`` where the clock ran out,
    else ``early``."""
    if epoch >= cap:
        return EPOCHS
    return BUDGET if out_of_time else EARLY


def budget_warning(stage: str, minutes: float, epoch: int, cap: int) -> str:
    return (
        f"warning: {STAGE_WORDS.get(stage, stage)} stopped by its {minutes:g}-minute budget after {epoch} of {cap} "
        "epochs (a larger budget trains them all)"
    )
