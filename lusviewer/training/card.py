"""The model card of a training run: what the model is, how it was trained and on
what, and how it scored on the validation patients."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lusviewer.inference.sequence import DEFAULT_BURN_IN, DEFAULT_WINDOW
from lusviewer.model.hybrid import HybridModel, parameter_counts
from lusviewer.model.weights import ModelCard
from lusviewer.training.config import TrainConfig, model_config
from lusviewer.training.data import LabelledClip
from lusviewer.training.loop import device_of, machine
from lusviewer.training.pretrain import FORMAT

COVID_BLUES_LICENCE = "CC BY-NC-ND 4.0"
COVID_BLUES_CITATION = (
    'Wiedemann N. et al., "COVID-BLUeS - A Prospective Study on the Value of AI in Lung '
    'Ultrasound Analysis", IEEE Journal of Biomedical and Health Informatics 29(9):6301-6310, '
    "2025, doi:10.1109/JBHI.2025.3543686"
)


def labels_note(cfg: TrainConfig, clips: Sequence[LabelledClip]) -> str:
    """What the labels were and how training used them (for cards and reports)."""
    per_frame = sum(c.frame_scores is not None for c in clips)
    if per_frame:
        return (
            f"per-frame labels for {per_frame} of {len(clips)} clips; the other clips' frames take their clip's score"
        )
    if cfg.loss == "mil":
        return (
            "per-clip scores, trained as the score of each clip's worst frame (--loss mil: no frame above the "
            "clip's score, at least one at it); frame-level metrics compare every frame with its clip's score, "
            "which understates a model that rightly scores a clip's normal-looking frames lower"
        )
    return "per-clip scores; every frame takes its clip's score, so frame-level metrics measure agreement with it"


def pretraining_record(path: str) -> dict[str, Any] | None:
    """What a model card keeps of a ``lusviewer pretrain`` initialisation: recipe, data
    (patient ids, not labels), epochs, loss history and linear probe; None for other weights."""
    try:
        card = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        return None
    keep = ("method", "sha256", "data", "epochs", "minutes", "history", "probe", "machine", "created")
    return {k: card[k] for k in keep if k in card}


def _group_key(group: str) -> tuple[int, int, str]:
    """Numeric patient ids in numeric order, others after them alphabetically."""
    return (0, int(group), "") if group.isdigit() else (1, 0, group)


def data_provenance(cfg: TrainConfig) -> dict[str, str]:
    """What the card says about the data: COVID-BLUeS is recognised; for other data the
    user's --data-name / --data-licence / --citation, or a plain 'not stated'."""
    is_blues = (Path(cfg.data) / "severity.csv").is_file() and cfg.layout in ("auto", "covid-blues")
    name = cfg.data_name or (
        "COVID-BLUeS development subset (Maastricht UMC+), Philips Lumify convex probe" if is_blues else cfg.data
    )
    licence = cfg.data_licence or (COVID_BLUES_LICENCE if is_blues else "not stated (pass --data-licence)")
    citation = cfg.citation or (COVID_BLUES_CITATION if is_blues else "not stated (pass --citation)")
    return {
        "data": name,
        "data_licence": licence,
        "citation": citation,
        "model_licence": (
            f"weights trained on {licence} data: the data licence's terms apply to the weights"
            if cfg.data_licence or is_blues
            else "the training data's licence was not stated; its terms apply to the weights"
        ),
    }


def build_card(
    cfg: TrainConfig,
    model: HybridModel,
    *,
    clips: Sequence[LabelledClip],
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    state: dict[str, Any],
    initialisation: str,
    init: str | None,
    metrics: dict[str, Any],
) -> ModelCard:
    """The card of a finished run: ``state`` is the run's ``state.json`` content (the
    stages' epochs), ``init`` the DenseNet branch's starting weights (None: from scratch)."""
    record = pretraining_record(init) if init else None
    return ModelCard(
        name=cfg.name,
        version=cfg.version,
        config=model_config(cfg),
        weights_file="",
        preprocessing={
            "resize": "cv2.resize to size x size, INTER_AREA (aspect not kept)",
            "scale": "uint8 / 255 -> [0, 1]",
            "colour": "RGB; grayscale clips as three equal channels",
            **(
                {
                    "crop": "sector",
                    "crop_note": "the clip's ultrasound sector, found on its first 32 frames; outside it "
                    "set to zero; cropped to the square around it, then resized",
                }
                if cfg.crop == "sector"
                else {}
            ),
        },
        inference={
            "lstm_window": DEFAULT_WINDOW,
            "lstm_burn_in": DEFAULT_BURN_IN,
            "clip_rule": "persistent",
        },
        training={
            **data_provenance(cfg),
            "labels": labels_note(cfg, clips),
            "split": {
                "kind": "patient-disjoint, stratified by each patient's worst score",
                "seed": cfg.seed,
                "train_patients": sorted({c.group for c in train}, key=_group_key),
                "val_patients": sorted({c.group for c in val}, key=_group_key),
                "train_clips": len(train),
                "val_clips": len(val),
            },
            "command": cfg.command,
            "settings": {k: v for k, v in asdict(cfg).items() if k not in ("command",)},
            "initialisation": initialisation,
            **({"pretraining": record} if record else {}),
            "epochs": {
                "cnn": state["cnn"]["epoch"],
                "lstm": state.get("lstm", {}).get("epoch", 0),
                "end_to_end": state.get("e2e", {}).get("epoch", 0),
            },
            "machine": machine(device_of(model)),
        },
        metrics={
            "note": (
                "Validation patients were also used to pick the best epoch (early stopping), so these "
                "numbers are mildly optimistic; the cross-validated numbers come with the training toolkit."
                if val
                else "Trained on every patient (no validation split, epochs fixed in advance): these weights have "
                "no held-out numbers of their own; their recipe's cross-validation (lusviewer crossval) is their "
                "expected performance."
            ),
            **metrics,
        },
        parameters=parameter_counts(model),
    )
